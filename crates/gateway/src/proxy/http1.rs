//! The raw HTTP/1.1 exchange with plain `http://` backends, for requests without a body: the
//! request head is written straight to a kept-alive connection and the backend's answer is
//! copied to the client as it arrives, with its framing (`Content-Length` as it is, chunked
//! without extensions or trailers, and a close-delimited body re-framed as chunked so that the
//! client can tell a cut from the end). No connection task, channel or second header map sits
//! between the two sockets, which is where a general-purpose client spends most of a small
//! request's time. Everything else (request bodies, upgrades, h2c, TLS backends) takes
//! hyper's client.

use std::net::{IpAddr, SocketAddr};
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

/// Where a backend's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    /// An IP literal: connected to as it is, with no lookup.
    Ip(SocketAddr),
    /// A name, looked up at every connect.
    Name(String, u16),
}

impl Address {
    /// The address of the backend at `url`. `Uri::host` keeps an IPv6 literal's brackets
    /// (`[::1]`), which no resolver reads: they are taken off here.
    fn of(url: &Uri) -> Self {
        let host = url.host().unwrap_or("localhost");
        let port = url.port_u16().unwrap_or(80);
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Self::Ip(SocketAddr::new(ip, port)),
            Err(_) => Self::Name(bare.to_owned(), port),
        }
    }
}

/// The kept-alive connections to one plain HTTP/1.1 backend (one worker's), most recent last.
pub(super) struct Pool {
    address: Address,
    idle: std::sync::Mutex<Vec<Idle>>,
}

impl Pool {
    /// An empty pool for the backend at `url`.
    pub(super) fn new(url: &Uri) -> Self {
        Self {
            address: Address::of(url),
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
        let connecting = async {
            match &self.address {
                Address::Ip(addr) => TcpStream::connect(*addr).await,
                Address::Name(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
        };
        let io = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
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
    /// Chunked transfer coding: the chunks passed on, without extensions or trailers.
    Chunked,
    /// Until the backend closes; re-framed as chunked for the client.
    UntilClose,
}

/// Why copying an answer's body stopped before its end.
enum Cut {
    /// Nothing reached the client yet: the answer can still become a 502.
    Unsent(&'static str),
    /// Part of the answer is out: the client learns by its connection closing early.
    Sent(std::io::Error),
}

impl From<std::io::Error> for Cut {
    fn from(e: std::io::Error) -> Self {
        Self::Sent(e)
    }
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
    /// error means nothing was written to the client. The client must be an HTTP/1.1 one: a
    /// close-delimited answer reaches it chunked.
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
        // The slots are left uninitialised (as hyper leaves them): filling 128 of them would
        // write 4 KiB on every answer, most of which no header ever uses.
        let mut slots = [std::mem::MaybeUninit::uninit(); MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        if !matches!(
            httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                &buf[..head_len],
                &mut slots
            ),
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
            .ok_or_else(|| unreachable("unusable response framing".into()))?;
        // A close-delimited answer goes out chunked: the client's connection outlives it.
        let close_client = req.client_close;
        out.clear();
        let backend_closes =
            write_response_head(out, &response, framing, f.request_id, close_client);
        let keep_backend = response.version == Some(1) && !backend_closes;

        let copied = copy_body(
            &mut io,
            client,
            out,
            buf,
            head_len,
            framing,
            backend.timeout,
        )
        .await;
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
            Err(Cut::Unsent(detail)) => {
                Err(unreachable(format!("unreadable chunked body: {detail}")))
            }
            Err(Cut::Sent(e)) => {
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

/// How the answer's body is delimited (RFC 9112 §6.3); none for a contradictory answer (two
/// lengths, or a length beside chunked) or a transfer coding other than chunked (which this hop would pass on undecoded, as nginx
/// refuses it too).
fn framing_of(response: &httparse::Response<'_, '_>, head_request: bool) -> Option<Framing> {
    let status = response.code.unwrap_or(0);
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(Framing::Empty);
    }
    let mut chunked = false;
    let mut length: Option<u64> = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Every coding must be `chunked` (a repeated one changes nothing here); empty list
            // elements are allowed (RFC 9110 §5.6.1), an empty field is not.
            let mut codings = 0;
            for coding in std::str::from_utf8(h.value).ok()?.split(',') {
                match coding.trim_matches([' ', '\t']) {
                    "" => {}
                    c if c.eq_ignore_ascii_case("chunked") => codings += 1,
                    _ => return None,
                }
            }
            if codings == 0 {
                return None;
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = decimal(h.value)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(match (chunked, length) {
        // Both framings at once: one of them is a lie (RFC 9112 §6.3 calls it a possible
        // attempt at splitting), and the connection cannot be trusted for the next answer.
        (true, Some(_)) => return None,
        (true, None) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    })
}

/// A `Content-Length` value: one decimal number, with optional whitespace around it.
fn decimal(value: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok()
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
    // headers are one length, and a chunked or close-delimited answer has none. The length a
    // HEAD or 304 answer names (of a body it does not carry) is read only for those.
    let bodiless = framing == Framing::Empty;
    let mut named_length: Option<Option<u64>> = None;
    for h in response.headers.iter() {
        let name = h.name;
        // The names this hop treats itself; every other header is copied as it came.
        match name.len() {
            14 if name.eq_ignore_ascii_case("content-length") => {
                if bodiless {
                    let n = decimal(h.value);
                    named_length = Some(match named_length {
                        Some(seen) if seen != n => None,
                        _ => n,
                    });
                }
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
        Framing::Chunked | Framing::UntilClose => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        // A HEAD (or 304) answer names the length of the body it does not carry, when it is
        // one number; a 204 never has one (RFC 9110 §8.6).
        Framing::Empty => {
            if status != 204
                && let Some(Some(n)) = named_length
            {
                out.extend_from_slice(b"content-length: ");
                put_decimal(out, n);
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

/// Reads the next part of a body into the emptied `buf`, waiting at most `idle` (the
/// backend's timeout, per read as nginx's `proxy_read_timeout`): a backend that stops
/// sending mid-body does not hold the client forever.
async fn read_body(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    idle: Duration,
) -> std::io::Result<usize> {
    buf.clear();
    buf.reserve(READ_SIZE);
    match tokio::time::timeout(idle, io.read_buf(buf)).await {
        Ok(read) => read,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the backend sent nothing more for its timeout",
        )),
    }
}

/// Appends one chunk holding `data` (the re-framing of a close-delimited body).
fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = data.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
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
    idle: Duration,
) -> Result<bool, Cut> {
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
                // What was written goes out before the wait for more (under TLS it may be
                // waiting in the TLS layer).
                client.flush().await?;
                if read_body(io, &mut buf, idle).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
        Framing::Chunked => {
            let mut chunked = Chunked::default();
            let mut first = true;
            loop {
                let scanned = match chunked.scan(&mut buf) {
                    Ok(s) => s,
                    // The head still waits in `out`: the client can get a 502 instead.
                    Err(e) if first => return Err(Cut::Unsent(e)),
                    Err(e) => {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e).into());
                    }
                };
                if first {
                    out.extend_from_slice(&buf[..scanned.keep]);
                    client.write_all(out).await?;
                    first = false;
                } else {
                    client.write_all(&buf[..scanned.keep]).await?;
                }
                if scanned.done {
                    return Ok(scanned.used == buf.len());
                }
                // What was written goes out before the wait for more (under TLS it may be
                // waiting in the TLS layer).
                client.flush().await?;
                if read_body(io, &mut buf, idle).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
        // Re-framed as chunked: a backend that fails mid-body leaves the client without the
        // last chunk, which it can tell from the end of the answer.
        Framing::UntilClose => {
            if !buf.is_empty() {
                put_chunk(out, &buf);
            }
            client.write_all(out).await?;
            loop {
                // What was written goes out before the wait for more (under TLS it may be
                // waiting in the TLS layer).
                client.flush().await?;
                if read_body(io, &mut buf, idle).await? == 0 {
                    client.write_all(b"0\r\n\r\n").await?;
                    client.flush().await?;
                    return Ok(false);
                }
                out.clear();
                put_chunk(out, &buf);
                client.write_all(out).await?;
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
            // Both: a sign of response splitting (RFC 9112 §6.3); refused, as nginx does.
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \t\r\n\r\n",
                false,
                Some(Framing::Chunked),
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
                false,
                Some(Framing::Chunked),
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: ,chunked\r\n\r\n",
                false,
                Some(Framing::Chunked),
            ),
            // Any other transfer coding would reach the client undecoded: refused.
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunkedx\r\n\r\n",
                false,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: \r\n\r\n",
                false,
                None,
            ),
            // A bodiless answer's codings do not matter (the header is this hop's).
            (
                b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                Some(Framing::Empty),
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

    #[test]
    fn an_ip_literal_is_connected_to_without_its_brackets() {
        let table: &[(&str, Address)] = &[
            (
                "http://[::1]:8080/base",
                Address::Ip("[::1]:8080".parse().unwrap()),
            ),
            (
                "http://[fd00::2]",
                Address::Ip("[fd00::2]:80".parse().unwrap()),
            ),
            (
                "http://127.0.0.1:9000",
                Address::Ip("127.0.0.1:9000".parse().unwrap()),
            ),
            (
                "http://backend.internal:81",
                Address::Name("backend.internal".into(), 81),
            ),
            ("http://svc", Address::Name("svc".into(), 80)),
        ];
        for (url, expected) in table {
            let url: Uri = url.parse().unwrap();
            assert_eq!(&Pool::new(&url).address, expected, "{url}");
        }
    }

    #[tokio::test]
    async fn a_pool_connects_to_an_ipv6_literal() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("skipped: no IPv6 loopback to bind here");
            return;
        };
        let at = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        let pool = Pool::new(&format!("http://{at}").parse().unwrap());
        let io = pool.connect().await.expect("connected to [::1]");
        assert_eq!(io.peer_addr().unwrap(), at);
        assert_eq!(accepting.await.unwrap().unwrap(), io.local_addr().unwrap());
    }

    /// The head written for `raw` answering a request of `method`.
    fn head_for(raw: &[u8], head_request: bool) -> String {
        let mut h = [httparse::EMPTY_HEADER; 8];
        let r = parsed(raw, &mut h);
        let framing = framing_of(&r, head_request).unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &r, framing, "r", false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_bodiless_answer_names_a_length_only_when_it_is_one_number() {
        // (answer, to a HEAD, the content-length the client gets)
        let table: &[(&[u8], bool, Option<&str>)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true, Some("7")),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length:  07 \r\n\r\n",
                true,
                Some("7"),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
                true,
                Some("7"),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: abc, 7\r\n\r\n", true, None),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", true, None),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -7\r\n\r\n", true, None),
            (b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", true, None),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
                true,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: x\r\nContent-Length: 7\r\n\r\n",
                true,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                true,
                None,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", true, None),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Some("9"),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9;x\r\n\r\n",
                false,
                None,
            ),
            // A 204 has no length, whatever the backend says.
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, None),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", true, None),
        ];
        for (raw, head_request, expected) in table {
            let head = head_for(raw, *head_request);
            let lengths: Vec<&str> = head
                .split("\r\n")
                .filter_map(|l| l.strip_prefix("content-length: "))
                .collect();
            assert_eq!(
                lengths,
                expected.iter().copied().collect::<Vec<_>>(),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert!(
                !head
                    .to_ascii_lowercase()
                    .contains("\r\ncontent-length: 7, 7")
            );
        }
    }

    #[test]
    fn a_close_delimited_answer_goes_out_chunked() {
        let head = head_for(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", false);
        assert!(
            head.ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        assert!(!head.contains("connection: close"), "{head}");
        let mut out = Vec::new();
        put_chunk(&mut out, b"partial-");
        put_chunk(&mut out, &[b'x'; 0x1a2]);
        assert!(out.starts_with(b"8\r\npartial-\r\n1a2\r\nxxx"));
        assert!(out.ends_with(b"xx\r\n"));
        assert_eq!(out.len(), 13 + 5 + 0x1a2 + 2);
    }
}
