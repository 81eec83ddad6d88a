//! HTTP/2 streams whose client stops taking the answer. A client can keep one stream's
//! flow-control window shut while it reads the rest of the connection: the connection's writes
//! go through (so [`SendTimeout`](crate::SendTimeout) sees nothing wrong), and the stream holds
//! its task, its answer and, for a forwarded one, the backend's connection for as long as the
//! client likes. hyper's server spawns each stream's task through [`TaskWatch`]: once its
//! answer has waited on the client's window for the given time, the task is dropped, which
//! resets the stream (`RST_STREAM` with `CANCEL`), as nginx's `send_timeout` ends an HTTP/2
//! stream. Other streams of the connection go on. (A backend keeping an upload's window shut is
//! watched by the proxy itself: `proxy/client_body`.)
//!
//! Whether a task waits on its client is learnt from the answer's body ([`note_frame`]): hyper
//! asks the body for its next part as soon as it has passed on the last one, unless the window
//! is shut. So a task left pending right after its body gave a part waits on the client; one
//! whose body is waiting (on a backend, say) is not timed.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

thread_local! {
    /// What the answer body last polled on this thread gave: a part (`Some(true)`) or not
    /// (`Some(false)`); `None` when no body was polled since a watched task began its poll.
    static LAST_FRAME: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Notes what an answer's body gave when polled (`gave_part`: a data frame), for the watch of
/// the stream whose task is polling it.
pub fn note_frame(gave_part: bool) {
    LAST_FRAME.with(|last| last.set(Some(gave_part)));
}

/// The executor hyper's server spawns HTTP/2 stream tasks with: each is watched (see the
/// module documentation).
#[derive(Clone, Copy, Debug)]
pub struct TaskWatch {
    idle: Duration,
}

impl TaskWatch {
    /// Drops a stream's task once its answer has waited `idle` on the client's window.
    pub fn new(idle: Duration) -> Self {
        Self { idle }
    }
}

impl<F> hyper::rt::Executor<F> for TaskWatch
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        tokio::spawn(Watched {
            task: Some(Box::pin(task)),
            idle: self.idle,
            on_client: false,
            since: Instant::now(),
            deadline: None,
        });
    }
}

/// A task, watched.
struct Watched<F> {
    /// The task (taken when given up on).
    task: Option<Pin<Box<F>>>,
    idle: Duration,
    /// Whether the task waits on its client (its body gave a part and was not asked for the
    /// next).
    on_client: bool,
    /// When that wait began.
    since: Instant,
    /// Wakes the task when a wait may have run out (made at the first wait: most streams never
    /// wait). Re-armed only when it fires, not at every part: a fast download bound by the
    /// window begins thousands of waits a second.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(());
        };
        let before = LAST_FRAME.with(|last| last.replace(None));
        let polled = task.as_mut().poll(cx);
        let seen = LAST_FRAME.with(|last| last.replace(before));
        if polled.is_ready() {
            return Poll::Ready(());
        }
        // A body not polled this time leaves the stream as it was (woken for something else).
        if let Some(gave_part) = seen {
            if gave_part {
                // A new wait: the part before it went out.
                this.since = Instant::now();
            }
            this.on_client = gave_part;
        }
        if !this.on_client {
            return Poll::Pending;
        }
        let due = this.since + this.idle;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            match deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= due => {
                    tracing::debug!(
                        idle = ?this.idle,
                        "an HTTP/2 client took none of a stream's answer: the stream is reset"
                    );
                    drop(this.task.take());
                    return Poll::Ready(());
                }
                // It was armed for an earlier wait, which the client ended.
                Poll::Ready(()) => deadline.as_mut().reset(due),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const IDLE: Duration = Duration::from_secs(30);

    /// A stream's task as hyper runs it: gives one part, then either waits on a window that
    /// never opens (`waits_on_window`) or on a body with nothing more yet. Notes whether it
    /// was dropped.
    struct Stream {
        gave: bool,
        waits_on_window: bool,
        dropped: Arc<AtomicBool>,
    }

    impl Future for Stream {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if !self.gave {
                self.gave = true;
                note_frame(true);
                if self.waits_on_window {
                    return Poll::Pending;
                }
            }
            if self.waits_on_window {
                // Still no window: the body is not asked for more.
                return Poll::Pending;
            }
            // The body is asked for more and has none yet (a backend still working).
            note_frame(false);
            Poll::Pending
        }
    }

    impl Drop for Stream {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::Relaxed);
        }
    }

    /// A watched [`Stream`], with whether it was dropped.
    fn watched(waits_on_window: bool) -> (Watched<Stream>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let task = Stream {
            gave: false,
            waits_on_window,
            dropped: dropped.clone(),
        };
        let watched = Watched {
            task: Some(Box::pin(task)),
            idle: IDLE,
            on_client: false,
            since: Instant::now(),
            deadline: None,
        };
        (watched, dropped)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_waiting_on_the_clients_window_ends_after_the_idle_time() {
        let (watched, dropped) = watched(true);
        let started = Instant::now();
        let ended = tokio::spawn(watched);
        tokio::time::timeout(IDLE * 2, ended)
            .await
            .expect("the stream was not ended")
            .unwrap();
        assert_eq!(started.elapsed(), IDLE);
        assert!(dropped.load(Ordering::Relaxed), "its task was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_waiting_on_its_backend_is_not_timed() {
        let (watched, dropped) = watched(false);
        let ended = tokio::time::timeout(IDLE * 10, tokio::spawn(watched)).await;
        assert!(ended.is_err(), "a stream waiting on its body was ended");
        assert!(!dropped.load(Ordering::Relaxed));
    }
}
