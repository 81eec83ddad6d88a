//! The client's request body on its way to a backend through hyper's client. It tells when it
//! has all been sent (the backend's timeout runs from then, as Envoy's route timeout does: how
//! long an upload takes is the client's business), and since when the backend's connection has
//! held a part without asking for the next (a backend that reads nothing more of an upload, as
//! one keeping an HTTP/2 stream's window shut, is given up on after its write timeout); it
//! gives up on a client that sends nothing for the idle time (through [`IdleBody`]), and marks
//! its failures as the client's, so that they are not taken for the backend's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::cause;
use crate::{BodyStalled, IdleBody};

/// Why the client's body could not be passed on: the client's doing, told apart from the
/// backend's failures by its type (found again in the chain of the client's error).
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum ClientBodyError {
    /// Not readable: bad chunked coding, a body cut short, a connection reset.
    #[error("{0}")]
    Unreadable(String),
    /// Nothing came for the idle time while the backend waited for more.
    #[error("no part of the request body came for {0:?}")]
    Stalled(Duration),
    /// Longer than the gateway's limit.
    #[error("the request body is over the limit")]
    TooLarge,
}

/// What the forwarding side learns of a body's way to the backend.
#[derive(Debug)]
pub(super) struct Upload {
    /// Told once the whole body has been handed on.
    pub(super) sent: Notify,
    /// Since when the backend's connection has held a part without asking for the next, in
    /// microseconds from `start` (0: it is not holding one).
    holding_since: AtomicU64,
    start: Instant,
    /// Why the client's body failed, if it did: an HTTP/2 backend's client resets the stream
    /// and answers a bare reset, whose chain no longer holds the cause.
    failure: std::sync::OnceLock<ClientBodyError>,
}

impl Upload {
    /// A body's way about to begin.
    pub(super) fn new() -> Self {
        Self {
            sent: Notify::new(),
            holding_since: AtomicU64::new(0),
            start: Instant::now(),
            failure: std::sync::OnceLock::new(),
        }
    }

    /// Why the client's body failed, if it did.
    pub(super) fn failure(&self) -> Option<&ClientBodyError> {
        self.failure.get()
    }

    /// Returns once the backend's connection has held a part of the body for `timeout`
    /// without asking for the next (the backend reads nothing more of it: its window, or its
    /// socket, stays full). Checked at least once per `timeout`, and then to the moment.
    pub(super) async fn not_taken(&self, timeout: Duration) {
        loop {
            let since = self.holding_since.load(Ordering::Acquire);
            let wait = if since == 0 {
                timeout
            } else {
                let due = self.start + Duration::from_micros(since) + timeout;
                let now = Instant::now();
                if now >= due {
                    return;
                }
                due - now
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn holding(&self, part: bool) {
        let since = if part {
            u64::try_from(self.start.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1)
        } else {
            0
        };
        self.holding_since.store(since, Ordering::Release);
    }
}

/// A client's body, watched (see the module documentation).
pub(super) struct ClientBody {
    inner: IdleBody,
    upload: Arc<Upload>,
    /// Whether `upload` was told it is all sent.
    finished: bool,
}

impl ClientBody {
    /// Watches `inner`, telling `upload` how its way goes (sent at once for a body that is
    /// empty).
    pub(super) fn new(inner: axum::body::Body, upload: Arc<Upload>, idle: Duration) -> Self {
        let mut body = Self {
            inner: IdleBody::new(inner, idle),
            upload,
            finished: false,
        };
        if body.inner.is_end_stream() {
            body.finished();
        }
        body
    }

    fn finished(&mut self) {
        if !self.finished {
            self.finished = true;
            self.upload.sent.notify_one();
        }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // A part the backend's connection must pass on before it asks for the next; the last
        // one is followed by a wait for the answer, which is not the backend's reading.
        let end = this.inner.is_end_stream();
        this.upload
            .holding(!end && matches!(&polled, Poll::Ready(Some(Ok(frame))) if frame.is_data()));
        match polled {
            // Trailers end the body and are not passed on (nor does nginx pass a client's):
            // no rule has seen them, and names like `X-Portcullis-User` would reach the
            // backend unchecked. hyper's client polls no further after them, so the body's
            // end is marked here or the backend's time would never start.
            Poll::Ready(Some(Ok(frame))) if !frame.is_data() => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if end {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let failure = if let Some(BodyStalled(after)) = cause::<BodyStalled>(&e) {
                    ClientBodyError::Stalled(*after)
                } else if super::over_limit(&e) {
                    ClientBodyError::TooLarge
                } else {
                    ClientBodyError::Unreadable(innermost(&e))
                };
                let _ = this.upload.failure.set(failure.clone());
                Poll::Ready(Some(Err(failure)))
            }
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The first cause of `error` (the parser's own words, "invalid chunk size line", rather than
/// the wrapper's "error reading a body from connection").
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn an_empty_body_is_sent_at_once_and_a_full_one_when_read() {
        let empty = Arc::new(Upload::new());
        let _body = ClientBody::new(
            axum::body::Body::empty(),
            empty.clone(),
            Duration::from_secs(1),
        );
        tokio::time::timeout(Duration::from_secs(1), empty.sent.notified())
            .await
            .expect("an empty body is sent from the start");

        let full = Arc::new(Upload::new());
        let body = ClientBody::new(
            axum::body::Body::from("hello"),
            full.clone(),
            Duration::from_secs(1),
        );
        let waiting = tokio::time::timeout(Duration::from_millis(50), full.sent.notified()).await;
        assert!(waiting.is_err(), "not sent before it is read");
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        tokio::time::timeout(Duration::from_secs(1), full.sent.notified())
            .await
            .expect("sent once read");
    }

    /// Whether `upload` finds its backend not taking the body within `within`.
    async fn not_taken(upload: &Upload, timeout: Duration, within: Duration) -> bool {
        tokio::time::timeout(within, upload.not_taken(timeout))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_held_for_the_timeout_is_not_taken_and_a_client_slow_to_send_is_not() {
        let timeout = Duration::from_secs(30);
        let upload = Arc::new(Upload::new());
        let mut body = ClientBody::new(
            axum::body::Body::new(OneThenSilence(false)),
            upload.clone(),
            Duration::from_secs(3600),
        );
        // Nothing handed yet: the backend is not waited on.
        assert!(!not_taken(&upload, timeout, timeout * 3).await);
        let started = Instant::now();
        body.frame().await.unwrap().unwrap();
        // The connection never asks for the next part: after the timeout, to the moment.
        assert!(not_taken(&upload, timeout, timeout * 2).await);
        assert_eq!(started.elapsed(), timeout);
        // It asks, and the client has nothing yet: the client's time, not the backend's.
        let asking = tokio::spawn(async move { body.frame().await.map(|f| f.is_ok()) });
        tokio::task::yield_now().await;
        assert!(!not_taken(&upload, timeout, timeout * 3).await);
        asking.abort();
    }

    /// A body whose client sends one part and then nothing.
    struct OneThenSilence(bool);

    impl HttpBody for OneThenSilence {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                return Poll::Pending;
            }
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))))
        }
    }

    #[tokio::test]
    async fn a_client_sending_nothing_for_the_idle_time_stalls_the_body() {
        let idle = Duration::from_millis(200);
        let mut body = ClientBody::new(
            axum::body::Body::new(OneThenSilence(false)),
            Arc::new(Upload::new()),
            idle,
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "part");
        let started = std::time::Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(
            matches!(error, ClientBodyError::Stalled(d) if d == idle),
            "{error}"
        );
        assert!(started.elapsed() >= idle, "{:?}", started.elapsed());
    }
}
