//! The raw HTTP/1.1 exchange with plain `http://` backends, for requests without a body: the
//! request head is written straight to a kept-alive connection and the backend's answer is
//! copied to the client as it arrives, its framing passed through (`Content-Length`, chunked,
//! or until close). No connection task, channel or second header map sits between the two
//! sockets, which is where a general-purpose client spends most of a small request's time.
//! Everything else (request bodies, upgrades, h2c, TLS backends) takes hyper's client.

use std::time::Duration;

use bytes::BytesMut;
use http::header::HeaderValue;
use http::{Method, Uri};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Forward, GatewayError, Proxy, rewrite_request_headers};
use crate::headers::{http_date, is_hop_by_hop_name};

mod chunked;

use chunked::Chunked;

/// Largest response head a backend may send.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most response headers a backend may send.
const MAX_RESPONSE_HEADERS: usize = 128;
/// A kept-alive connection unused this many ticks (seconds) is closed, not reused.
const IDLE_TICKS: u64 = 60;
/// Kept-alive connections per backend (per worker).
const MAX_IDLE: usize = 256;
/// How long connecting to a backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from the backend at a time.
const READ_SIZE: usize = 16 * 1024;
/// A response body up to this size that arrived with its head is written with it at once.
const COALESCE: usize = 64 * 1024;

/// A connection kept alive for the next request.
struct Idle {
    io: TcpStream,
    /// The tick it was returned at.
    since: u64,
}

/// The kept-alive connections to one plain HTTP/1.1 backend (one worker's), most recent last.
pub(super) struct Pool {
    host: String,
    port: u16,
    idle: std::sync::Mutex<Vec<Idle>>,
}

impl Pool {
    /// An empty pool for the backend at `url`.
    pub(super) fn new(url: &Uri) -> Self {
        Self {
            host: url.host().unwrap_or("localhost").to_owned(),
            port: url.port_u16().unwrap_or(80),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn checkout(&self, now: u64) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(c) = idle.pop() {
            if now.saturating_sub(c.since) < IDLE_TICKS {
                return Some(c.io);
            }
        }
        None
    }

    fn checkin(&self, io: TcpStream, now: u64) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(Idle { io, since: now });
        }
    }

    /// Closes every kept-alive connection (after one turned out dead: the backend restarted,
    /// most likely, and the others are dead too).
    fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Closes connections idle for too long.
    pub(super) fn sweep(&self, now: u64) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|c| now.saturating_sub(c.since) < IDLE_TICKS);
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let io = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        io.set_nodelay(true)?;
        Ok(io)
    }
}

/// A request without a body, for the raw exchange.
pub struct BodilessRequest<'a> {
    /// The client's request head (method, target, headers).
    pub parts: http::request::Parts,
    /// Where and how to forward it.
    pub forward: Forward<'a>,
    /// The client asked to close its connection after this answer.
    pub client_close: bool,
    /// A 401 from the backend is not sent: the caller answers it (a browser's login redirect).
    pub intercept_unauthorized: bool,
}

/// What became of a request forwarded raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The backend's answer went to the client; `reusable` says whether the client's
    /// connection may carry another request (the answer was complete and delimited).
    Sent {
        /// The backend's status.
        status: u16,
        /// The client connection may carry the next request.
        reusable: bool,
    },
    /// The backend answered 401 and the caller asked to answer that itself; nothing was
    /// written.
    Unauthorized,
}

/// How the backend's answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding, passed through as it is.
    Chunked,
    /// Until the backend closes.
    UntilClose,
}

/// Why an exchange failed before anything reached the client.
enum Failure {
    /// The request could not be written: the backend cannot have acted on it.
    Unsent(std::io::Error),
    /// The request was written and the connection ended before any byte of an answer: a
    /// kept-alive connection closed while idle, or a backend that failed while handling it.
    Unanswered(std::io::Error),
    /// The backend failed.
    Broken(String),
}

impl Failure {
    /// What went wrong, for the error and the log.
    fn detail(self) -> String {
        match self {
            Self::Unsent(e) | Self::Unanswered(e) => e.to_string(),
            Self::Broken(detail) => detail,
        }
    }
}

impl Proxy {
    /// Whether requests to `backend` can take the raw HTTP/1.1 exchange (a plain `http://`
    /// backend spoken to in HTTP/1.1).
    pub fn forwards_raw(&self, backend: &str) -> bool {
        self.backends.get(backend).is_some_and(|t| t.raw.is_some())
    }

    /// Counts a second (called every second by the worker that owns this proxy) and closes
    /// kept-alive raw connections idle for too long. Idle times are counted in these ticks,
    /// so that returning a connection does not read the clock.
    pub fn tick(&self) {
        use std::sync::atomic::Ordering;
        let now = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if now.is_multiple_of(10) {
            for t in self.backends.values() {
                if let Some(pool) = &t.raw {
                    pool.sweep(now);
                }
            }
        }
    }

    /// Forwards a request without a body to a backend [`Proxy::forwards_raw`] accepts and
    /// copies its answer to `client` (`out` is a scratch buffer, kept between requests). An
    /// error means nothing was written to the client.
    pub async fn forward_bodiless<W: AsyncWrite + Unpin>(
        &self,
        req: BodilessRequest<'_>,
        client: &mut W,
        out: &mut Vec<u8>,
    ) -> Result<Answered, GatewayError> {
        let f = &req.forward;
        let target = self
            .backends
            .get(f.backend)
            .ok_or_else(|| GatewayError::UnknownBackend(f.backend.to_owned()))?;
        let Some(pool) = &target.raw else {
            return Err(GatewayError::BadBackend {
                name: f.backend.to_owned(),
                message: "not a plain HTTP/1.1 backend".into(),
            });
        };
        let backend = &target.backend;
        let mut parts = req.parts;
        rewrite_request_headers(&mut parts.headers, parts.uri.authority(), f, backend, false);
        out.clear();
        write_request_head(out, &parts.method, &backend.url, f, &parts.headers);
        let head_request = parts.method == Method::HEAD;
        let unreachable = |detail: String| GatewayError::Unreachable {
            backend: backend.name.clone(),
            detail,
        };

        // A kept-alive connection the backend closed while it sat idle fails before any byte
        // comes back; the request then goes again on a new connection if it could not be
        // written, or if acting on it twice is harmless (an idempotent method).
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let exchange = async {
            let mut fresh_only = false;
            loop {
                let reused = if fresh_only {
                    None
                } else {
                    pool.checkout(self.now())
                };
                // A kept-alive connection with bytes waiting (a late part of an earlier answer,
                // a 408 before closing) or already closed is not used: its next bytes would be
                // read as this request's answer.
                let (mut io, was_reused) = match reused {
                    Some(io) if still_open(&io) => (io, true),
                    Some(_) => continue,
                    None => (
                        pool.connect()
                            .await
                            .map_err(|e| unreachable(format!("connect: {e}")))?,
                        false,
                    ),
                };
                let mut buf = BytesMut::with_capacity(READ_SIZE);
                match send_and_read_head(&mut io, out, &mut buf).await {
                    Ok(len) => return Ok((io, buf, len)),
                    // Sent again on a new connection only when the backend cannot have acted on
                    // it, or acting twice is harmless (an idempotent method).
                    Err(failure) => {
                        let again = was_reused
                            && match failure {
                                Failure::Unsent(_) => true,
                                Failure::Unanswered(_) => idempotent,
                                Failure::Broken(_) => false,
                            };
                        let detail = failure.detail();
                        if !again {
                            return Err(unreachable(detail));
                        }
                        tracing::debug!(error = %detail, backend = %backend.name, "kept-alive connection was closed; sending again");
                        pool.clear();
                        fresh_only = true;
                    }
                }
            }
        };
        let (mut io, buf, head_len) = match tokio::time::timeout(backend.timeout, exchange).await {
            Err(_) => {
                return Err(GatewayError::Timeout {
                    backend: backend.name.clone(),
                    after: backend.timeout,
                });
            }
            Ok(r) => r?,
        };

        // The answer's head, as the client gets it.
        let mut head = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut head);
        if !matches!(
            response.parse(&buf[..head_len]),
            Ok(httparse::Status::Complete(_))
        ) {
            return Err(unreachable("unreadable response head".into()));
        }
        let status = response.code.unwrap_or(502);
        if status < 200 {
            // Interim answers were skipped while reading; one that got past (a head the
            // status check read differently) is never passed on as the final answer.
            return Err(unreachable(
                "an interim answer where the final one belongs".into(),
            ));
        }
        if status == 401 && req.intercept_unauthorized {
            return Ok(Answered::Unauthorized);
        }
        let framing = framing_of(&response, head_request)
            .ok_or_else(|| unreachable("contradictory response framing".into()))?;
        let close_client = req.client_close || framing == Framing::UntilClose;
        out.clear();
        let backend_closes =
            write_response_head(out, &response, framing, f.request_id, close_client);
        let keep_backend = response.version == Some(1) && !backend_closes;

        let copied = copy_body(&mut io, client, out, buf, head_len, framing).await;
        match copied {
            Ok(clean) => {
                if clean && keep_backend && framing != Framing::UntilClose {
                    pool.checkin(io, self.now());
                }
                Ok(Answered::Sent {
                    status,
                    reusable: !close_client,
                })
            }
            Err(e) => {
                // The head may be out already: the client learns of the failure by the
                // connection closing before the answer is complete.
                tracing::debug!(error = %e, backend = %backend.name, "answer cut short");
                Ok(Answered::Sent {
                    status,
                    reusable: false,
                })
            }
        }
    }
}

impl Proxy {
    /// The current tick (see [`Proxy::tick`]).
    fn now(&self) -> u64 {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether a kept-alive connection still looks open (the backend has not closed it and sent
/// nothing unasked).
fn still_open(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Writes the request head for the backend at `url`: its `Host` and the request id, the
/// client's headers (already rewritten, without either), and the caller's identity.
fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    url: &Uri,
    f: &Forward<'_>,
    headers: &http::HeaderMap,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.path().trim_end_matches('/').as_bytes());
    out.extend_from_slice(f.path.as_bytes());
    if let Some(q) = f.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(authority) = url.authority() {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(f.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut put = |name: &http::HeaderName, value: &HeaderValue| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        put(name, value);
    }
    // The caller's identity headers, from the values prepared for them (the client's own
    // were stripped from `headers`).
    crate::identity::each(f.identity, f.aliases, &mut put);
    out.extend_from_slice(b"\r\n");
}

/// Sends the request head and reads until a final (non-1xx) response head is complete;
/// returns its length in `buf`.
async fn send_and_read_head(
    io: &mut TcpStream,
    head: &[u8],
    buf: &mut BytesMut,
) -> Result<usize, Failure> {
    if let Err(e) = io.write_all(head).await {
        return Err(Failure::Unsent(e));
    }
    let mut received = false;
    loop {
        // Only the end of the head and the status are looked at here; the head is parsed once,
        // by the caller.
        if let Some(len) = head_end(buf) {
            match buf.get(..12) {
                Some(line) if line.starts_with(b"HTTP/1.") && &line[9..12] == b"101" => {
                    return Err(Failure::Broken("unasked protocol switch".into()));
                }
                // An interim answer (100 Continue, 103 Early Hints): the final one follows.
                Some(line) if line.starts_with(b"HTTP/1.") && line[9] == b'1' => {
                    let _ = buf.split_to(len);
                    continue;
                }
                _ => return Ok(len),
            }
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(Failure::Broken("response head too large".into()));
        }
        buf.reserve(READ_SIZE);
        match io.read_buf(buf).await {
            Ok(0) if !received => {
                return Err(Failure::Unanswered(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(0) => return Err(Failure::Broken("closed in the middle of its answer".into())),
            Ok(_) => received = true,
            Err(e) if !received => return Err(Failure::Unanswered(e)),
            Err(e) => return Err(Failure::Broken(e.to_string())),
        }
    }
}

/// Where a message head ends in `buf` (after the empty line; a bare LF ends a line as well as
/// CRLF, as httparse reads it), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let at = from + i;
        match (buf.get(at + 1), buf.get(at + 2)) {
            (Some(b'\n'), _) => return Some(at + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(at + 3),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => from = at + 1,
        }
    }
    None
}

/// How the answer's body is delimited (RFC 9112 §6.3); none for a contradictory answer.
fn framing_of(response: &httparse::Response<'_, '_>, head_request: bool) -> Option<Framing> {
    let status = response.code.unwrap_or(0);
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(Framing::Empty);
    }
    let mut coding = None;
    let mut length: Option<u64> = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            coding = std::str::from_utf8(h.value).ok().map(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
            coding.get_or_insert(false);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok()?.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n = v.parse::<u64>().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(match (coding, length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::UntilClose,
    })
}

/// Writes the answer's head for the client: the backend's headers minus the hop-by-hop ones
/// (and those its `Connection` names) and any `Set-Cookie` of Portcullis's cookies, this hop's
/// framing, `Date` when the backend sent none, and the request id. Returns whether the
/// backend's `Connection` header says `close`.
fn write_response_head(
    out: &mut Vec<u8>,
    response: &httparse::Response<'_, '_>,
    framing: Framing,
    request_id: &str,
    close: bool,
) -> bool {
    let status = response.code.unwrap_or(502);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .or(response.reason)
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    // Headers the `Connection` header names are this hop's too. Most answers name none but
    // `keep-alive` or `close` (hop-by-hop already): the names are looked up only otherwise.
    let connection_tokens = || {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    let mut backend_closes = false;
    let mut names_others = false;
    for t in connection_tokens() {
        if t.eq_ignore_ascii_case("close") {
            backend_closes = true;
        } else if !t.eq_ignore_ascii_case("keep-alive") {
            names_others = true;
        }
    }
    let listed =
        |name: &str| names_others && connection_tokens().any(|t| name.eq_ignore_ascii_case(t));
    let mut dated = false;
    // The length goes out once, written here: a backend's repeated (equal) Content-Length
    // headers are one length, and a chunked or close-delimited answer has none.
    let mut named_length: Option<&[u8]> = None;
    for h in response.headers.iter() {
        let name = h.name;
        // The names this hop treats itself; every other header is copied as it came.
        match name.len() {
            14 if name.eq_ignore_ascii_case("content-length") => {
                named_length.get_or_insert(h.value);
                continue;
            }
            12 if name.eq_ignore_ascii_case("x-request-id") => continue,
            // Portcullis's own cookies are set by Portcullis alone.
            10 if name.eq_ignore_ascii_case("set-cookie")
                && crate::credentials::sets_portcullis_cookie(h.value) =>
            {
                continue;
            }
            // A `Date` the `Connection` header names is this hop's: dropped below.
            4 if name.eq_ignore_ascii_case("date") && !listed(name) => dated = true,
            _ if is_hop_by_hop_name(name) || listed(name) => continue,
            _ => {}
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(http_date().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::UntilClose => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        // A HEAD (or 304) answer names the length of the body it does not carry.
        Framing::Empty => {
            if let Some(v) = named_length {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    backend_closes
}

/// Appends `n` in decimal (without the formatting machinery, on every answer's head).
fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A three-digit status code as text.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// Copies the answer's body from the backend to the client after the head in `out`. Returns
/// whether the backend connection ended exactly at the answer's end (and may be reused).
async fn copy_body<W: AsyncWrite + Unpin>(
    io: &mut TcpStream,
    client: &mut W,
    out: &mut Vec<u8>,
    mut buf: BytesMut,
    head_len: usize,
    framing: Framing,
) -> std::io::Result<bool> {
    let _ = buf.split_to(head_len);
    match framing {
        Framing::Empty => {
            client.write_all(out).await?;
            Ok(buf.is_empty())
        }
        Framing::Length(n) => {
            let have = buf.len() as u64;
            if have >= n && out.len() as u64 + n <= COALESCE as u64 {
                // The usual small answer: head and body in one write.
                out.extend_from_slice(&buf[..n as usize]);
                client.write_all(out).await?;
                return Ok(have == n);
            }
            client.write_all(out).await?;
            let mut left = n;
            loop {
                let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                client.write_all(&buf[..take]).await?;
                left -= take as u64;
                let extra = buf.len() > take;
                if left == 0 {
                    return Ok(!extra);
                }
                buf.clear();
                buf.reserve(READ_SIZE);
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
        Framing::Chunked => {
            let mut chunked = Chunked::default();
            let mut first = true;
            loop {
                let (used, done) = chunked
                    .scan(&buf)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                if first {
                    out.extend_from_slice(&buf[..used]);
                    client.write_all(out).await?;
                    first = false;
                } else {
                    client.write_all(&buf[..used]).await?;
                }
                if done {
                    return Ok(used == buf.len());
                }
                buf.clear();
                buf.reserve(READ_SIZE);
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
        Framing::UntilClose => {
            out.extend_from_slice(&buf);
            client.write_all(out).await?;
            loop {
                buf.clear();
                buf.reserve(READ_SIZE);
                if io.read_buf(&mut buf).await? == 0 {
                    client.flush().await?;
                    return Ok(false);
                }
                client.write_all(&buf).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed<'h, 'b>(
        raw: &'b [u8],
        headers: &'h mut [httparse::Header<'b>],
    ) -> httparse::Response<'h, 'b> {
        let mut r = httparse::Response::new(headers);
        assert!(matches!(r.parse(raw), Ok(httparse::Status::Complete(_))));
        r
    }

    #[test]
    fn a_head_ends_at_its_empty_line() {
        let table: &[(&[u8], Option<usize>)] = &[
            (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody", Some(25)),
            (b"HTTP/1.1 200 OK\nA: b\n\nbody", Some(22)),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n\r", None),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n", None),
            (b"HTTP/1.1 200 OK\r\n", None),
            (b"", None),
        ];
        for (raw, end) in table {
            assert_eq!(head_end(raw), *end, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let table: &[(&[u8], bool, Option<Framing>)] = &[
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                false,
                Some(Framing::Length(5)),
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                true,
                Some(Framing::Empty),
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Some(Framing::Empty),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false,
                Some(Framing::Empty),
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                false,
                Some(Framing::Chunked),
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n",
                false,
                Some(Framing::Chunked),
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                Some(Framing::UntilClose),
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, Some(Framing::UntilClose)),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
                false,
                Some(Framing::Length(5)),
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
                false,
                None,
            ),
            (b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n", false, None),
        ];
        for (raw, head, expected) in table {
            let mut h = [httparse::EMPTY_HEADER; 8];
            let r = parsed(raw, &mut h);
            assert_eq!(
                framing_of(&r, *head),
                *expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn response_head_drops_hop_by_hop_and_carries_the_request_id() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\nX-Request-Id: backend-id\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\nx-app: yes\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parsed(raw, &mut h);
        let mut out = Vec::new();
        let closes = write_response_head(&mut out, &r, Framing::Chunked, "rid-1", false);
        assert!(!closes, "keep-alive and a header name are not `close`");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\nx-app: yes\r\nx-request-id: rid-1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_date_the_connection_header_names_is_replaced() {
        let raw =
            b"HTTP/1.1 200 OK\r\nConnection: date\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 4];
        let r = parsed(raw, &mut h);
        let mut out = Vec::new();
        write_response_head(&mut out, &r, Framing::Length(0), "r", false);
        let head = String::from_utf8(out).unwrap();
        assert!(!head.contains("1970"), "{head}");
        assert_eq!(head.matches("date: ").count(), 1, "{head}");
    }

    #[test]
    fn response_head_reports_the_backends_close_and_writes_any_length() {
        let raw = b"HTTP/1.1 200 OK\r\nCONNECTION: Keep-Alive , Close\r\nTE: x\r\nPROXY-Connection: y\r\nx-te: kept\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 8];
        let r = parsed(raw, &mut h);
        for (n, text) in [
            (0u64, "0"),
            (7, "7"),
            (10, "10"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            assert!(write_response_head(
                &mut out,
                &r,
                Framing::Length(n),
                "r",
                false
            ));
            let head = String::from_utf8(out).unwrap();
            assert!(
                head.contains(&format!("\r\ncontent-length: {text}\r\n")),
                "{head}"
            );
            assert!(head.contains("\r\nx-te: kept\r\n"), "{head}");
            assert!(!head.to_ascii_lowercase().contains("connection:"), "{head}");
            assert!(!head.contains("TE:"), "{head}");
        }
    }

    #[test]
    fn response_head_gets_a_date_and_closes_when_asked() {
        let raw = b"HTTP/1.1 404 Whatever\r\ncontent-length: 0\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 4];
        let r = parsed(raw, &mut h);
        let mut out = Vec::new();
        write_response_head(&mut out, &r, Framing::Length(0), "r", true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with(
                " GMT\r\nx-request-id: r\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_repeated_length_goes_out_once() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 4];
        let r = parsed(raw, &mut h);
        let mut out = Vec::new();
        write_response_head(&mut out, &r, Framing::Length(3), "r", false);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(text.contains("content-length: 3\r\n"), "{text}");
    }
}
