//! Forwarding one request to a backend: pooled connections (HTTP/1.1, h2c, or TLS with HTTP/2
//! or 1.1 by ALPN), bodies streamed both ways under a size cap, hop-by-hop headers removed,
//! identity and `X-Forwarded-*` headers set, the request id passed on, and a time limit for the
//! backend's answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Limited;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::headers::{remove_hop_by_hop, remove_misleading, rewrite_cookies, set_forwarded};
use crate::identity::{self, Identity, IdentityHeaders};
use crate::send_timeout::WriteStalled;
use client_body::{ClientBody, ClientBodyError, Upload};
use connector::{Connector, HandshakeDeadline};
pub use tls::BackendTls;

mod client_body;
mod connector;
mod http1;
mod tls;

pub use http1::{Answered, BodilessRequest};

/// A backend requests are forwarded to.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its name in routes.
    pub name: String,
    /// Base URL (`http://jobs-api.internal:8080` or `https://…`, optionally with a path
    /// prefix).
    pub url: Uri,
    /// How long the backend may take to answer (headers).
    pub timeout: Duration,
    /// Speak HTTP/2 to an `http://` backend without TLS (h2c, prior knowledge); upgrades still
    /// use HTTP/1.1. Not for `https://` backends, where ALPN chooses between HTTP/2 and 1.1.
    pub http2: bool,
    /// Trust and client certificate for an `https://` backend (none may be set for `http://`).
    pub tls: BackendTls,
    /// Pass the caller's Portcullis credential (API key, bearer token, session cookie) on to
    /// the backend; by default it is removed ([`crate::credentials`]).
    pub pass_credentials: bool,
    /// The `aud` of the identity assertions this backend receives (its name when unset), so
    /// that an assertion one backend received is refused by another.
    pub audience: Option<String>,
    /// How long a websocket to this backend may carry nothing either way before it is
    /// closed; unset, the gateway's ([`Proxy::with_upgraded_idle`]).
    pub websocket_idle: Option<Duration>,
}

impl Backend {
    /// A backend at `url` with nothing else set: HTTP/1.1 to an `http://` URL (ALPN for
    /// `https://`), the default trust, credentials removed, its name as audience.
    pub fn new(name: &str, url: Uri, timeout: Duration) -> Self {
        Self {
            name: name.into(),
            url,
            timeout,
            http2: false,
            tls: BackendTls::default(),
            pass_credentials: false,
            audience: None,
            websocket_idle: None,
        }
    }

    /// The `aud` claim of the identity assertions sent to this backend.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.name)
    }
}

/// Why a request could not be forwarded. Each maps to one status: 502, 504, 413, 400, 408.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The route names a backend that is not configured.
    #[error("no backend '{0}' is configured")]
    UnknownBackend(String),
    /// The backend's URL or TLS settings are unusable (a bad URL, a CA or key file that cannot
    /// be read).
    #[error("backend '{name}': {message}")]
    BadBackend {
        /// Backend.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The backend could not be reached or broke the connection.
    #[error("backend '{backend}' is unreachable")]
    Unreachable {
        /// Backend.
        backend: String,
        /// Details for the log.
        detail: String,
    },
    /// The backend did not answer in time.
    #[error("backend '{backend}' did not answer within {after:?}")]
    Timeout {
        /// Backend.
        backend: String,
        /// The limit.
        after: Duration,
    },
    /// The backend took nothing more of the request (its body, mostly) for its write timeout.
    #[error(
        "backend '{backend}' stopped taking the request: it read nothing more of it for {after:?}"
    )]
    NotTaking {
        /// Backend.
        backend: String,
        /// The limit.
        after: Duration,
    },
    /// The request body is larger than allowed.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client's body could not be read (bad chunked coding, a body cut short): the
    /// client's fault, not the backend's.
    #[error("the request body could not be read: {0}")]
    BadRequestBody(String),
    /// The client stopped sending its body while the backend waited for it.
    #[error("no part of the request body came for {after:?}")]
    BodyStalled {
        /// The idle time.
        after: Duration,
    },
}

/// Whether the credential behind an upgraded connection still holds (checked every second).
pub type StillValid = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How an upgraded (websocket) connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradedEnd {
    /// Both sides closed it cleanly (a TLS peer without `close_notify` included).
    Closed,
    /// A side's connection broke: a reset, or a read or write error (a write to a side
    /// already gone among them).
    Failed,
    /// Nothing passed either way for the idle time.
    Idle,
    /// The caller may no longer make the request: the key or session is gone, or the route
    /// rules no longer let them.
    Revoked,
    /// The worker serving it stopped with it open.
    Stopped,
}

impl UpgradedEnd {
    /// The name metrics and logs give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::Idle => "idle",
            Self::Revoked => "revoked",
            Self::Stopped => "stopped",
        }
    }
}

/// What happens to upgraded connections, told to whoever keeps count (the gateway keeps no
/// metrics itself): `opened(backend)` once spliced, then `ended(backend, how)` exactly once.
pub trait UpgradeEvents: Send + Sync {
    /// A connection to `backend` was upgraded and is now spliced.
    fn opened(&self, backend: &str);
    /// A spliced connection to `backend` ended.
    fn ended(&self, backend: &str, how: UpgradedEnd);
}

/// How often a spliced (upgraded) connection re-checks its credential and its idle time.
const RECHECK: Duration = Duration::from_secs(1);

/// How long a backend has to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an upgraded connection may carry nothing before it is closed, unless configured:
/// five minutes, Envoy's `stream_idle_timeout` (nginx's `proxy_read_timeout` is a minute, and
/// deployments behind it raise it for websockets).
pub const DEFAULT_UPGRADED_IDLE: Duration = Duration::from_secs(300);

/// What to forward where.
#[derive(Clone)]
pub struct Forward<'a> {
    /// Backend name.
    pub backend: &'a str,
    /// The normalised path (the one the decision was made on).
    pub path: &'a str,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The connection comes from a trusted proxy (its `X-Forwarded-*` are kept).
    pub peer_trusted: bool,
    /// `http` or `https` towards the client.
    pub proto: &'a str,
    /// The caller, or none for an anonymous request.
    pub identity: Option<&'a Identity>,
    /// Alias identity headers to set.
    pub aliases: IdentityHeaders,
    /// The request id (kept or generated), passed on as `X-Request-Id`.
    pub request_id: &'a str,
    /// For an upgrade (websocket): the credential check that keeps the spliced connection open.
    pub still_valid: Option<StillValid>,
    /// Pass client headers whose names contain `_` (except those that read as Portcullis's
    /// with `-`); by default they are removed ([`crate::headers::remove_misleading`]).
    pub underscores_in_headers: bool,
}

/// Whether a request asks to switch to the websocket protocol: an HTTP/1.1 request (HTTP/1.0
/// cannot switch: RFC 9110 §7.8) with `Connection: upgrade` and an `Upgrade` naming
/// `websocket`. Only that switch is passed on. Any other (`h2c` above all) would open a
/// tunnel to the backend whose requests no route rule sees; such a request is forwarded as a
/// plain one, its `Upgrade` dropped with the other hop-by-hop headers, as nginx does.
pub fn is_upgrade(version: http::Version, headers: &http::HeaderMap) -> bool {
    version == http::Version::HTTP_11
        && names_websocket(headers)
        && has_token(headers, header::CONNECTION, "upgrade")
}

/// Whether `Upgrade` names `websocket` (what a proxy asking forward-auth may still pass on of
/// a handshake, having dropped `Connection`).
pub fn names_websocket(headers: &http::HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Whether the comma-separated values of the header `name` hold `token`, in any case.
fn has_token(headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// How one backend is spoken to: its pooled client(s).
enum Upstream {
    /// `http://`: HTTP/1.1, or h2c when the backend is marked `http2` (upgrades stay on the
    /// HTTP/1.1 client). Shared by the plain backends whose connections have the same write
    /// timeout (one pool keyed by host).
    Plain {
        http1: Client<Connector, Body>,
        h2c: Option<Client<Connector, Body>>,
    },
    /// `https://`: the backend's own trust. `auto` offers ALPN `h2` and `http/1.1` and lets the
    /// backend choose; `http1` offers only `http/1.1`, for upgrades, which HTTP/2 cannot carry.
    Tls {
        auto: Client<TlsConnector, Body>,
        http1: Client<TlsConnector, Body>,
    },
}

impl Upstream {
    fn send(&self, req: Request<Body>, upgrade: bool) -> ResponseFuture {
        match self {
            Self::Plain { http1, h2c } => match h2c {
                Some(h2c) if !upgrade => h2c.request(req),
                _ => http1.request(req),
            },
            Self::Tls { auto, http1 } => {
                if upgrade {
                    http1.request(req)
                } else {
                    auto.request(req)
                }
            }
        }
    }
}

/// A configured backend with its client(s).
struct Target {
    backend: Backend,
    upstream: Upstream,
    /// Kept-alive connections of the raw HTTP/1.1 exchange (plain HTTP/1.1 backends only).
    raw: Option<http1::Pool>,
    /// How long a write to the backend may wait for it to take anything (its connections').
    write_timeout: Duration,
}

/// The configured backends, each with the client(s) that reach it.
pub struct Proxy {
    /// By name (names come from the configuration: a fast hasher will do).
    backends: HashMap<String, Target, foldhash::fast::RandomState>,
    max_body: u64,
    /// How long a client may send nothing of a body the backend waits for.
    body_idle: Duration,
    /// How long an upgraded (websocket) connection may carry nothing either way.
    upgraded_idle: Duration,
    /// Told when upgraded connections open and end.
    upgrade_events: Option<Arc<dyn UpgradeEvents>>,
    /// Seconds counted by the owning worker (idle times of raw connections).
    ticks: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy for `backends`, refusing request bodies over `max_body` bytes and giving up on
    /// a client that sends nothing of its body for `idle`, and on a backend that takes nothing
    /// written to it for the longer of its timeout and `idle`. The TLS files of `https://`
    /// backends are read here; a file that is missing or not PEM is an error naming the
    /// backend and the file.
    pub fn new(
        backends: Vec<Backend>,
        max_body: u64,
        idle: Duration,
    ) -> Result<Self, GatewayError> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Plain backends whose connections have the same write timeout share their clients,
        // and so their pools (keyed by host).
        let mut plain: HashMap<Duration, PlainClients> = HashMap::new();
        let mut by_name = HashMap::default();
        for b in backends {
            // A backend slower than the idle time to answer may be as slow to read.
            let write_timeout = b.timeout.max(idle);
            let refuse = |message: &str| GatewayError::BadBackend {
                name: b.name.clone(),
                message: message.to_owned(),
            };
            let upstream = match (b.url.scheme_str(), b.url.authority()) {
                (Some("http"), Some(_)) if b.tls.is_set() => {
                    return Err(refuse(
                        "ca_file, client certificate and server_name need an https:// URL",
                    ));
                }
                (Some("http"), Some(_)) => {
                    let clients = plain.entry(write_timeout).or_insert_with(|| {
                        let connector = Connector::new(tcp.clone(), write_timeout);
                        PlainClients {
                            http1: pooled().build(connector.clone()),
                            h2c: pooled().http2_only(true).build(connector),
                        }
                    });
                    Upstream::Plain {
                        http1: clients.http1.clone(),
                        h2c: b.http2.then(|| clients.h2c.clone()),
                    }
                }
                (Some("https"), Some(_)) if b.http2 => {
                    return Err(refuse(
                        "http2 (h2c) is for http:// URLs; over https HTTP/2 is chosen by ALPN",
                    ));
                }
                (Some("https"), Some(_)) => tls_upstream(&b, &tcp, write_timeout)?,
                _ => return Err(refuse("the URL must be http(s)://host[:port][/prefix]")),
            };
            if b.websocket_idle.is_some_and(|idle| idle < RECHECK) {
                return Err(refuse("websocket_idle must be a second or more"));
            }
            // Routes name backends: with two of one name, one would get the other's traffic.
            if by_name.contains_key(&b.name) {
                return Err(refuse("another backend has this name"));
            }
            let raw = matches!(upstream, Upstream::Plain { h2c: None, .. })
                .then(|| http1::Pool::new(&b.url));
            by_name.insert(
                b.name.clone(),
                Target {
                    backend: b,
                    upstream,
                    raw,
                    write_timeout,
                },
            );
        }
        Ok(Self {
            backends: by_name,
            max_body,
            body_idle: idle,
            upgraded_idle: DEFAULT_UPGRADED_IDLE,
            upgrade_events: None,
            ticks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Closes an upgraded (websocket) connection that carries nothing either way for `idle`
    /// (default [`DEFAULT_UPGRADED_IDLE`]), so that one whose client vanished without a word
    /// gives its place and its backend connection back.
    /// Less than a second is taken as a second (idle times are looked at once a second).
    #[must_use]
    pub fn with_upgraded_idle(mut self, idle: Duration) -> Self {
        self.upgraded_idle = idle.max(RECHECK);
        self
    }

    /// Tells `events` when an upgraded connection is spliced and how it ends.
    #[must_use]
    pub fn with_upgrade_events(mut self, events: Arc<dyn UpgradeEvents>) -> Self {
        self.upgrade_events = Some(events);
        self
    }

    /// Whether a backend of that name is configured.
    pub fn has_backend(&self, name: &str) -> bool {
        self.backends.contains_key(name)
    }

    /// Forwards `req` as `f` says and streams the backend's answer back.
    pub async fn forward(
        &self,
        req: Request<Body>,
        f: Forward<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        let target = self
            .backends
            .get(f.backend)
            .ok_or_else(|| GatewayError::UnknownBackend(f.backend.to_owned()))?;
        let backend = &target.backend;
        let over_tls = matches!(target.upstream, Upstream::Tls { .. });
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(GatewayError::TooLarge {
                limit: self.max_body,
            });
        }
        let mut req = req;
        let upgrade = is_upgrade(req.version(), req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let held = parts.extensions.remove::<HeldWhileUpgraded>();
        let prefix = backend.url.path().trim_end_matches('/');
        let path_and_query = match f.query {
            Some(q) => format!("{prefix}{}?{q}", f.path),
            None => format!("{prefix}{}", f.path),
        };
        let authority = backend
            .url
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        // An HTTP/2 client names the host in the URI's authority, not in a Host header.
        let client_authority = parts.uri.authority().cloned();
        parts.uri = Uri::builder()
            .scheme(if over_tls { "https" } else { "http" })
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| GatewayError::BadBackend {
                name: backend.name.clone(),
                message: e.to_string(),
            })?;
        // h2c is chosen here; over TLS the client picks HTTP/2 when ALPN negotiated it, and an
        // HTTP/1.1 request is valid on either.
        let use_h2 = backend.http2 && !over_tls && !upgrade;
        parts.version = if use_h2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        rewrite_request_headers(
            &mut parts.headers,
            client_authority.as_ref(),
            &f,
            backend,
            true,
        );
        if use_h2 || over_tls {
            // HTTP/2 carries the authority in the URI; a Host header is not sent. Over TLS the
            // version is only known once connected: the client adds Host if it is HTTP/1.1.
            parts.headers.remove(header::HOST);
        } else if let Ok(h) = HeaderValue::from_str(authority) {
            parts.headers.insert(header::HOST, h);
        }
        if upgrade {
            // The upgrade is this hop's business too: ask the backend for it again.
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let upload = Arc::new(Upload::new());
        // A bodiless request has nothing for the backend to stop taking: no timer for it.
        let has_body = !axum::body::HttpBody::is_end_stream(&body);
        // The limit inside, so that the body's failures, this one too, are known as the
        // client's (`Upload::failure`) whatever the backend's client makes of them.
        let body = Body::new(ClientBody::new(
            Body::new(Limited::new(body, self.max_body as usize)),
            upload.clone(),
            self.body_idle,
        ));
        let upstream = Request::from_parts(parts, body);
        // The backend's time runs from when the whole request is out, as Envoy's route timeout
        // does: how long an upload takes is the client's business (bounded by the body's idle
        // time), and a large one must not be a 504. A backend that stops taking the body is
        // given up on after its write timeout: by its connection (`connector`), or when its
        // connection holds a part of the body that long (one HTTP/2 stream's window shut).
        let answer = tokio::select! {
            biased;
            answer = target.upstream.send(upstream, upgrade) => Ok(answer),
            () = upload.not_taken(target.write_timeout), if has_body => Err(true),
            () = async {
                upload.sent.notified().await;
                tokio::time::sleep(backend.timeout).await;
            } => Err(false),
        };
        let response = match answer {
            Err(true) => {
                return Err(GatewayError::NotTaking {
                    backend: backend.name.clone(),
                    after: target.write_timeout,
                });
            }
            Err(false) => {
                return Err(GatewayError::Timeout {
                    backend: backend.name.clone(),
                    after: backend.timeout,
                });
            }
            Ok(Err(e)) => {
                // The client's body first (kept beside the upload: an HTTP/2 client turns
                // its failure into a bare reset).
                match upload.failure() {
                    Some(ClientBodyError::TooLarge) => {
                        return Err(GatewayError::TooLarge {
                            limit: self.max_body,
                        });
                    }
                    Some(ClientBodyError::Unreadable(why)) => {
                        return Err(GatewayError::BadRequestBody(why.clone()));
                    }
                    Some(ClientBodyError::Stalled(after)) => {
                        return Err(GatewayError::BodyStalled { after: *after });
                    }
                    None => {}
                }
                if WriteStalled::is_cause_of(&e) {
                    return Err(GatewayError::NotTaking {
                        backend: backend.name.clone(),
                        after: target.write_timeout,
                    });
                }
                let detail = format!("{e:?}");
                return Err(GatewayError::Unreachable {
                    backend: backend.name.clone(),
                    detail,
                });
            }
            Ok(Ok(r)) => r,
        };
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // A switch the client did not ask for leaves it waiting for an HTTP answer.
            let Some(client_upgrade) = client_upgrade else {
                return Err(GatewayError::Unreachable {
                    backend: backend.name.clone(),
                    detail: "the backend switched protocols unasked".into(),
                });
            };
            // Only to the protocol asked for: anything else is a tunnel no rule sees.
            let switched_to = response.headers().get(header::UPGRADE);
            if !switched_to.is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket")) {
                return Err(GatewayError::Unreachable {
                    backend: backend.name.clone(),
                    detail: format!(
                        "the backend switched to {}, not to websocket",
                        switched_to
                            .and_then(|p| p.to_str().ok())
                            .unwrap_or("an unnamed protocol")
                    ),
                });
            }
            let mut response = response;
            let backend_upgrade = hyper::upgrade::on(&mut response);
            let still_valid = f.still_valid.clone();
            let name = backend.name.clone();
            tokio::spawn(splice(
                (client_upgrade, backend_upgrade),
                still_valid,
                backend.websocket_idle.unwrap_or(self.upgraded_idle),
                (name, self.upgrade_events.clone()),
                held,
            ));
            let (mut parts, _) = response.into_parts();
            // The switch's answer is filtered like any other (hop-by-hop headers, Portcullis's
            // cookies), keeping the two headers that name the switch.
            let switched_to = parts.headers.get(header::UPGRADE).cloned();
            remove_hop_by_hop(&mut parts.headers);
            crate::credentials::drop_portcullis_set_cookies(&mut parts.headers);
            if let Some(protocol) = switched_to {
                parts.headers.insert(header::UPGRADE, protocol);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        crate::credentials::drop_portcullis_set_cookies(&mut parts.headers);
        // A backend that stops sending mid-answer is given up on after its timeout per read,
        // as on the raw exchange: the client's connection (HTTP/1.1) or stream (HTTP/2) is
        // cut, rather than held for as long as the backend likes.
        let body = crate::idle_body::IdleBody::answer(Body::new(body), backend.timeout);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// The headers a request carries to its backend, the same on every way it travels: the
/// client's hop-by-hop and identity headers removed (and its Portcullis credential, unless the
/// backend takes it), its cookies as one header, the caller's identity headers set,
/// `X-Forwarded-*` set (the client's `Host`, or an HTTP/2 client's authority, becomes
/// `X-Forwarded-Host`) and the request id passed on. `Host` itself is left out: each way sets
/// the backend's. Identity headers are set here unless `into_map` is false (the raw
/// exchange writes them straight from the caller's prepared values).
fn rewrite_request_headers(
    headers: &mut http::HeaderMap,
    client_authority: Option<&http::uri::Authority>,
    f: &Forward<'_>,
    backend: &Backend,
    into_map: bool,
) {
    // The host the client asked for: the target's authority when it has one (HTTP/2, or an
    // absolute-form target, whose Host a proxy must ignore: RFC 9112 §3.2.2), else `Host`.
    let host = headers.remove(header::HOST);
    let host = client_authority
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or(host);
    remove_hop_by_hop(headers);
    remove_misleading(headers, f.peer_trusted, f.underscores_in_headers);
    if backend.pass_credentials {
        rewrite_cookies(headers, |_| false);
    } else {
        crate::credentials::strip(headers);
    }
    if into_map {
        identity::apply(headers, f.identity, f.aliases);
    } else {
        // The raw exchange writes them (identity::each), and the request id, itself.
        identity::strip(headers);
        headers.remove(X_REQUEST_ID);
    }
    set_forwarded(headers, f.client_ip, f.peer_trusted, f.proto, host.as_ref());
    if into_map && let Ok(id) = HeaderValue::from_str(f.request_id) {
        headers.insert(X_REQUEST_ID, id);
    }
}

/// The request id header (named once: a name outside the standard set is copied each time
/// it is made from text).
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The clients of plain backends whose connections have the same write timeout.
struct PlainClients {
    http1: Client<Connector, Body>,
    h2c: Client<Connector, Body>,
}

/// How every client to backends pools its connections: up to 256 kept per host, each closed
/// after a minute unused (the timer is what closes them; without it they are only dropped when
/// next looked at).
fn pooled() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new());
    builder
}

/// How an `https://` backend is connected to: TCP, then a TLS handshake in bounded time.
type TlsConnector = HandshakeDeadline<HttpsConnector<Connector>>;

/// How long an `https://` backend has to accept a connection and finish its TLS handshake
/// (nginx's `proxy_connect_timeout` covers both too). A request with a body starts the
/// backend's timeout only once the body is being sent, so without it a backend that accepted
/// the connection and never answered the handshake would hold the client as long as it likes.
const TLS_HANDSHAKE_TIMEOUT: Duration = CONNECT_TIMEOUT;

/// The two clients of an `https://` backend, sharing its trust settings and differing only in
/// the protocols ALPN offers.
fn tls_upstream(
    backend: &Backend,
    tcp: &HttpConnector,
    write_timeout: Duration,
) -> Result<Upstream, GatewayError> {
    let settings = tls::settings(backend)?;
    let mut tcp = tcp.clone();
    // The TLS connector hands it https:// URIs, which a plain connector refuses by default.
    tcp.enforce_http(false);
    let connector = Connector::new(tcp, write_timeout);
    let resolver = Arc::new(FixedServerNameResolver::new(settings.server_name));
    let with_alpn = |protocols: &[&[u8]]| {
        let mut config = settings.config.clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        HandshakeDeadline::new(
            HttpsConnector::new(connector.clone(), config, true, resolver.clone()),
            TLS_HANDSHAKE_TIMEOUT,
        )
    };
    let auto = pooled().build(with_alpn(&[b"h2", b"http/1.1"]));
    let http1 = pooled().build(with_alpn(&[b"http/1.1"]));
    Ok(Upstream::Tls { auto, http1 })
}

/// What must live as long as a connection upgraded through the proxy, put in the upgrade
/// request's extensions by the server (the client connection's place under its connection
/// cap, which hyper's connection gives up when it hands the connection over): held by the
/// splice until both sides close.
#[derive(Clone)]
pub struct HeldWhileUpgraded(pub Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for HeldWhileUpgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldWhileUpgraded")
    }
}

/// Copies bytes both ways between the upgraded client and backend connections until either
/// closes, nothing passes either way for `idle`, or the credential stops holding (a deleted
/// key, a revoked session): then both are closed, and `events` told how it ended. `_held`
/// lives as long.
async fn splice(
    (client, backend): (hyper::upgrade::OnUpgrade, hyper::upgrade::OnUpgrade),
    still_valid: Option<StillValid>,
    idle: Duration,
    (name, events): (String, Option<Arc<dyn UpgradeEvents>>),
    _held: Option<HeldWhileUpgraded>,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, backend = %name, "upgrade did not complete");
            return;
        }
    };
    let mut open = OpenUpgrade::new(name, events);
    let name = open.backend.as_str();
    // Every byte written was read from the other side first: watching reads sees both ways.
    let moved = AtomicBool::new(false);
    let mut client = ReadWatched::new(hyper_util::rt::TokioIo::new(client), &moved);
    let mut backend = ReadWatched::new(hyper_util::rt::TokioIo::new(backend), &moved);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    let mut ticker = tokio::time::interval(RECHECK);
    ticker.tick().await;
    let mut quiet_since = tokio::time::Instant::now();
    open.end = loop {
        tokio::select! {
            copied = &mut copy => break match copied {
                Ok(_) => UpgradedEnd::Closed,
                // A TLS peer that closed its connection without `close_notify`: an ordinary
                // way for a websocket to end (its own close frame said goodbye), not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => UpgradedEnd::Closed,
                Err(_) => UpgradedEnd::Failed,
            },
            now = ticker.tick() => {
                if still_valid.as_ref().is_some_and(|ok| !ok()) {
                    tracing::info!(backend = %name, "credential no longer valid: upgraded connection closed");
                    break UpgradedEnd::Revoked;
                }
                if moved.swap(false, Ordering::Relaxed) {
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= idle {
                    tracing::debug!(backend = %name, idle_seconds = idle.as_secs(), "upgraded connection idle: closed");
                    break UpgradedEnd::Idle;
                }
            }
        }
    };
}

/// A spliced connection, for its [`UpgradeEvents`]: told `opened` when made and `ended` when
/// dropped, so that a splice dropped with its runtime (the server stopping) is told too.
struct OpenUpgrade {
    backend: String,
    events: Option<Arc<dyn UpgradeEvents>>,
    /// How it ended, once it has.
    end: UpgradedEnd,
}

impl OpenUpgrade {
    fn new(backend: String, events: Option<Arc<dyn UpgradeEvents>>) -> Self {
        if let Some(events) = &events {
            events.opened(&backend);
        }
        Self {
            backend,
            events,
            end: UpgradedEnd::Stopped,
        }
    }
}

impl Drop for OpenUpgrade {
    fn drop(&mut self) {
        if let Some(events) = &self.events {
            // Unwinding from a panic in the splice: it broke, it was not stopped.
            let end = if std::thread::panicking() {
                UpgradedEnd::Failed
            } else {
                self.end
            };
            events.ended(&self.backend, end);
        }
    }
}

/// One side of a splice that marks `moved` whenever a read brings bytes.
struct ReadWatched<'a, T> {
    io: T,
    moved: &'a AtomicBool,
}

impl<'a, T> ReadWatched<'a, T> {
    fn new(io: T, moved: &'a AtomicBool) -> Self {
        Self { io, moved }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ReadWatched<'_, T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ReadWatched<'_, T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The first cause of type `T` in `error`'s chain (itself included), if there is one.
pub fn cause<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Whether an error (or one of its sources) is a body going over a size cap
/// ([`http_body_util::Limited`]).
pub(crate) fn over_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    cause::<http_body_util::LengthLimitError>(error).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend's websocket idle time under the once-a-second look would close its
    /// websockets at their first quiet second: refused, naming the backend.
    #[test]
    fn a_websocket_idle_time_under_a_second_is_refused() {
        let backend = |idle: Duration| Backend {
            websocket_idle: Some(idle),
            ..Backend::new(
                "chat",
                "http://chat.internal".parse().unwrap(),
                Duration::from_secs(1),
            )
        };
        let refused = Proxy::new(vec![backend(Duration::ZERO)], 1024, RECHECK);
        match refused {
            Err(e @ GatewayError::BadBackend { .. }) => {
                let message = e.to_string();
                assert!(message.contains("chat"), "{message}");
                assert!(message.contains("websocket_idle"), "{message}");
            }
            other => panic!("not refused: {other:?}"),
        }
        assert!(Proxy::new(vec![backend(RECHECK)], 1024, RECHECK).is_ok());
    }

    /// Two backends of one name: routes could not tell them apart (one would get the other's
    /// traffic, with the other's audience). Refused, naming the backend.
    #[test]
    fn two_backends_of_one_name_are_refused() {
        let backend = |url: &str| Backend::new("jobs", url.parse().unwrap(), RECHECK);
        let refused = Proxy::new(
            vec![
                backend("http://jobs-a.internal"),
                backend("http://jobs-b.internal"),
            ],
            1024,
            RECHECK,
        );
        match refused {
            Err(e @ GatewayError::BadBackend { .. }) => {
                let message = e.to_string();
                assert!(message.contains("jobs"), "{message}");
                assert!(message.contains("another backend"), "{message}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }
}
