//! A client's request body, given up on when the client sends nothing of it for the idle time
//! (as nginx's `client_body_timeout`): otherwise a client that announces a body and stops holds
//! its connection, and the task reading it, for as long as it likes. Only the time spent waiting
//! on the client counts, never the time the reader took between parts. Bodies forwarded to a
//! backend (`proxy`) and bodies the control plane reads are watched alike.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The client sent nothing of its body for the idle time.
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body came for {} s", .0.as_secs_f32())]
pub struct BodyStalled(pub Duration);

/// The backend sent nothing of its answer's body for its timeout.
#[derive(Debug, thiserror::Error)]
#[error("no part of the backend's answer came for {} s", .0.as_secs_f32())]
pub struct AnswerStalled(pub Duration);

/// A body that fails once its sender has sent nothing of it for `idle`: a client's request
/// body ([`BodyStalled`]), or a backend's answer ([`AnswerStalled`], per read as nginx's
/// `proxy_read_timeout`, the same limit the raw HTTP/1.1 exchange keeps).
pub struct IdleBody {
    inner: Body,
    idle: Duration,
    /// Whose body: a backend's answer or a client's request.
    answer: bool,
    /// Made at the first wait, on the runtime that reads the body.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the last poll left it waiting for the sender (the timer is running).
    waiting: bool,
}

impl IdleBody {
    /// Watches the client's request body `inner`.
    pub fn new(inner: Body, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            answer: false,
            timer: None,
            waiting: false,
        }
    }

    /// Watches a backend's answer body `inner`.
    pub fn answer(inner: Body, idle: Duration) -> Self {
        Self {
            answer: true,
            ..Self::new(inner, idle)
        }
    }
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame);
        }
        let deadline = Instant::now() + this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.waiting {
            // Each wait for the client starts the idle time afresh.
            timer.as_mut().reset(deadline);
            this.waiting = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) if this.answer => {
                Poll::Ready(Some(Err(axum::Error::new(AnswerStalled(this.idle)))))
            }
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyStalled(this.idle))))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_fails_after_the_idle_time_and_not_before() {
        let (tx, rx) = fed();
        let body = IdleBody::new(Body::new(rx), Duration::from_secs(30));
        let reading = tokio::spawn(async move {
            let started = Instant::now();
            let result = body.collect().await;
            (started.elapsed(), result.map(|_| ()))
        });
        // Parts that keep coming within the idle time keep it alive...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            tx.send(Bytes::from_static(b"x")).await.ok();
        }
        // ...then nothing more.
        let (waited, result) = reading.await.unwrap();
        let error = result.expect_err("the stalled body fails");
        assert!(
            crate::proxy::cause::<BodyStalled>(&error).is_some(),
            "a stall is found in the error's chain: {error}"
        );
        assert_eq!(waited, Duration::from_secs(60 + 30));
    }

    /// A body fed through a channel: frames the test sends when it likes.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn fed() -> (tokio::sync::mpsc::Sender<Bytes>, Fed) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Fed(rx))
    }
}
