//! The front door: every request of every listener (plain and TLS) arrives here and takes one
//! of three ways. Forward-auth (`/auth`, `/auth/…`) and the gateway (any path outside the
//! control plane's first segments) are served directly, without the control plane's router and
//! middleware, because they are the hot path; everything else goes to the axum router of the
//! control plane (which still hands paths none of its routes serve to the gateway).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use portcullis_gateway::Proxy;
use tower::{Service, ServiceExt};

use crate::state::AppState;

/// First path segments the control plane owns. Every path its router serves starts with one of
/// these (a test reads the router's source to hold this true); a path outside them never
/// reaches the router.
const CONTROL_PLANE: &[&str] = &[
    "api",
    "healthz",
    "readyz",
    "metrics",
    "grant",
    "revoke",
    "oauth",
    "refreshtoken",
    "userinfo",
    "logout",
    "apps",
    ".well-known",
    "web-login",
];

/// Which way a path goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    ForwardAuth,
    ControlPlane,
    Gateway,
}

pub(crate) fn way_of(path: &str) -> Way {
    let first = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .next()
        .unwrap_or("");
    if first == "auth" {
        Way::ForwardAuth
    } else if CONTROL_PLANE.contains(&first) {
        Way::ControlPlane
    } else {
        Way::Gateway
    }
}

struct Shared {
    router: Router,
    state: AppState,
}

/// Whether a request came over this server's own TLS listener (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverTls(pub(crate) bool);

/// The service of one connection.
#[derive(Clone)]
pub struct Front {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The connection came over TLS (this listener's own).
    secure: bool,
    /// The serving worker's forwarding client.
    proxy: Option<Arc<Proxy>>,
}

/// Makes the service of each new connection.
#[derive(Clone)]
pub struct FrontDoor {
    shared: Arc<Shared>,
}

impl FrontDoor {
    /// The front door over the control plane's `router` (layers and state applied).
    pub fn new(router: Router, state: AppState) -> Self {
        Self {
            shared: Arc::new(Shared { router, state }),
        }
    }

    /// The service for a connection from `peer` (over TLS when `secure`), forwarding through
    /// `proxy`.
    pub fn connection(&self, peer: SocketAddr, proxy: Option<Arc<Proxy>>, secure: bool) -> Front {
        Front {
            shared: self.shared.clone(),
            peer,
            secure,
            proxy,
        }
    }
}

impl Front {
    /// The peer this connection comes from.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection came over TLS.
    pub(crate) fn secure(&self) -> bool {
        self.secure
    }

    /// The server's state.
    pub(crate) fn state(&self) -> &AppState {
        &self.shared.state
    }

    /// The serving worker's forwarding client.
    pub(crate) fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_deref()
    }
}

impl Service<Request<Body>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if let Some(refusal) = host_refusal(&req).or_else(|| unmet_framing(req.headers())) {
            let answer = refused(&self.shared.state, &req, self.peer, refusal);
            return Box::pin(async { Ok(answer) });
        }
        let (shared, peer, proxy, secure) = (
            self.shared.clone(),
            self.peer,
            self.proxy.clone(),
            self.secure,
        );
        match way_of(req.uri().path()) {
            Way::ForwardAuth => Box::pin(async move {
                Ok(crate::gateway::forward_auth_request(&shared.state, req, peer).await)
            }),
            Way::Gateway => Box::pin(async move {
                Ok(crate::gateway::proxy_request(
                    &shared.state,
                    proxy.as_deref(),
                    req,
                    peer,
                    secure,
                )
                .await)
            }),
            Way::ControlPlane => {
                req.extensions_mut().insert(ConnectInfo(peer));
                // A path the router does not serve goes to the gateway, which must know.
                req.extensions_mut().insert(OverTls(secure));
                let req = if axum::body::HttpBody::is_end_stream(req.body()) {
                    req
                } else {
                    let idle = shared.state.gateway.idle_timeout;
                    req.map(|body| Body::new(portcullis_gateway::IdleBody::new(body, idle)))
                };
                let router = shared.router.clone();
                // The control plane runs on the shared runtime, beside the database pool.
                let handled = shared.state.control.spawn(router.oneshot(req));
                Box::pin(async move {
                    Ok(match handled.await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(e) => {
                            tracing::error!(error = %e, "a control-plane request failed");
                            crate::ApiError::Internal("the request could not be handled".into())
                                .into_response()
                        }
                    })
                })
            }
        }
    }
}

/// The answer to a request refused before it goes any way, with its request id as every
/// answer has.
fn refused(
    state: &AppState,
    req: &Request<Body>,
    peer: SocketAddr,
    refusal: crate::ApiError,
) -> Response {
    let request_id = crate::observability::request_id_of(req.headers());
    let mut answer = refusal.into_response();
    answer
        .headers_mut()
        .insert(crate::observability::REQUEST_ID, request_id.clone());
    crate::gateway::finish_refused(state, req, answer.status().as_u16(), &request_id, peer);
    answer
}

/// A request that does not name its host exactly and only: an HTTP/1.1 request names it once
/// (RFC 9112 §3.2) and no request twice (without one, or with two, which host a backend or a
/// proxy behind it would serve is anyone's guess; HTTP/1.0 may leave it out); the value is an
/// authority (a host and a valid port, no user name: `a.example, b.example` would be a second
/// host in disguise); and an absolute-form target carries no user name or password.
fn host_refusal(req: &Request<Body>) -> Option<crate::ApiError> {
    let refuse = |why: &str| Some(crate::ApiError::BadRequest(why.to_owned()));
    let mut hosts = req.headers().get_all(axum::http::header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() || (first.is_none() && req.version() == axum::http::Version::HTTP_11) {
        return refuse("a request must carry one Host header (HTTP/1.1: exactly one)");
    }
    if first.is_some_and(|h| !h.is_empty() && !is_authority(h.as_bytes())) {
        return refuse("the Host header must be a host name or address, with a port or without");
    }
    if let Some(authority) = req.uri().authority() {
        if authority.as_str().contains('@') {
            return refuse("a request target must not carry a user name or password");
        }
        // HTTP/2's `:authority` (or an absolute-form target) is the host the request names: the
        // same rule as for `Host`, and a `Host` beside it must name the same (RFC 9113 §8.3.1).
        if !is_authority(authority.as_str().as_bytes()) {
            return refuse(
                "the request's authority must be a host name or address, with a port or without",
            );
        }
        if req.version() == axum::http::Version::HTTP_2
            && first.is_some_and(|h| {
                !h.as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
            })
        {
            return refuse("the Host header names another host than the request's :authority");
        }
    }
    None
}

/// Whether `value` is `host[:port]`: a DNS name or IPv4 address (letters, digits, `-`, `.`,
/// `_`), or an IPv6 address in brackets; a port of 1 to 5 digits up to 65535. A pass over the
/// bytes, a table lookup each: the raw lane asks it of every request.
pub(crate) fn is_authority(value: &[u8]) -> bool {
    if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|b| *b == b']') else {
            return false;
        };
        let v6 = std::str::from_utf8(&rest[..close])
            .is_ok_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        return v6
            && match &rest[close + 1..] {
                [] => true,
                [b':', port @ ..] => is_port(port),
                _ => false,
            };
    }
    // A table lookup per byte: a `match` of ranges costs several comparisons each.
    if value.is_empty() || !value.iter().all(|b| HOST_BYTES[usize::from(*b)]) {
        return false;
    }
    match value.iter().position(|b| *b == b':') {
        Some(at) => at > 0 && is_port(&value[at + 1..]),
        None => true,
    }
}

/// The bytes of a host name, an IPv4 address, or the `:` before a port.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':');
        b += 1;
    }
    table
};

/// Whether `digits` is a port number: 1 to 5 digits, at most 65535.
fn is_port(digits: &[u8]) -> bool {
    (1..=5).contains(&digits.len())
        && digits
            .iter()
            .try_fold(0u32, |n, b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
            .is_some_and(|n| n <= 65535)
}

/// A request whose body or handling depends on something Portcullis does not do: a transfer
/// coding besides chunked (hyper decodes only chunked and would pass the rest on as if it were
/// plain bytes: RFC 9112 §6.1 says 501) or an expectation besides `100-continue` (417, RFC 9110
/// §10.1.1). The raw lane hands every request with either header to hyper, so all pass here.
fn unmet_framing(headers: &axum::http::HeaderMap) -> Option<crate::ApiError> {
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
    };
    if let Some(coding) =
        tokens(axum::http::header::TRANSFER_ENCODING).find(|t| !t.eq_ignore_ascii_case(b"chunked"))
    {
        return Some(crate::ApiError::NotImplemented(format!(
            "the transfer coding '{}' is not supported: send the body plain or chunked",
            String::from_utf8_lossy(coding)
        )));
    }
    // Chunked twice (RFC 9112 §7 forbids it): hyper would undo one and pass the other on as
    // the body's bytes.
    if tokens(axum::http::header::TRANSFER_ENCODING).count() > 1 {
        return Some(crate::ApiError::BadRequest(
            "chunked transfer coding may be applied only once".into(),
        ));
    }
    if let Some(expectation) =
        tokens(axum::http::header::EXPECT).find(|t| !t.eq_ignore_ascii_case(b"100-continue"))
    {
        return Some(crate::ApiError::ExpectationFailed(format!(
            "the expectation '{}' cannot be met: only 100-continue is",
            String::from_utf8_lossy(expectation)
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_take_their_way() {
        let table = [
            ("/auth", Way::ForwardAuth),
            ("/auth/jobs/1", Way::ForwardAuth),
            ("/authors", Way::Gateway),
            ("/api/v1/orgs", Way::ControlPlane),
            ("/api/catalog/entities", Way::ControlPlane),
            ("/healthz", Way::ControlPlane),
            ("/web-login/totp", Way::ControlPlane),
            ("/.well-known/jwks.json", Way::ControlPlane),
            ("/jobs/1", Way::Gateway),
            ("/", Way::Gateway),
            ("", Way::Gateway),
            ("/apis", Way::Gateway),
        ];
        for (path, way) in table {
            assert_eq!(way_of(path), way, "{path}");
        }
    }

    #[test]
    fn a_host_is_a_name_or_address_with_an_optional_port() {
        for good in [
            "a.example",
            "a.example:8443",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "my_host",
            "localhost:65535",
        ] {
            assert!(is_authority(good.as_bytes()), "{good}");
        }
        for bad in [
            "a.example, evil.example",
            "a.example,evil.example",
            "a.example evil.example",
            "a.example/evil",
            "u@a.example",
            "x:99999999",
            "x:65536",
            "x:",
            ":80",
            "[::1",
            "[not-v6]:80",
            "[::1]x",
            "a.example:80:80",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn only_chunked_coding_and_100_continue_are_met() {
        // (transfer-encoding, expect, refused with)
        let table: &[(Option<&str>, Option<&str>, Option<u16>)] = &[
            (None, None, None),
            (Some("chunked"), None, None),
            (Some("Chunked"), Some("100-Continue"), None),
            (Some("gzip, chunked"), None, Some(501)),
            (Some("chunked, chunked"), None, Some(400)),
            (Some(" , chunked"), None, None),
            (Some("deflate"), None, Some(501)),
            (None, Some("999-bogus"), Some(417)),
            (None, Some("100-continue, 999-bogus"), Some(417)),
        ];
        for &(coding, expect, refused) in table {
            let mut h = axum::http::HeaderMap::new();
            if let Some(c) = coding {
                h.insert("transfer-encoding", c.parse().unwrap());
            }
            if let Some(e) = expect {
                h.insert("expect", e.parse().unwrap());
            }
            let status = unmet_framing(&h).map(|e| e.into_response().status().as_u16());
            assert_eq!(status, refused, "{coding:?} {expect:?}");
        }
    }

    /// Every path the control plane's router serves must be sent to it: read every route
    /// literal of routes.rs and check its first segment.
    #[test]
    fn every_control_plane_route_reaches_the_router() {
        let source = [
            include_str!("routes.rs"),
            include_str!("routes/permission.rs"),
        ]
        .concat();
        let mut seen = 0;
        for piece in source.split(".route(").skip(1) {
            let Some(path) = piece
                .trim_start()
                .strip_prefix('"')
                .and_then(|p| p.split('"').next())
            else {
                continue;
            };
            seen += 1;
            assert_ne!(
                way_of(path),
                Way::Gateway,
                "{path} would bypass the control plane"
            );
        }
        assert!(seen > 50, "only {seen} routes found in routes.rs");
    }
}
