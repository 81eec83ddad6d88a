//! The raw HTTP/1.1 lane: the gateway's hot path, served without hyper's server. A worker reads
//! request heads off a connection itself (httparse, the parser hyper uses) and serves the
//! requests that are plain: HTTP/1.1, origin-form target, no body (no `Transfer-Encoding`, no
//! `Content-Length` but 0), no upgrade, no `Expect`, for forward-auth or the gateway. The first
//! request that is anything else — a body, a websocket, HTTP/2, HTTP/1.0, a control-plane path,
//! a head this lane cannot read — hands the connection, with every byte already read, to
//! hyper's server for the rest of its life. So hyper handles every unusual message, and the
//! lane only ever has to frame requests that have no body, the case where request smuggling
//! has nothing to hide in. A head hyper would refuse with a bare status line is refused by the
//! lane instead, with a JSON answer that says what is wrong ([`malformed`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::front::{Front, Way, way_of};

mod malformed;
use malformed::Verdict;

/// Most request headers the lane reads itself (hyper takes requests with more).
const MAX_HEADERS: usize = 64;
/// A response body up to this size is written together with its head.
const COALESCE: usize = 64 * 1024;

/// Why the lane stopped serving a connection.
pub enum Ended<S> {
    /// The connection is closed (by the client, an error, a timeout, or a stop).
    Closed,
    /// The next request is for hyper: the connection and the bytes already read from it.
    Handoff(S, Bytes),
}

/// How an HTTP/2 connection's preface begins (RFC 9113 section 3.4): enough to tell it from any
/// HTTP/1 request line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2";

/// A request head the lane serves.
struct Plain {
    method: Method,
    /// The place of the request target in the head.
    target: std::ops::Range<usize>,
    /// Header names with the place of their value in the head.
    fields: Vec<(HeaderName, std::ops::Range<usize>)>,
    way: Way,
    close: bool,
}

/// What the bytes read so far hold.
// Made once per request and taken apart at once: a box would be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// A whole request head the lane serves, `len` bytes long.
    Plain(Plain, usize),
    /// Not a whole head yet.
    Partial,
    /// Something for hyper.
    Other,
}

/// Serves `io` from `peer` until it closes or a request needs hyper. `stop` turns true when the
/// server stops: an idle connection is then closed; a request in flight finishes first. It
/// changes without turning true when the server reclaims connections at its cap: a connection
/// waiting for a request is then closed too once it has been quiet for [`RECLAIM_AFTER`] (one
/// just opened or just answered may have a request on its way: it is closed when it has been
/// quiet that long, unless a request comes first); from then on a request head still coming
/// after that long is given up ([`slow_head`]). After either signal, the next
/// answer says `Connection: close` and is the connection's last.
/// The head of a request may be `max_head` bytes long and must come within `head_timeout`. An
/// HTTP/2 preface is handed to hyper only where `h2_prior_knowledge` (plain TCP; over TLS,
/// HTTP/2 is chosen by ALPN, never by what the client sends later).
pub async fn serve<S>(
    mut io: S,
    front: Front,
    mut stop: watch::Receiver<bool>,
    (max_head, head_timeout): (usize, Duration),
    h2_prior_knowledge: bool,
) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let peer = front.peer();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(8 * 1024);
    if *stop.borrow() {
        return Ended::Closed;
    }
    // The signals sent since the connection started, looked at without taking them from
    // `stopping` below.
    let signals = stop.clone();
    // Since when the connection has waited for a request (microseconds from `opened`).
    let opened = tokio::time::Instant::now();
    let waiting_since = AtomicU64::new(0);
    // One timer and one stop watch for the connection's life, re-armed per request rather than
    // made anew (each would be registered and removed again on every request).
    // Resolves true when a reclaim closes the connection, false at a stop.
    let stopping = async {
        // An error: the worker is gone, which is a stop too.
        if stop.changed().await.is_err() || *stop.borrow() {
            return false;
        }
        // A reclaim: a connection that has waited a second is not about to be used. One that
        // has waited less is looked at again when it has, if it is still waiting then (a
        // request in between gets the connection's last answer).
        loop {
            let since = Duration::from_micros(waiting_since.load(Ordering::Relaxed));
            let waited = opened.elapsed().saturating_sub(since);
            if waited >= RECLAIM_AFTER {
                return true;
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return false;
                    }
                }
                () = tokio::time::sleep(RECLAIM_AFTER - waited) => {}
            }
        }
    };
    tokio::pin!(stopping);
    let deadline = tokio::time::sleep(head_timeout);
    tokio::pin!(deadline);
    loop {
        // Read until a whole head is in: the client has `head_timeout` for it.
        let now = tokio::time::Instant::now();
        deadline.as_mut().reset(now + head_timeout);
        let since = now.saturating_duration_since(opened).as_micros();
        waiting_since.store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        // How much of the buffer has been looked at for this head: once a first look found it
        // unfinished, it is parsed again only when a blank line has come (as hyper does), so a
        // head trickled in a byte at a time is not parsed anew on every read.
        let mut seen = 0;
        // When the bytes of this head began to wait for the rest of it.
        let mut head_began = None;
        let (plain, len) = loop {
            let looked = std::mem::replace(&mut seen, buf.len());
            if !buf.is_empty() && (looked == 0 || ends_a_head(&buf, looked)) {
                match read_head(&buf) {
                    Head::Plain(_, len) if len > max_head => {
                        refuse_large_head(&mut io, max_head, &mut out).await;
                        return Ended::Closed;
                    }
                    Head::Plain(p, len) => break (p, len),
                    Head::Other if !h2_prior_knowledge && buf.starts_with(H2_PREFACE) => {
                        let refusal = crate::ApiError::BadRequest(
                            "HTTP/2 over TLS needs 'h2' chosen by ALPN in the handshake; this connection speaks HTTP/1.1".into(),
                        );
                        refuse(&mut io, refusal, &mut out).await;
                        return Ended::Closed;
                    }
                    // HTTP/2 by prior knowledge (h2c): not an HTTP/1 head at all.
                    Head::Other if buf.starts_with(H2_PREFACE) => {
                        return Ended::Handoff(io, buf.freeze());
                    }
                    Head::Other => match malformed::judge(&buf, max_head) {
                        Verdict::Hyper => return Ended::Handoff(io, buf.freeze()),
                        Verdict::Refuse(refusal) => {
                            refuse(&mut io, refusal, &mut out).await;
                            return Ended::Closed;
                        }
                        // Hyper would wait for the rest of the head too (up to the limit).
                        Verdict::Incomplete => {}
                    },
                    Head::Partial => {}
                }
            }
            // Not a whole head yet: one over the limit is refused to the byte, however it
            // arrives (whole in one read, or still coming).
            if buf.len() > max_head {
                refuse_large_head(&mut io, max_head, &mut out).await;
                return Ended::Closed;
            }
            buf.reserve(4096);
            let idle = buf.is_empty();
            if !idle && head_began.is_none() {
                head_began = Some(tokio::time::Instant::now());
            }
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => r,
                by_reclaim = &mut stopping, if idle => {
                    if by_reclaim {
                        crate::workers::count_reclaimed("idle");
                    }
                    return Ended::Closed;
                }
                () = slow_head(&signals, head_began), if !idle => {
                    crate::workers::count_reclaimed("slow_head");
                    return Ended::Closed;
                }
                () = &mut deadline => return Ended::Closed,
            };
            match read {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        let head = buf.split_to(len).freeze();
        let Plain {
            method,
            target,
            fields,
            way,
            close,
        } = plain;
        // After a stop or a reclaim, this answer is the last, and says so.
        let close = close || signals.has_changed().unwrap_or(true);
        // The target and the header values share the head's buffer instead of being copied.
        let Some(uri) = head
            .get(target.clone())
            .and_then(|_| Uri::from_maybe_shared(head.slice(target)).ok())
        else {
            // A target httparse reads and `Uri` does not.
            let mut all = BytesMut::with_capacity(head.len() + buf.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(&buf);
            if let Verdict::Refuse(refusal) = malformed::judge(&all, max_head) {
                refuse(&mut io, refusal, &mut out).await;
                return Ended::Closed;
            }
            return Ended::Handoff(io, all.freeze());
        };
        let Some(headers) = header_values(&head, fields) else {
            let refusal = crate::ApiError::BadRequest("a request header is not valid".into());
            let _ = write_response(&mut io, refusal.into_response(), false, true, &mut out).await;
            return Ended::Closed;
        };
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.headers = headers;
        let reusable = match way {
            Way::ForwardAuth => {
                let head_request = parts.method == Method::HEAD;
                let req = axum::http::Request::from_parts(parts, Body::empty());
                let response = crate::gateway::forward_auth_request(front.state(), req, peer).await;
                write_response(&mut io, response, head_request, close, &mut out).await
            }
            _ => crate::gateway::serve_bodiless(&front, parts, &mut io, &mut out, close).await,
        };
        if !reusable || close {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
        // Under TLS the end of the answer may still wait in the TLS layer, which sends it only
        // when written to or flushed: it must go before the wait for the next request.
        if io.flush().await.is_err() {
            return Ended::Closed;
        }
    }
}

/// How long a connection must have waited for a request before a reclaim closes it (see
/// [`serve`]): a client sends its first request at once and its next one soon after an answer,
/// so a connection quiet this long is holding a place for nothing.
pub(crate) const RECLAIM_AFTER: Duration = Duration::from_secs(1);

/// Resolves once the head under way since `began` has been coming for [`RECLAIM_AFTER`], if a
/// reclaim is among the `signals` sent since the connection started: a client sends a head in
/// one go (or a few packets, an RTT apart), so one still coming after a second is trickled,
/// and the place it holds goes to a new client when the server is full. A stop does not end
/// it: a request partway in is read and answered first (its head time bounds it).
async fn slow_head(signals: &watch::Receiver<bool>, began: Option<tokio::time::Instant>) {
    // A copy that has seen only what the connection saw at its start (made when first polled,
    // so never for a head that comes in one read): it answers at once for a signal since.
    let mut signals = signals.clone();
    let Some(began) = began else {
        return std::future::pending().await;
    };
    if signals.changed().await.is_err() || *signals.borrow() {
        // The worker is gone, or the server stops: the head may finish.
        return std::future::pending().await;
    }
    tokio::time::sleep_until(began + RECLAIM_AFTER).await;
    if *signals.borrow() {
        // Stopping: the head may finish.
        std::future::pending().await
    }
}

/// Whether the bytes after the first `looked` of `buf` (and the two before them, where a blank
/// line may have begun) hold a blank line, which ends every request head.
fn ends_a_head(buf: &[u8], looked: usize) -> bool {
    let new = &buf[looked.saturating_sub(2).min(buf.len())..];
    new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n")
}

/// Answers 431 to a request head over `max_head` bytes (the connection is closed after it).
async fn refuse_large_head<S>(io: &mut S, max_head: usize, out: &mut Vec<u8>)
where
    S: AsyncWrite + Unpin + Send,
{
    refuse(io, head_too_large(max_head), out).await;
}

/// The refusal of a request head over `max_head` bytes.
fn head_too_large(max_head: usize) -> crate::ApiError {
    crate::ApiError::HeadTooLarge(format!("the request head is larger than {max_head} bytes"))
}

/// Answers `refusal` with a request id, then closes the connection.
async fn refuse<S>(io: &mut S, refusal: crate::ApiError, out: &mut Vec<u8>)
where
    S: AsyncWrite + Unpin + Send,
{
    let mut response = refusal.into_response();
    response.headers_mut().insert(
        crate::observability::REQUEST_ID,
        crate::observability::new_request_id(),
    );
    let _ = write_response(io, response, false, true, out).await;
    let _ = io.shutdown().await;
}

/// Reads a request head from the start of `buf`. Header values are left for
/// [`header_values`] to take from the head once it is split off the buffer.
fn read_head(buf: &[u8]) -> Head {
    // Uninitialised slots (as hyper's): filling them would write 2 KiB on every request.
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    if req.version != Some(1) {
        return Head::Other;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Head::Other;
    };
    if !target.starts_with('/') {
        return Head::Other;
    }
    // The path as `Uri` reads it (and hyper's side routes on): up to a query or a fragment.
    let end = target.bytes().position(|b| b == b'?' || b == b'#');
    let path = end.map_or(target, |end| &target[..end]);
    let way = way_of(path);
    if way == Way::ControlPlane {
        return Head::Other;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Head::Other;
    };
    if method == Method::CONNECT {
        return Head::Other;
    }
    let mut close = false;
    let mut lengths = 0;
    let mut hosts = 0;
    let mut fields = Vec::with_capacity(req.headers.len());
    let base = buf.as_ptr() as usize;
    for h in req.headers.iter() {
        let name = h.name;
        // The names that decide whether the lane may serve the request, and how it ends.
        match name.len() {
            17 if name.eq_ignore_ascii_case("transfer-encoding") => return Head::Other,
            7 if name.eq_ignore_ascii_case("upgrade") => return Head::Other,
            6 if name.eq_ignore_ascii_case("expect") => return Head::Other,
            4 if name.eq_ignore_ascii_case("host") => {
                // One that is not an authority: hyper's side refuses it with a reason.
                if !h.value.is_empty() && !crate::front::is_authority(h.value) {
                    return Head::Other;
                }
                hosts += 1;
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                lengths += 1;
                if lengths > 1 || h.value != b"0" {
                    return Head::Other;
                }
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                close |= std::str::from_utf8(h.value)
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
            }
            _ => {}
        }
        let Some(name) = header_name(name) else {
            return Head::Other;
        };
        // The value's place in the head, to be taken from the frozen buffer (a pointer's
        // address as a number: no unsafe code, and the slice is from `buf`).
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start..start + h.value.len()));
    }
    // Not exactly one Host: the front door refuses it (RFC 9112 §3.2).
    if hosts != 1 {
        return Head::Other;
    }
    let start = target.as_ptr() as usize - base;
    Head::Plain(
        Plain {
            method,
            target: start..start + target.len(),
            fields,
            way,
            close,
        },
        len,
    )
}

/// Names outside the standard set that gateway requests commonly carry: made once, where
/// `HeaderName::from_bytes` would copy each into a new allocation per request.
static COMMON_NAMES: [HeaderName; 10] = [
    portcullis_gateway::credentials::API_KEY,
    crate::observability::REQUEST_ID,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-original-method"),
    HeaderName::from_static("x-real-ip"),
];

/// A header name from a request head; none when it is not a valid name.
fn header_name(name: &str) -> Option<HeaderName> {
    // Every common name starts with `x-`: other names skip the table.
    if name
        .as_bytes()
        .get(..2)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"x-"))
        && let Some(known) = COMMON_NAMES
            .iter()
            .find(|known| known.as_str().eq_ignore_ascii_case(name))
    {
        return Some(known.clone());
    }
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// The request's headers, their values sharing `head`; none when a value is not a valid header
/// value.
fn header_values(
    head: &Bytes,
    fields: Vec<(HeaderName, std::ops::Range<usize>)>,
) -> Option<HeaderMap> {
    // Room for what the gateway adds (identity, forwarding, host, request id) without a
    // second allocation.
    let mut map = HeaderMap::with_capacity(fields.len() + 16);
    for (name, range) in fields {
        if range.end > head.len() {
            return None;
        }
        map.append(
            name,
            HeaderValue::from_maybe_shared(head.slice(range)).ok()?,
        );
    }
    Some(map)
}

/// Writes a response (one made here, or a backend's answer through hyper's client) to the
/// client: its headers minus hop-by-hop ones, `Content-Length` when the body's size is known
/// and chunked coding otherwise, `Date` when it has none. Returns whether the connection may
/// carry another request.
pub async fn write_response<W>(
    client: &mut W,
    response: Response,
    head_request: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> bool
where
    W: AsyncWrite + Unpin + Send,
{
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    let bodiless = head_request || status == 204 || status == 304 || (100..200).contains(&status);
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // A bodiless answer keeps the length it names (a HEAD's is the GET's); any other gets
        // the length of the body it carries, below.
        if portcullis_gateway::headers::is_hop_by_hop(name)
            || (name == header::CONTENT_LENGTH && !bodiless)
        {
            continue;
        }
        put(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !parts.headers.contains_key(header::DATE) {
        put(
            out,
            b"date",
            portcullis_gateway::headers::http_date().as_bytes(),
        );
    }
    let chunked = !bodiless && exact.is_none();
    if chunked {
        put(out, b"transfer-encoding", b"chunked");
    } else if !bodiless {
        use std::io::Write as _;
        // Formatted straight into the head (writing to a Vec cannot fail).
        let _ = write!(out, "content-length: {}\r\n", exact.unwrap_or(0));
    }
    if close {
        put(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        return client.write_all(out).await.is_ok() && !close;
    }
    let mut sent: u64 = 0;
    let mut pending = true;
    loop {
        // A part that is there at once joins what waits in `out`; before waiting for the next
        // part, what was written goes out (a stream's first event is not held back for more,
        // nor, under TLS, kept in the TLS layer).
        let ready = std::future::poll_fn(|cx| {
            Poll::Ready(axum::body::HttpBody::poll_frame(Pin::new(&mut body), cx))
        });
        let frame = match ready.await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if pending && client.write_all(out).await.is_err() {
                    return false;
                }
                // Parts that are there together after this wait are gathered again.
                out.clear();
                pending = true;
                if client.flush().await.is_err() {
                    return false;
                }
                body.frame().await
            }
        };
        let Some(frame) = frame else {
            break;
        };
        let Ok(frame) = frame else {
            // The body failed: the client learns of it by the connection closing.
            if pending {
                let _ = client.write_all(out).await;
            }
            return false;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if pending && out.len() + data.len() + 32 <= COALESCE {
            if chunked {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(&data);
            }
            continue;
        }
        if pending {
            if client.write_all(out).await.is_err() {
                return false;
            }
            pending = false;
        }
        let written = if chunked {
            let size = format!("{:x}\r\n", data.len());
            async {
                client.write_all(size.as_bytes()).await?;
                client.write_all(&data).await?;
                client.write_all(b"\r\n").await
            }
            .await
        } else {
            client.write_all(&data).await
        };
        if written.is_err() {
            return false;
        }
    }
    if chunked {
        if !pending {
            out.clear();
            pending = true;
        }
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if pending && client.write_all(out).await.is_err() {
        return false;
    }
    // A body shorter than it said leaves the client waiting for the rest: close instead.
    let complete = exact.is_none_or(|n| n == sent);
    complete && !close
}

fn put(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A connection with bytes already read from it put back in front: how the lane hands a
/// connection to hyper.
pub struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    /// `io`, reading `prefix` first.
    pub fn new(prefix: Bytes, io: S) -> Self {
        Self { prefix, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_are_found_in_any_case_and_others_are_parsed() {
        for known in &COMMON_NAMES {
            // header_name looks in the table only for names starting with `x-`.
            assert!(known.as_str().starts_with("x-"), "{known}");
            let upper = known.as_str().to_ascii_uppercase();
            assert_eq!(header_name(&upper).as_ref(), Some(known));
        }
        assert_eq!(header_name("Host"), Some(header::HOST));
        assert_eq!(
            header_name("X-Custom").map(|n| n.as_str().to_owned()),
            Some("x-custom".to_owned())
        );
        assert_eq!(header_name("bad name"), None);
        assert_eq!(header_name("x"), Some(HeaderName::from_static("x")));
    }

    #[test]
    fn a_head_ends_at_a_blank_line_however_its_bytes_came() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        // Looked at up to every point: the blank line is found in what came after, or in the
        // two bytes before it where it may have begun.
        for looked in 1..head.len() {
            assert!(ends_a_head(head, looked), "looked at {looked}");
        }
        assert!(ends_a_head(b"GET / HTTP/1.1\nHost: a\n\n", 20));
        // Not yet: one line break, or a blank line entirely in what was looked at before.
        assert!(!ends_a_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 5));
        assert!(!ends_a_head(b"\r\n\r\nGET / HTTP/1.1\r\nHo", 10));
    }

    /// The lane and hyper must read every head alike: a head the lane serves itself is one
    /// hyper's server would serve too (else a client could reach a backend with a request the
    /// rest of the front door refuses), and nothing a client sends makes either check panic.
    /// Heads of the kind the lane serves, each mutated many times over with the bytes that
    /// matter to HTTP/1.1's grammar.
    #[test]
    fn no_head_the_lane_serves_is_one_hyper_would_refuse() {
        let seeds = [
            "GET /gw/a?b=c HTTP/1.1\r\nHost: portal.example\r\nx-api-key: k\r\n\r\n",
            "HEAD /auth/x HTTP/1.1\r\nHost: a:8080\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "DELETE /gw/%20x HTTP/1.1\r\nhost: [::1]:80\r\nX-Forwarded-For: 1.2.3.4\r\naccept: */*\r\n\r\n",
        ];
        let mut served = 0;
        for head in malformed::mutated_heads(&seeds, 20_000) {
            let verdict = malformed::judge(&head, usize::MAX);
            let Head::Plain(plain, len) = read_head(&head) else {
                continue;
            };
            let bytes = Bytes::copy_from_slice(&head[..len]);
            let uri_ok = Uri::from_maybe_shared(bytes.slice(plain.target.clone())).is_ok();
            if !uri_ok || header_values(&bytes, plain.fields).is_none() {
                continue;
            }
            served += 1;
            assert!(
                matches!(verdict, Verdict::Hyper),
                "the lane serves a head hyper refuses: {:?}",
                String::from_utf8_lossy(&head)
            );
        }
        // The mutations must leave many heads the lane still serves, or this proves nothing.
        assert!(served > 10_000, "only {served} mutated heads were served");
    }
}
