//! The worker threads that serve connections: one single-threaded runtime per worker, each
//! serving the connections handed to it from accept to close, with upstream connection pools
//! of its own (the model of Envoy's worker threads and nginx's worker processes). A gateway
//! request, its decision, and the backend connection it travels on never change threads; only
//! control-plane requests (and the rare store read) cross over to the shared runtime that owns
//! the database pool. Each connection starts on the raw HTTP/1.1 lane ([`crate::http1`]) and is
//! handed to hyper's server at its first request the lane does not serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use portcullis_gateway::Proxy;
use tokio::sync::{mpsc, oneshot, watch};
use tower::ServiceExt;

use crate::front::FrontDoor;
use crate::http1::{Ended, Prefixed};

/// How long a stopping worker lets requests in flight finish.
const DRAIN: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's head (a slow-headers attack holds a
/// connection open for nothing otherwise).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits every connection is served with.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest request head (request line and headers), HTTP/1.1 and HTTP/2 alike.
    pub max_header_bytes: usize,
}

/// The connection builder every worker uses: HTTP/1.1 or HTTP/2 (h2c by prior knowledge),
/// upgrades allowed, request heads bounded in size and in time.
fn connection_builder(limits: ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper refuses a read buffer under 8 KiB; the head limit is its read buffer.
    let head = limits.max_header_bytes.max(8192);
    builder
        .http1()
        .max_buf_size(head)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .timer(TokioTimer::new());
    builder
}

/// What a worker is told.
enum Lane {
    /// Serve this accepted connection (terminating TLS on it first, when an acceptor is given).
    Serve {
        tcp: std::net::TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    },
    /// Stop: finish what is in flight and end.
    Stop,
}

/// Builds a worker's own forwarding client (its connection pools).
pub type ProxyFactory = Arc<dyn Fn() -> Option<Arc<Proxy>> + Send + Sync>;

/// The worker threads.
pub struct Workers {
    lanes: Vec<mpsc::UnboundedSender<Lane>>,
    next: AtomicUsize,
    finished: std::sync::Mutex<Vec<oneshot::Receiver<()>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// Starts `count` workers (at least one) serving through `door`.
    pub fn start(
        count: usize,
        door: FrontDoor,
        proxies: ProxyFactory,
        limits: ConnectionLimits,
    ) -> std::io::Result<Self> {
        let mut lanes = Vec::new();
        let mut finished = Vec::new();
        for n in 0..count.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let (done, finished_rx) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (door, proxies) = (door.clone(), proxies.clone());
            std::thread::Builder::new()
                .name(format!("portcullis-worker-{n}"))
                .spawn(move || {
                    runtime.block_on(run(rx, door, proxies, limits));
                    let _ = done.send(());
                })?;
            lanes.push(tx);
            finished.push(finished_rx);
        }
        Ok(Self {
            lanes,
            next: AtomicUsize::new(0),
            finished: std::sync::Mutex::new(finished),
        })
    }

    /// Hands an accepted connection to the next worker (round robin); `tls` to terminate TLS
    /// on it first.
    pub fn dispatch(
        &self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        // A socket moves to another runtime in its std form (deregistered here).
        let Ok(tcp) = tcp.into_std() else { return };
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let _ = self.lanes[lane].send(Lane::Serve { tcp, peer, tls });
    }

    /// Stops the workers: no new connections; requests in flight finish (up to 30 s).
    pub async fn stop(&self) {
        let finished = match self.finished.lock() {
            Ok(mut f) => std::mem::take(&mut *f),
            Err(_) => return,
        };
        for lane in &self.lanes {
            let _ = lane.send(Lane::Stop);
        }
        for f in finished {
            let _ = f.await;
        }
    }
}

/// How often a worker's clock task runs (see [`run`]).
const TICK: Duration = Duration::from_secs(1);

/// One worker: serves the connections it is handed until told to stop, then drains.
async fn run(
    mut lane: mpsc::UnboundedReceiver<Lane>,
    door: FrontDoor,
    proxies: ProxyFactory,
    limits: ConnectionLimits,
) {
    // Built here, so the pools' connection tasks live on this worker's runtime.
    let proxy = proxies();
    let builder = connection_builder(limits);
    let graceful = GracefulShutdown::new();
    let (stop, stopped) = watch::channel(false);
    // A timer that always runs out within a second keeps the runtime's next wake-up near, so
    // that setting a request's timeout (seconds away) never has to interrupt the runtime's
    // sleep through its eventfd, a system call per request otherwise. The same task closes
    // kept-alive backend connections left idle too long.
    let ticking = proxy.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(p) = &ticking {
                p.tick();
            }
        }
    });
    while let Some(Lane::Serve { tcp, peer, tls }) = lane.recv().await {
        let Ok(tcp) = tcp
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(tcp))
        else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let front = door.connection(peer, proxy.clone());
        let (watcher, builder, stopped) = (graceful.watcher(), builder.clone(), stopped.clone());
        tokio::spawn(async move {
            // Held until the connection ends: a stop waits for it (up to the drain time).
            let watcher = watcher;
            let Some(acceptor) = tls else {
                serve(tcp, true, front, stopped, limits, &builder, watcher).await;
                return;
            };
            // A handshake gets the time a request head gets, and a stop ends it: no request
            // has been read on the connection yet, so nothing in flight is lost.
            let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp));
            let mut stopping = stopped.clone();
            let tls = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                },
                _ = stopping.wait_for(|&stop| stop) => return,
            };
            // HTTP/2 (chosen by ALPN) is hyper's from the start.
            let lane = tls.get_ref().1.alpn_protocol() != Some(b"h2");
            serve(tls, lane, front, stopped, limits, &builder, watcher).await;
        });
    }
    let _ = stop.send(true);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still in flight after {DRAIN:?}: closed");
        }
    }
}

/// Serves one connection: on the raw lane first (when `lane`), then, from the first request the
/// lane hands over, with hyper's server.
async fn serve<S>(
    io: S,
    lane: bool,
    front: crate::front::Front,
    stopped: watch::Receiver<bool>,
    limits: ConnectionLimits,
    builder: &Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = front.peer();
    let (io, read) = if lane {
        let served = crate::http1::serve(
            io,
            front.clone(),
            stopped,
            limits.max_header_bytes,
            HEADER_READ_TIMEOUT,
        )
        .await;
        match served {
            Ended::Closed => return,
            Ended::Handoff(io, read) => (io, read),
        }
    } else {
        (io, bytes::Bytes::new())
    };
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(Prefixed::new(read, io)), hyper_service(front))
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

/// A connection's service for hyper's server.
fn hyper_service(
    front: crate::front::Front,
) -> TowerToHyperService<
    impl tower::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone,
> {
    TowerToHyperService::new(tower::service_fn(
        move |req: axum::http::Request<hyper::body::Incoming>| {
            front.clone().oneshot(req.map(axum::body::Body::new))
        },
    ))
}
