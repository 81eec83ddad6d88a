//! The worker threads that serve connections: one single-threaded runtime per worker, each
//! serving the connections handed to it from accept to close, with upstream connection pools
//! of its own (the model of Envoy's worker threads and nginx's worker processes). A gateway
//! request, its decision, and the backend connection it travels on never change threads; only
//! control-plane requests (and the rare store read) cross over to the shared runtime that owns
//! the database pool. Each connection starts on the raw HTTP/1.1 lane ([`crate::http1`]) and is
//! handed to hyper's server at its first request the lane does not serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use portcullis_gateway::task_watch::{self, TaskWatch};
use portcullis_gateway::{Proxy, SendTimeout};
use tokio::sync::{mpsc, oneshot, watch};
use tower::ServiceExt;

use crate::front::FrontDoor;
use crate::http1::{Ended, Prefixed};

mod admission;

pub use admission::StreamPlace;
pub(crate) use admission::count_reclaimed;
use admission::{Admission, Slot, StreamPlaces};
pub use admission::{derived_max_connections, raise_open_file_limit};

/// How long a listener waits after an accept fails before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener`. An accept that fails (out of file descriptors, say) is
/// logged and waited out: the listener stays ready while connections wait in its backlog, so
/// trying again at once would spin a CPU until a descriptor frees up.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            // One connection that went away before it was taken: the next one may be fine.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Once per run of failures, not at every retry.
                if !failing {
                    tracing::warn!(error = %e, "could not accept a connection; retrying every {ACCEPT_BACKOFF:?}");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// How long a stopping worker lets requests in flight finish.
const DRAIN: Duration = Duration::from_secs(30);
/// How long a connection closed for idleness may take to finish its graceful close (HTTP/2
/// waits for the client to acknowledge a ping) before it is dropped: a client that never
/// answers would otherwise keep it open.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often HTTP/2 pings its peer, so that a peer that vanished does not hold its streams
/// (and the connection) forever.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long HTTP/2 waits for the answer to a ping before it closes the connection.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Limits every connection is served with.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest request head (request line and headers), HTTP/1.1 and HTTP/2 alike.
    pub max_header_bytes: usize,
    /// How long a connection may do nothing: a client's time to send a request's head (a
    /// slow-headers attack holds a connection open for nothing otherwise), an idle HTTP/1.1
    /// connection's wait for its next request, an HTTP/2 connection's time without an open
    /// stream, a TLS handshake's time, and how long a write may wait for a client that reads
    /// nothing (a slow-read attack holds a connection and its backend otherwise).
    pub idle_timeout: Duration,
    /// Most client connections held at once, over every listener; one more is closed at once.
    pub max_connections: usize,
    /// Most streams an HTTP/2 client may have open at once on one connection.
    pub http2_max_streams: u32,
}

/// The connection builder every worker uses: HTTP/1.1 or HTTP/2 (h2c by prior knowledge),
/// upgrades allowed, request heads bounded in size and in time, HTTP/2 peers pinged. (Idle
/// HTTP/2 connections are closed by [`serve`]: hyper has no such timer.)
fn connection_builder(limits: ConnectionLimits) -> Builder<TaskWatch> {
    let mut builder = Builder::new(TaskWatch::new(limits.idle_timeout));
    // hyper refuses a read buffer under 8 KiB; the head limit is its read buffer.
    let head = limits.max_header_bytes.max(8192);
    builder
        .http1()
        .max_buf_size(head)
        // A client that shuts its side after sending (`nc -N`, some health checks) still gets
        // its answer, as on the raw lane.
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    builder
        .http2()
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.http2_max_streams)
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// What a worker is told.
enum Lane {
    /// Serve this accepted connection (terminating TLS on it first, when an acceptor is given).
    Serve {
        tcp: std::net::TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        /// The connection's place under the cap, held until it closes.
        slot: Slot,
    },
    /// Stop: finish what is in flight and end.
    Stop,
}

/// Builds a worker's own forwarding client (its connection pools).
pub type ProxyFactory = Arc<dyn Fn() -> Option<Arc<Proxy>> + Send + Sync>;

/// The worker threads.
pub struct Workers {
    lanes: Vec<mpsc::UnboundedSender<Lane>>,
    /// Each worker's signal to its connections: `true` when the server stops; a change that
    /// leaves it false is a reclaim (see [`Workers::dispatch`]).
    signals: Vec<Arc<watch::Sender<bool>>>,
    next: AtomicUsize,
    admission: Arc<Admission>,
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
        let mut signals = Vec::new();
        let mut finished = Vec::new();
        for n in 0..count.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let signal = Arc::new(watch::Sender::new(false));
            let (done, finished_rx) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (door, proxies, stop) = (door.clone(), proxies.clone(), signal.clone());
            std::thread::Builder::new()
                .name(format!("portcullis-worker-{n}"))
                .spawn(move || {
                    runtime.block_on(run(rx, door, proxies, limits, stop));
                    // What the worker spawned and still holds (a websocket's splice) is closed
                    // before the stop is reported done, not when this thread ends.
                    runtime.shutdown_background();
                    let _ = done.send(());
                })?;
            lanes.push(tx);
            signals.push(signal);
            finished.push(finished_rx);
        }
        Ok(Self {
            lanes,
            signals,
            next: AtomicUsize::new(0),
            admission: Admission::new(limits.max_connections),
            finished: std::sync::Mutex::new(finished),
        })
    }

    /// Hands an accepted connection to the next worker (round robin); `tls` to terminate TLS
    /// on it first. A connection over the cap is closed here, before any byte is read, and
    /// the connections held are reclaimed (at most once a second): those quiet for a second
    /// close, busy ones make their next answer their last (see [`crate::http1::serve`] and
    /// [`drive`]), so that clients holding connections without using them do not keep new
    /// ones out for their whole idle time.
    pub fn dispatch(
        &self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let Some(slot) = self.admission.admit() else {
            if self.admission.reclaim_due() {
                for signal in &self.signals {
                    // A new version with the same value: a reclaim, not a stop.
                    signal.send_modify(|_| {});
                }
            }
            return;
        };
        // A socket moves to another runtime in its std form (deregistered here).
        let Ok(tcp) = tcp.into_std() else { return };
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let _ = self.lanes[lane].send(Lane::Serve {
            tcp,
            peer,
            tls,
            slot,
        });
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

/// How long a TLS handshake may take once a reclaim has come (the idle time otherwise): a client
/// finishes one in one or two round trips, and this leaves room for a slow link that loses a
/// packet.
const HANDSHAKE_RECLAIM_AFTER: Duration = Duration::from_secs(3);

/// How often a reclaim that found a hyper connection just idle looks at it again (see
/// [`drive`]).
const RECLAIM_RECHECK: Duration = Duration::from_millis(50);

/// How often a worker's clock task runs (see [`run`]).
const TICK: Duration = Duration::from_secs(1);

/// One worker: serves the connections it is handed until told to stop, then drains. `stop`
/// signals its connections (see [`Workers`]' `signals`).
async fn run(
    mut lane: mpsc::UnboundedReceiver<Lane>,
    door: FrontDoor,
    proxies: ProxyFactory,
    limits: ConnectionLimits,
    stop: Arc<watch::Sender<bool>>,
) {
    // Built here, so the pools' connection tasks live on this worker's runtime.
    let proxy = proxies();
    let builder = connection_builder(limits);
    let graceful = GracefulShutdown::new();
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
    while let Some(Lane::Serve {
        tcp,
        peer,
        tls,
        slot,
    }) = lane.recv().await
    {
        let Ok(tcp) = tcp
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(tcp))
        else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tcp = SendTimeout::new(tcp, limits.idle_timeout);
        let front = door.connection(peer, proxy.clone(), tls.is_some());
        let (watcher, builder) = (graceful.watcher(), builder.clone());
        // A connection answers the signals sent from now on, not a reclaim sent before it came.
        let stopped = stop.subscribe();
        tokio::spawn(async move {
            // Held until the connection ends: a stop waits for it (up to the drain time), and
            // the connection counts under the cap.
            let (watcher, slot) = (watcher, Arc::new(slot));
            let Some(acceptor) = tls else {
                serve(
                    tcp,
                    Opened::Plain,
                    front,
                    stopped,
                    limits,
                    &builder,
                    (watcher, slot),
                )
                .await;
                return;
            };
            // A handshake gets the time a request head gets, and a stop ends it: no request
            // has been read on the connection yet, so nothing in flight is lost. So does a
            // reclaim once it has taken [`HANDSHAKE_RECLAIM_AFTER`]: a client finishes a
            // handshake in one or two round trips, and one that does not holds a place a new
            // client could use.
            let began = tokio::time::Instant::now();
            let handshake = tokio::time::timeout(limits.idle_timeout, acceptor.accept(tcp));
            let mut signals = stopped.clone();
            let given_up = async {
                // A stop, or the worker gone: at once.
                if signals.changed().await.is_err() || *signals.borrow() {
                    return;
                }
                // A reclaim: the handshake has until then, unless a stop comes first.
                tokio::select! {
                    () = tokio::time::sleep_until(began + HANDSHAKE_RECLAIM_AFTER) => {
                        count_reclaimed("handshake");
                    }
                    _ = signals.wait_for(|&stop| stop) => {}
                }
            };
            let tls = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                },
                () = given_up => return,
            };
            // The protocol is the one ALPN chose (RFC 9113 section 3.3: HTTP/2 over TLS only
            // by ALPN): HTTP/2 is hyper's from the start; any other choice, or none, is
            // HTTP/1.1, whatever preface the client sends after it.
            let opened = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                Opened::TlsHttp2
            } else {
                Opened::TlsHttp1
            };
            serve(
                tls,
                opened,
                front,
                stopped,
                limits,
                &builder,
                (watcher, slot),
            )
            .await;
        });
    }
    // Stored even with no connection left to tell.
    stop.send_replace(true);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still in flight after {DRAIN:?}: closed");
        }
    }
}

/// What a connection was opened as, which decides the protocols it may speak.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// Plain TCP: HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
    Plain,
    /// TLS where ALPN chose HTTP/1.1, or nothing: HTTP/1.1 only.
    TlsHttp1,
    /// TLS where ALPN chose `h2`.
    TlsHttp2,
}

/// Serves one connection: on the raw lane first (unless it is HTTP/2 over TLS), then, from the
/// first request the lane hands over, with hyper's server. hyper's connection is closed
/// gracefully when the server stops, when it reclaims connections (see [`drive`]), or when it
/// has had no open request for the idle time.
async fn serve<S>(
    io: S,
    opened: Opened,
    front: crate::front::Front,
    stopped: watch::Receiver<bool>,
    limits: ConnectionLimits,
    builder: &Builder<TaskWatch>,
    (watcher, slot): (hyper_util::server::graceful::Watcher, Arc<Slot>),
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Held to the end of the connection (its graceful close is started by `drive`).
    let _watcher = watcher;
    let peer = front.peer();
    let (io, read) = if opened != Opened::TlsHttp2 {
        let served = crate::http1::serve(
            io,
            front.clone(),
            stopped.clone(),
            (limits.max_header_bytes, limits.idle_timeout),
            opened == Opened::Plain,
        )
        .await;
        match served {
            Ended::Closed => return,
            Ended::Handoff(io, read) => (io, read),
        }
    } else {
        (io, bytes::Bytes::new())
    };
    // A stop or reclaim that came while the lane had the connection: the request handed over is
    // its last, and its answer says so (hyper may answer it within its first poll, before
    // `drive` could start a close).
    let last_only;
    let builder = if stopped.has_changed().unwrap_or(true) {
        let mut one_request = builder.clone();
        one_request.http1().keep_alive(false);
        last_only = one_request;
        &last_only
    } else {
        builder
    };
    let activity = Arc::new(Activity::new());
    let conn = builder
        .serve_connection_with_upgrades(
            TokioIo::new(Prefixed::new(read, io)),
            hyper_service(front, activity.clone(), slot),
        )
        .into_owned();
    let ended = drive(
        conn,
        |conn| conn.graceful_shutdown(),
        &activity,
        stopped,
        (limits.idle_timeout, CLOSE_GRACE),
    )
    .await;
    if let Some(Err(e)) = ended {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

/// Drives hyper's connection to its end, starting its graceful close when the server stops, when
/// it has reclaimed connections (`stopped` changes without turning true) and this one is busy
/// or has been idle for [`crate::http1::RECLAIM_AFTER`], or when none has been open for `idle`
/// (hyper's HTTP/1.1 closes an idle connection itself, at its header read timeout; HTTP/2 has
/// no such timer). A close for idleness that the client does not let finish within `grace`
/// drops the connection (`None`).
async fn drive<C: std::future::Future>(
    conn: C,
    close_gracefully: impl Fn(std::pin::Pin<&mut C>),
    activity: &Activity,
    mut stopped: watch::Receiver<bool>,
    (idle, grace): (Duration, Duration),
) -> Option<C::Output> {
    tokio::pin!(conn);
    // Whether the graceful close was started, and whether for idleness.
    let (mut closing, mut idled) = (false, false);
    // A reclaim that found the connection idle for under a second: it may have a request on
    // its way, so the close waits until one is open or the second is over.
    let mut reclaim_waits = false;
    loop {
        // Every branch but a reclaim's (or its look again) ends this turn of the loop.
        tokio::select! {
            // The connection first: a request already received (handed over by the lane) is
            // read before a close can be started, and is then let finish.
            biased;
            done = conn.as_mut() => return Some(done),
            // True for a stop, false for a reclaim (either may have come while the lane had
            // the connection).
            stop = async {
                if *stopped.borrow() {
                    return true;
                }
                stopped.changed().await.is_err() || *stopped.borrow()
            }, if !closing => {
                if stop {
                    close_gracefully(conn.as_mut());
                    closing = true;
                    continue;
                }
            }
            () = tokio::time::sleep(RECLAIM_RECHECK), if reclaim_waits && !closing => {}
            () = activity.idle_for(idle), if !closing => {
                close_gracefully(conn.as_mut());
                (closing, idled) = (true, true);
                continue;
            }
            () = tokio::time::sleep(grace), if idled => {
                // A request that came in meanwhile is let finish; the check comes again.
                if activity.open.load(Ordering::Acquire) == 0 {
                    return None;
                }
                continue;
            }
        }
        // A reclaim: a busy connection finishes what is open (an HTTP/1.1 answer then says
        // `Connection: close`; HTTP/2 gets a GOAWAY), and so does one idle for a second; one
        // idle for less may have a request on its way, so its next answer is made its last
        // and it is looked at again shortly.
        if activity.idle_for_under(crate::http1::RECLAIM_AFTER) {
            reclaim_waits = true;
            activity.last.store(true, Ordering::Relaxed);
        } else {
            close_gracefully(conn.as_mut());
            closing = true;
            // A reclaimed idle connection's close gets the grace an idle one's gets.
            idled = activity.open.load(Ordering::Acquire) == 0;
            if idled {
                count_reclaimed("idle");
            }
        }
    }
}

/// Requests open on one of hyper's connections (HTTP/2 streams, or HTTP/1.1's one at a time),
/// and when the last one ended.
#[derive(Debug)]
struct Activity {
    /// Requests whose answer is not yet wholly sent.
    open: AtomicUsize,
    /// When a request last ended, in microseconds from `start`.
    ended: AtomicU64,
    start: tokio::time::Instant,
    /// A reclaim spared the connection: its next HTTP/1.1 answer says `Connection: close`.
    last: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            start: tokio::time::Instant::now(),
            last: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts a request open until the returned guard is dropped.
    fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.clone())
    }

    /// Whether no request is open, and one was open (or the connection came to hyper) less
    /// than `span` ago.
    fn idle_for_under(&self, span: Duration) -> bool {
        // Read before the time it ended: an ending request writes the time first.
        self.open.load(Ordering::Acquire) == 0
            && self
                .start
                .elapsed()
                .saturating_sub(Duration::from_micros(self.ended.load(Ordering::Relaxed)))
                < span
    }

    /// Returns once no request has been open for `idle`. It wakes once per `idle` while
    /// requests come and go (no wake-up per request).
    async fn idle_for(&self, idle: Duration) {
        let mut wait = idle;
        loop {
            tokio::time::sleep(wait).await;
            wait = idle;
            // Read before the time it ended: an ending request writes the time first.
            if self.open.load(Ordering::Acquire) == 0 {
                let ended = Duration::from_micros(self.ended.load(Ordering::Relaxed));
                let quiet = self.start.elapsed().saturating_sub(ended);
                if quiet >= idle {
                    return;
                }
                wait = idle - quiet;
            }
        }
    }
}

/// One open request of an [`Activity`].
#[derive(Debug)]
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        a.ended.fetch_max(now, Ordering::Relaxed);
        a.open.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request counted as open until it is wholly sent (or the
/// client gives up on it), when hyper drops it. Over HTTP/2 it gives its data in parts of at
/// most [`H2_PART`] bytes, so that its task's watch sees a client that reads slowly take each
/// part in time (a large part is waited on until the client's window has taken all of it).
#[derive(Debug)]
struct Tracked {
    body: axum::body::Body,
    /// What is left of a data frame given in parts.
    rest: bytes::Bytes,
    /// Whether data is given in parts (HTTP/2).
    in_parts: bool,
    _open: Open,
    /// An HTTP/2 stream's place under the connection cap, if it took one.
    _place: Option<Arc<StreamPlace>>,
}

/// The largest part of an answer given to an HTTP/2 stream at a time: HTTP/2's default frame
/// size.
const H2_PART: usize = 16 * 1024;

impl Tracked {
    /// The next part of `data` (all of it unless it is given in parts), keeping the rest.
    fn part(&mut self, mut data: bytes::Bytes) -> bytes::Bytes {
        if self.in_parts && data.len() > H2_PART {
            self.rest = data.split_off(H2_PART);
        }
        data
    }
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            let part = self.part(rest);
            task_watch::note_frame(true);
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(part))));
        }
        match std::pin::Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => {
                task_watch::note_frame(true);
                let data = frame.into_data().unwrap_or_default();
                let part = self.part(data);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(part))))
            }
            other => {
                task_watch::note_frame(false);
                other
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = hyper::body::Body::size_hint(&self.body);
        let rest = self.rest.len() as u64;
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(hint.lower() + rest);
        hint
    }
}

/// A connection's service for hyper's server; each request counts in `activity` from its
/// arrival until its answer is sent.
fn hyper_service(
    front: crate::front::Front,
    activity: Arc<Activity>,
    slot: Arc<Slot>,
) -> TowerToHyperService<
    impl tower::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = axum::http::Response<Tracked>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone,
> {
    let stream_places = StreamPlaces::new(slot.clone());
    TowerToHyperService::new(tower::service_fn(
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            let open = activity.open();
            // An upgraded connection outlives hyper's: the splice keeps its place under the cap.
            if req.headers().contains_key(axum::http::header::UPGRADE) {
                let held: Arc<dyn std::any::Any + Send + Sync> = slot.clone();
                req.extensions_mut()
                    .insert(portcullis_gateway::HeldWhileUpgraded(held));
            }
            let in_parts = req.version() == axum::http::Version::HTTP_2;
            // An HTTP/2 stream takes a place under the cap if it forwards (the gateway takes
            // it), held until its answer is sent.
            let place = in_parts.then(|| {
                let place = StreamPlace::new(stream_places.clone());
                req.extensions_mut().insert(place.clone());
                place
            });
            let answer = front.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let mut response = answer.await?;
                // After a reclaim spared the connection, an HTTP/1.1 answer is its last and
                // says so (hyper then closes the connection after it).
                if !in_parts
                    && open.0.last.load(Ordering::Relaxed)
                    && response.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS
                {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                Ok(response.map(|body| Tracked {
                    body,
                    rest: bytes::Bytes::new(),
                    in_parts,
                    _open: open,
                    _place: place,
                }))
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll};

    /// A connection that never ends by itself; once asked to close, it ends if `answers`
    /// (a client that answers the closing handshake), or stays pending (one that does not).
    struct Conn {
        asked: Arc<AtomicBool>,
        answers: bool,
    }

    impl std::future::Future for Conn {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            // `drive` polls the connection again after asking it to close.
            if self.answers && self.asked.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    const IDLE: Duration = Duration::from_millis(300);
    const GRACE: Duration = Duration::from_millis(200);

    /// Drives `conn` with [`IDLE`] and [`GRACE`]; returns whether it ended by itself, whether
    /// it was asked to close, and when it ended.
    async fn run(
        activity: &Activity,
        answers: bool,
        stopped: watch::Receiver<bool>,
    ) -> (bool, bool, Duration) {
        let asked = Arc::new(AtomicBool::new(false));
        let conn = Conn {
            asked: asked.clone(),
            answers,
        };
        let started = std::time::Instant::now();
        let ended = drive(
            conn,
            |c| c.asked.store(true, Ordering::Relaxed),
            activity,
            stopped,
            (IDLE, GRACE),
        )
        .await;
        (
            ended.is_some(),
            asked.load(Ordering::Relaxed),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn a_connection_without_requests_is_closed_after_the_idle_time() {
        let (_stop, stopped) = watch::channel(false);
        let activity = Arc::new(Activity::new());
        let (ended, asked, after) = run(&activity, true, stopped).await;
        assert!(ended && asked);
        assert!(after >= IDLE && after < IDLE + GRACE, "{after:?}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_answer_the_close_is_dropped_after_the_grace() {
        let (_stop, stopped) = watch::channel(false);
        let activity = Arc::new(Activity::new());
        let (ended, asked, after) = run(&activity, false, stopped).await;
        assert!(!ended && asked);
        assert!(after >= IDLE + GRACE, "{after:?}");
    }

    #[tokio::test]
    async fn an_open_request_keeps_the_connection_and_its_end_starts_the_idle_time() {
        let (_stop, stopped) = watch::channel(false);
        let activity = Arc::new(Activity::new());
        let open = activity.open();
        let released = tokio::spawn(async move {
            tokio::time::sleep(IDLE * 3).await;
            drop(open);
        });
        let (ended, asked, after) = run(&activity, true, stopped).await;
        released.await.unwrap();
        assert!(ended && asked);
        assert!(
            after >= IDLE * 4,
            "closed while a request was open: {after:?}"
        );
        assert!(after < IDLE * 4 + GRACE, "{after:?}");
    }

    #[tokio::test]
    async fn requests_that_come_and_go_restart_the_idle_time() {
        let (_stop, stopped) = watch::channel(false);
        let activity = Arc::new(Activity::new());
        let busy = activity.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(IDLE / 3).await;
                drop(busy.open());
            }
        });
        let (ended, _, after) = run(&activity, true, stopped).await;
        assert!(ended);
        assert!(after >= IDLE * 3, "closed while in use: {after:?}");
    }

    #[tokio::test]
    async fn a_stop_closes_gracefully_and_is_not_cut_short() {
        let (stop, stopped) = watch::channel(false);
        let activity = Arc::new(Activity::new());
        let _open = activity.open();
        stop.send(true).unwrap();
        // A request is open and the client does not end: the stop waits (the worker's drain
        // time bounds it), it does not drop the connection after the idle grace.
        let waited = tokio::time::timeout(IDLE * 3, run(&activity, false, stopped)).await;
        assert!(waited.is_err());
    }

    /// The sizes of the data frames `tracked` gives.
    async fn part_sizes(mut tracked: Tracked) -> Vec<usize> {
        use http_body_util::BodyExt;
        let mut sizes = Vec::new();
        while let Some(frame) = tracked.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        sizes
    }

    #[tokio::test]
    async fn an_http2_answer_is_given_in_parts_of_a_frame_at_most() {
        let activity = Arc::new(Activity::new());
        let tracked = |in_parts| Tracked {
            body: axum::body::Body::from(vec![b'x'; 100 * 1024]),
            rest: bytes::Bytes::new(),
            in_parts,
            _open: activity.open(),
            _place: None,
        };
        let whole = tracked(true);
        assert_eq!(
            hyper::body::Body::size_hint(&whole).exact(),
            Some(100 * 1024)
        );
        assert_eq!(
            part_sizes(whole).await,
            [16384, 16384, 16384, 16384, 16384, 16384, 4096]
        );
        assert_eq!(part_sizes(tracked(false)).await, [100 * 1024]);
        assert_eq!(
            activity.open.load(Ordering::Relaxed),
            0,
            "both were counted out"
        );
    }
}
