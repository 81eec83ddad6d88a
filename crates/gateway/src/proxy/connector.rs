//! How Portcullis connects to a backend: TCP (with `TCP_NODELAY` and a connect timeout), its
//! writes watched by [`SendTimeout`] with the backend's timeout. A backend that takes nothing
//! of an upload (or of anything else written to it) for that long fails the exchange, which is
//! a 504 as for a backend that does not answer (nginx's `proxy_send_timeout`); without it the
//! client, its body and the backend's connection would wait for as long as the backend likes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use crate::send_timeout::SendTimeout;

/// The error of a failed connection attempt.
type ConnectError = <HttpConnector as Service<Uri>>::Error;

/// Connects to one backend (see the module documentation).
#[derive(Clone, Debug)]
pub(super) struct Connector {
    tcp: HttpConnector,
    /// How long a write may wait for the backend to take anything.
    write_timeout: Duration,
}

impl Connector {
    /// Connects with `tcp`, failing writes that wait `write_timeout` for the backend.
    pub(super) fn new(tcp: HttpConnector, write_timeout: Duration) -> Self {
        Self { tcp, write_timeout }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<SendTimeout<TcpStream>>;
    type Error = ConnectError;
    // Once per new backend connection (they are pooled): the box costs nothing that matters.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.tcp.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.tcp.call(uri);
        let write_timeout = self.write_timeout;
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            Ok(TokioIo::new(SendTimeout::new(tcp, write_timeout)))
        })
    }
}

/// Bounds the time a connector may take (the TLS handshake of an `https://` backend, with the
/// TCP connection before it): a backend that never finishes it is a connection error, which
/// the client gets as a 502 like a backend that cannot be reached.
#[derive(Clone, Debug)]
pub(super) struct HandshakeDeadline<C> {
    inner: C,
    limit: Duration,
}

impl<C> HandshakeDeadline<C> {
    /// `inner`, given up on after `limit`.
    pub(super) fn new(inner: C, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

/// The error of a connector whose errors are boxed.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> Service<Uri> for HandshakeDeadline<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection with a finished TLS handshake within {limit:?}"),
                )
                .into()),
            }
        })
    }
}
