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
