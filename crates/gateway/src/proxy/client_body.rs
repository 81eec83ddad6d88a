//! The client's request body on its way to a backend through hyper's client. It tells when it
//! has all been sent (the backend's timeout runs from then, as Envoy's route timeout does: how
//! long an upload takes is the client's business), gives up on a client that sends nothing for
//! the idle time (through [`IdleBody`]), and marks its failures as the client's, so that they
//! are not taken for the backend's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;

use super::cause;
use crate::{BodyStalled, IdleBody};

/// Why the client's body could not be passed on: the client's doing, told apart from the
/// backend's failures by its type (found again in the chain of the client's error).
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientBodyError {
    /// Not readable: bad chunked coding, a body cut short, a connection reset.
    #[error("{0}")]
    Unreadable(String),
    /// Nothing came for the idle time while the backend waited for more.
    #[error("no part of the request body came for {0:?}")]
    Stalled(Duration),
}

/// A client's body, watched (see the module documentation).
pub(super) struct ClientBody {
    inner: IdleBody,
    /// Told once the whole body has been handed on; taken then.
    sent: Option<Arc<Notify>>,
}

impl ClientBody {
    /// Watches `inner`; `sent` is notified when it has all been handed on (at once for a body
    /// that is empty).
    pub(super) fn new(inner: axum::body::Body, sent: Arc<Notify>, idle: Duration) -> Self {
        let mut body = Self {
            inner: IdleBody::new(inner, idle),
            sent: Some(sent),
        };
        if body.inner.is_end_stream() {
            body.finished();
        }
        body
    }

    fn finished(&mut self) {
        if let Some(sent) = self.sent.take() {
            sent.notify_one();
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(match cause::<BodyStalled>(&e) {
                Some(BodyStalled(after)) => ClientBodyError::Stalled(*after),
                None => ClientBodyError::Unreadable(innermost(&e)),
            }))),
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
        let empty = Arc::new(Notify::new());
        let _body = ClientBody::new(
            axum::body::Body::empty(),
            empty.clone(),
            Duration::from_secs(1),
        );
        tokio::time::timeout(Duration::from_secs(1), empty.notified())
            .await
            .expect("an empty body is sent from the start");

        let full = Arc::new(Notify::new());
        let body = ClientBody::new(
            axum::body::Body::from("hello"),
            full.clone(),
            Duration::from_secs(1),
        );
        let waiting = tokio::time::timeout(Duration::from_millis(50), full.notified()).await;
        assert!(waiting.is_err(), "not sent before it is read");
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        tokio::time::timeout(Duration::from_secs(1), full.notified())
            .await
            .expect("sent once read");
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
            Arc::new(Notify::new()),
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
