//! A peer that stops reading: a connection whose write has waited `idle` for the peer to take
//! anything fails (nginx's `send_timeout` towards clients, `proxy_send_timeout` towards
//! backends). Without it, a client that asks and never reads holds its connection, the
//! request's task and, for a forwarded answer, the backend's connection for as long as it
//! likes (an answer still being written counts as a request in flight, which neither the idle
//! close nor a stop's drain ends early); and a backend that reads none of an upload holds the
//! client, its body and the backend's connection the same way.
//!
//! The timer runs only while a write waits: a write that goes through, however slowly the
//! peer reads, starts it over, and a connection with nothing to write never arms it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A write waited this long for the peer to take any of it; carried inside the
/// [`io::Error`] (of kind [`io::ErrorKind::TimedOut`]) the write fails with.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{STALLED} {0:?}")]
pub struct WriteStalled(pub Duration);

/// How a [`WriteStalled`] reads, however it is carried.
const STALLED: &str = "the peer took nothing written to it for";

impl WriteStalled {
    /// Whether a write of a [`SendTimeout`] connection failing is what `error` comes from.
    /// Some layers (HTTP/2's) keep only the kind and the text of an I/O error, so the text
    /// tells too.
    pub fn is_cause_of(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(e) = current {
            let io = e.downcast_ref::<io::Error>();
            // An io::Error's `source` skips the error it wraps: look inside it.
            if e.is::<Self>()
                || io
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<Self>())
            {
                return true;
            }
            if io.is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
                && e.to_string().starts_with(STALLED)
            {
                return true;
            }
            current = e.source();
        }
        false
    }
}

/// A connection whose writes fail with [`WriteStalled`] once one has waited for the peer for
/// the idle time.
#[derive(Debug)]
pub struct SendTimeout<S> {
    io: S,
    idle: Duration,
    /// The deadline of the write now waiting (made at the first wait of the connection, then
    /// reset: most connections never wait).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether a write is waiting since the deadline was set.
    waiting: bool,
}

impl<S> SendTimeout<S> {
    /// `io`, whose writes may wait for the peer at most `idle` at a time.
    pub fn new(io: S, idle: Duration) -> Self {
        Self {
            io,
            idle,
            deadline: None,
            waiting: false,
        }
    }

    /// Passes on what a write (or flush, or shutdown) made of `polled`: done, it clears the
    /// wait; still waiting, it fails once the peer has taken nothing for the idle time.
    fn waited<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        let idle = self.idle;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if !self.waiting {
            deadline.as_mut().reset(Instant::now() + idle);
            self.waiting = true;
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                WriteStalled(idle),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.waited(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.waited(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.waited(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.waited(cx, polled)
    }
}

/// A backend's connection says what it is through the connection it wraps.
impl<S: Connection> Connection for SendTimeout<S> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_takes_fails_after_the_idle_time() {
        // A pipe holding 64 bytes whose reader reads nothing: the client's full window.
        let (client, server) = tokio::io::duplex(64);
        let mut server = SendTimeout::new(server, IDLE);
        let started = Instant::now();
        let written = server.write_all(&[b'x'; 1024]).await;
        let e = written.expect_err("the write must fail");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(WriteStalled::is_cause_of(&e), "{e}");
        // As HTTP/2 keeps it: the kind and the text.
        let retold = io::Error::new(e.kind(), e.to_string());
        assert!(WriteStalled::is_cause_of(&retold), "{retold}");
        let other = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        assert!(!WriteStalled::is_cause_of(&other));
        assert_eq!(started.elapsed(), IDLE);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_is_waited_for() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = SendTimeout::new(server, IDLE);
        // The client takes 64 bytes every 20 s: each wait is shorter than the idle time, the
        // whole answer takes far longer.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 64];
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                match client.read(&mut chunk).await {
                    Ok(0) | Err(_) => return got.len(),
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let started = Instant::now();
        server
            .write_all(&[b'x'; 1024])
            .await
            .expect("every byte goes");
        server.shutdown().await.expect("closed");
        drop(server);
        assert!(started.elapsed() > IDLE * 5, "{:?}", started.elapsed());
        assert_eq!(reader.await.expect("the reader ends"), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn reading_is_untouched_however_long_the_client_is_silent() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = SendTimeout::new(server, IDLE);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(IDLE * 5).await;
            client.write_all(b"late").await.expect("sent");
            client
        });
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"late");
        let _ = sender.await;
    }
}
