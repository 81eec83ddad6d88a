//! The raw HTTP/1.1 lane, byte for byte: requests without a body are read and forwarded by
//! Portcullis itself, so these tests speak HTTP/1.1 over plain sockets on both sides — a
//! scripted backend that answers each path with exact bytes (every framing a backend may use,
//! sent in pieces), and a client that reads each answer by its framing on one kept-alive
//! connection. A client connection that turns unusual (a body) must carry on through hyper
//! with nothing lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Env, Options, raw_bytes};

/// What the scripted backend does with a connection once an answer's pieces are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Reads the next request.
    Open,
    /// Closes it.
    Close,
    /// Resets it (SO_LINGER 0, then close).
    Reset,
    /// Holds it open, silent, for longer than any test waits.
    Stall,
}

/// The answers of the scripted backend, by path: each a list of pieces written with a pause
/// between them, and what becomes of the connection afterwards.
fn script(path: &str) -> (Vec<&'static [u8]>, End) {
    match path {
        "/length" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kind: length\r\n\r\nhello"],
            End::Open,
        ),
        "/chunked" => (
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n5\r",
                b"\nhello\r\n6;ext=1\r\n wor",
                b"ld\r\n0\r\nx-sum: 11\r\n",
                b"\r\n",
            ],
            End::Open,
        ),
        // The answer to a HEAD: the length of a body it does not carry.
        "/length-head" => (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], End::Open),
        "/nocontent" => (vec![b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n"], End::Open),
        "/early" => (
            vec![
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ],
            End::Open,
        ),
        "/hop" => (
            vec![b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: from-backend\r\nContent-Length: 3\r\n\r\nhop"],
            End::Open,
        ),
        "/close" => (
            vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"],
            End::Close,
        ),
        // Closed right after a complete answer, without saying so: the connection looks
        // reusable and is not.
        "/once" => (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce"], End::Close),
        "/contradiction" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
            End::Open,
        ),
        "/cut" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"],
            End::Close,
        ),
        // A HEAD answer whose body-like bytes come late, on a connection kept open: they must
        // never be read as the next request's answer.
        "/late-bytes" => (
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
            ],
            End::Open,
        ),
        // An interim answer behind a blank line, then the final one.
        "/sneaky-interim" => (
            vec![b"\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
            End::Open,
        ),
        // Reads the request, then closes without a word.
        "/dies" => (vec![], End::Close),
        "/set-cookies" => (
            vec![b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=chosen-by-the-backend; Path=/\r\nSet-Cookie: theme=dark\r\nSet-Cookie: pcl_csrf=x\r\nSet-Cookie: refresh_token=y\r\nSet-Cookie: =sid=nameless; Path=/raw\r\nContent-Length: 2\r\n\r\nok"],
            End::Open,
        ),
        // A protocol switch that also tries to set the session cookie; asked for or not.
        "/switch" => (
            vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSet-Cookie: sid=chosen-by-the-backend; Path=/\r\nSet-Cookie: theme=dark\r\nX-Kind: switch\r\n\r\n"],
            End::Open,
        ),
        // A switch to another protocol than the one asked for.
        "/switch-h2c" => (
            vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"],
            End::Open,
        ),
        "/unauthorized" => (
            vec![b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope"],
            End::Open,
        ),
        // A body that stops coming, with each framing.
        "/stall-length" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"],
            End::Stall,
        ),
        "/stall-chunked" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"],
            End::Stall,
        ),
        "/stall-close" => (vec![b"HTTP/1.1 200 OK\r\n\r\nsome"], End::Stall),
        // Cut by a reset in the middle of a close-delimited body.
        "/reset" => (vec![b"HTTP/1.1 200 OK\r\n\r\npartial-"], End::Reset),
        // Chunk sizes another reader could take differently, with the head.
        "/size-0x" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n"],
            End::Open,
        ),
        "/size-negative" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nhi\r\n0\r\n\r\n"],
            End::Open,
        ),
        "/size-17-digits" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000002\r\nhi\r\n0\r\n\r\n"],
            End::Open,
        ),
        "/size-space" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 5\r\nhi\r\n0\r\n\r\n"],
            End::Open,
        ),
        // The same, once the head and a first chunk are out.
        "/size-space-late" => (
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                b"2 5\r\nhi\r\n0\r\n\r\n",
            ],
            End::Open,
        ),
        // Transfer codings other than chunked.
        "/te-gzip-chunked" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n"],
            End::Open,
        ),
        // Two framings at once (response splitting, RFC 9112 §6.3).
        "/te-and-length" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
            End::Open,
        ),
        "/te-gzip" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b"],
            End::Close,
        ),
        "/te-chunked-gzip" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n\x1f\x8b"],
            End::Close,
        ),
        // Lengths of bodies that are not there.
        "/head-odd-length" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: abc, 7\r\nX-Kind: odd\r\n\r\n"],
            End::Open,
        ),
        "/head-twice-length" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n"],
            End::Open,
        ),
        "/nocontent-length" => (
            vec![b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"],
            End::Open,
        ),
        "/not-modified" => (
            vec![b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nContent-Length: 9\r\n\r\n"],
            End::Open,
        ),
        "/not-modified-odd" => (
            vec![b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9, 9\r\n\r\n"],
            End::Open,
        ),
        _ => (vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"], End::Open),
    }
}

/// A backend answering from [`script`]; counts connections and records request heads.
#[derive(Clone)]
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start() -> Self {
        Self::serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn serve_on(listener: TcpListener) -> Self {
        let me = Self {
            addr: listener.local_addr().unwrap(),
            connections: Arc::new(AtomicUsize::new(0)),
            heads: Arc::new(Mutex::new(Vec::new())),
        };
        let state = me.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(state.clone().serve(conn));
            }
        });
        me
    }

    async fn serve(self, mut conn: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let head = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    break head;
                }
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches("/raw")
                .to_owned();
            self.heads.lock().unwrap().push(head);
            let (pieces, end) = script(&path);
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if conn.write_all(piece).await.is_err() {
                    return;
                }
            }
            match end {
                End::Open => {}
                End::Close => return,
                End::Reset => {
                    // Long enough for the pieces to be read and passed on first.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = conn.set_zero_linger();
                    return;
                }
                End::Stall => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
            }
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

/// An answer as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One kept-alive client connection.
struct Client {
    io: TcpStream,
    buf: Vec<u8>,
    closed: bool,
    /// The version answers must have (HTTP/1.0 only for a client speaking it).
    version: &'static str,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            io: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            closed: false,
            version: "HTTP/1.1 ",
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.io.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk))
            .await
            .expect("the server answers within 10 s");
        match read {
            Ok(0) | Err(_) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            assert!(self.fill().await, "connection closed inside a line");
        }
    }

    async fn exactly(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one answer by its framing (`head_request`: the answer to a HEAD has no body).
    async fn answer(&mut self, head_request: bool) -> Answer {
        let mut answer = self.head().await;
        let status = answer.status;
        if head_request || status == 204 || status == 304 || status < 200 {
            return answer;
        }
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    loop {
                        let t = self.line().await;
                        if t.is_empty() {
                            return answer;
                        }
                        answer.trailers.push_str(&t);
                    }
                }
                let data = self.exactly(size).await;
                answer.body.extend_from_slice(&data);
                assert_eq!(self.exactly(2).await, b"\r\n");
            }
        }
        if let Some(n) = answer.header("content-length") {
            let n: usize = n.parse().unwrap();
            answer.body = self.exactly(n).await;
            return answer;
        }
        while self.fill().await {}
        answer.body = std::mem::take(&mut self.buf);
        answer
    }

    /// Whether the server closed the connection (nothing more arrives).
    async fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }

    /// Reads an answer's status and headers only.
    async fn head(&mut self) -> Answer {
        let status_line = self.line().await;
        assert!(status_line.starts_with(self.version), "{status_line:?}");
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("a header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Answer {
            status: status_line[9..12].parse().unwrap(),
            headers,
            body: Vec::new(),
            trailers: String::new(),
        }
    }

    /// Everything that arrives until the server closes the connection.
    async fn rest(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

/// Whether the answer is a JSON 502 `bad_gateway`.
fn is_bad_gateway(a: &Answer) -> bool {
    a.status == 502
        && serde_json::from_slice::<serde_json::Value>(&a.body)
            .is_ok_and(|b| b["error"]["code"] == "bad_gateway")
}

async fn setup() -> (Env, Scripted) {
    let backend = Scripted::start().await;
    let env = Env::start(Options {
        scripted_backend: Some(backend.addr),
        ..Options::default()
    })
    .await;
    (env, backend)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: portal.example\r\n\r\n")
}

#[tokio::test]
async fn every_framing_passes_through_on_one_kept_alive_connection() {
    let (env, backend) = setup().await;
    let mut c = Client::connect(env.addr).await;

    c.send(&get("/raw/length")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello"));
    assert_eq!(a.header("x-kind"), Some("length"));
    assert!(a.header("date").is_some(), "a Date is added: {a:?}");
    assert!(a.header("x-request-id").is_some_and(|v| v.len() == 36));

    c.send(&get("/raw/chunked")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello world"));
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    assert_eq!(a.trailers, "", "trailers are not passed on");

    c.send(&get("/raw/nocontent")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.header("x-kind")), (204, Some("none")));

    // A HEAD answer names the length of a body it does not carry; the next answer must still
    // be read from the right place.
    c.send("HEAD /raw/length-head HTTP/1.1\r\nHost: portal.example\r\n\r\n")
        .await;
    let a = c.answer(true).await;
    assert_eq!((a.status, a.header("content-length")), (200, Some("5")));

    c.send(&get("/raw/early")).await;
    let a = c.answer(false).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (200, "ok"),
        "the 103 is not passed on"
    );

    c.send(&get("/raw/hop")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hop"));
    for hop in ["connection", "x-secret", "keep-alive"] {
        assert_eq!(a.header(hop), None, "{hop} must not pass: {a:?}");
    }
    assert_ne!(a.header("x-request-id"), Some("from-backend"));

    // Every answer so far came over one kept-alive backend connection.
    assert_eq!(backend.connections(), 1);
    assert_eq!(backend.requests(), 6);

    // An answer that ends when the backend closes reaches the client chunked, so that its
    // connection can carry on.
    c.send(&get("/raw/close")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "until the end"));
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    assert_eq!(a.header("connection"), None);
    assert!(!c.closed);
    c.send(&get("/raw/length")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello"));
    // The closed backend connection was not pooled: a new one carried the last request.
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send(&format!(
        "{}{}GET /raw/length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        get("/raw/chunked"),
        get("/raw/hop")
    ))
    .await;
    assert_eq!(c.answer(false).await.text(), "hello world");
    assert_eq!(c.answer(false).await.text(), "hop");
    let last = c.answer(false).await;
    assert_eq!(
        (last.text().as_str(), last.header("connection")),
        ("hello", Some("close"))
    );
    assert!(
        c.is_closed().await,
        "closed after the answer it was asked to close on"
    );
}

#[tokio::test]
async fn a_backend_connection_closed_while_idle_is_replaced_not_a_502() {
    let (env, backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    for (i, method) in ["GET", "GET", "POST", "DELETE"].iter().enumerate() {
        c.send(&format!(
            "{method} /raw/once HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
        let a = c.answer(false).await;
        assert_eq!((a.status, a.text().as_str()), (200, "once"), "request {i}");
        // Let the backend's close arrive before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        backend.requests(),
        4,
        "each request reached the backend once"
    );
    assert_eq!(backend.connections(), 4);
}

#[tokio::test]
async fn a_connection_carries_on_through_hyper_after_a_request_with_a_body() {
    let (env, _backend) = setup().await;
    let key = env.dev.key.clone();
    let mut c = Client::connect(env.addr).await;
    c.send(&format!(
        "GET /api/first HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n"
    ))
    .await;
    let first = c.answer(false).await;
    assert_eq!(first.status, 200, "{}", first.text());
    // A body: hyper takes the connection from here, and must read this request from its
    // first byte.
    c.send(&format!(
        "POST /api/second HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 3\r\n\r\nabc"
    ))
    .await;
    let second = c.answer(false).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let echo: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(echo["path"], "/api/second");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["bodyBytes"], 3, "{echo}");
    c.send(&format!(
        "GET /api/third HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
    ))
    .await;
    let third = c.answer(false).await;
    assert_eq!(third.status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&third.body).unwrap();
    assert_eq!(echo["path"], "/api/third");
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn a_body_framed_two_ways_never_reaches_the_backend_as_two_requests() {
    let (env, backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    // Content-Length and Transfer-Encoding together: a smuggling attempt. Whatever the answer,
    // the bytes after the chunked body must not be served as a second request.
    c.send(
        "GET /raw/length HTTP/1.1\r\nHost: x\r\nContent-Length: 36\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /raw/hop HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let a = c.answer(false).await;
    assert!(a.status == 400 || a.status == 200, "{a:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heads = backend.heads.lock().unwrap().clone();
    assert!(
        heads.iter().all(|h| !h.starts_with("GET /raw/hop")),
        "a smuggled request reached the backend: {heads:?}"
    );
}

#[tokio::test]
async fn a_backend_answer_that_breaks_its_framing_is_a_502_or_a_cut_connection() {
    let (env, _backend) = setup().await;
    // Two lengths: nothing is sent on, the client gets a JSON 502.
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/contradiction")).await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 502, "{}", a.text());
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("scripted")),
        "{body}"
    );

    // Fewer bytes than announced: the head is out already, so the client's connection is
    // closed before the length is reached.
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/cut")).await;
    let status = c.line().await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    while c.fill().await {}
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(text.contains("content-length: 100") || text.contains("Content-Length: 100"));
    assert!(text.ends_with("only this"), "{text:?}");
}

#[tokio::test]
async fn a_browser_meeting_a_backend_401_is_sent_to_the_login_page() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send("GET /raw/unauthorized HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n")
        .await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 302);
    assert_eq!(
        a.header("location"),
        Some("/web-login?redirect=/raw/unauthorized")
    );
    // An API client keeps the backend's own 401, on the same connection.
    c.send(&get("/raw/unauthorized")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (401, "nope"));
}

/// A signed-in browser meeting a backend's own 401 sees that 401, challenge and all: sending
/// it to the login page (and clearing its session cookie) would sign it out of every
/// application for one backend's refusal, and bring it back to the same 401 after signing in.
/// On the lane with the raw exchange, through hyper's server, and to an HTTP/2 backend.
#[tokio::test]
async fn a_signed_in_browser_meeting_a_backend_401_keeps_its_session_and_sees_the_401() {
    let (env, _backend) = setup().await;
    let sid = crate::support::session_cookie(&env).await;
    let ask = |target: &str, version: &str, cookie: Option<&str>| {
        let cookie = cookie.map_or_else(String::new, |sid| format!("Cookie: sid={sid}\r\n"));
        format!(
            "GET {target} {version}\r\nHost: portal.example\r\nAccept: text/html\r\n{cookie}\r\n"
        )
    };
    for (target, version) in [
        ("/raw/unauthorized", "HTTP/1.1"),
        ("/raw/unauthorized", "HTTP/1.0"),
        ("/h2/x?unauthorized", "HTTP/1.1"),
        ("/h2/x?unauthorized", "HTTP/1.0"),
    ] {
        let mut c = Client::connect(env.addr).await;
        if version == "HTTP/1.0" {
            c.version = "HTTP/1.0 ";
        }
        c.send(&ask(target, version, Some(&sid))).await;
        let a = c.answer(false).await;
        assert_eq!(a.status, 401, "{target} {version}: {a:?}");
        assert!(
            a.header("set-cookie").is_none(),
            "{target} {version}: {a:?}"
        );
        assert!(a.header("location").is_none(), "{target} {version}: {a:?}");
        if target.starts_with("/h2") {
            assert_eq!(
                a.header("www-authenticate"),
                Some("Basic realm=\"backend\"")
            );
        } else {
            assert_eq!(a.text(), "nope");
        }
    }
    // Without a session the backend's 401 still sends a browser to sign in (/h2/* needs a
    // signed-in caller: there Portcullis refuses first).
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let mut c = Client::connect(env.addr).await;
        if version == "HTTP/1.0" {
            c.version = "HTTP/1.0 ";
        }
        c.send(&ask("/raw/unauthorized", version, None)).await;
        let a = c.answer(false).await;
        assert_eq!(a.status, 302, "{version}: {a:?}");
        assert_eq!(
            a.header("location"),
            Some("/web-login?redirect=/raw/unauthorized")
        );
    }
    // The session still opens what it opened.
    let mut c = Client::connect(env.addr).await;
    c.send(&ask("/h2/x", "HTTP/1.1", Some(&sid))).await;
    assert_eq!(c.answer(false).await.status, 200);
}

#[tokio::test]
async fn a_backend_cannot_set_portcullis_cookies() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/set-cookies")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "ok"));
    let set: Vec<&str> = a
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(set, ["theme=dark"], "{:?}", a.headers);
}

#[tokio::test]
async fn a_protocol_switch_cannot_set_portcullis_cookies_and_an_unasked_one_is_refused() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send(
        "GET /raw/switch HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 101, "{a:?}");
    assert_eq!(a.header("upgrade"), Some("websocket"), "{a:?}");
    assert_eq!(a.header("x-kind"), Some("switch"), "{a:?}");
    let set: Vec<&str> = a
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(set, ["theme=dark"], "{:?}", a.headers);

    // Unasked, a switch leaves the client nothing to read: 502, on the raw lane (no body) and
    // through hyper (a body).
    for request in [
        get("/raw/switch"),
        "POST /raw/switch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_owned(),
    ] {
        let mut c = Client::connect(env.addr).await;
        c.send(&request).await;
        let a = c.answer(false).await;
        assert!(is_bad_gateway(&a), "{request:?}: {a:?}");
    }
}

/// Only a switch to websocket passes. Any other (h2c above all) would leave a tunnel to the
/// backend whose requests no route rule sees: the request goes on as a plain one.
#[tokio::test]
async fn only_a_switch_to_websocket_is_passed_on() {
    let (env, backend) = setup().await;
    let last_head = || {
        backend
            .heads
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .to_ascii_lowercase()
    };
    let mut c = Client::connect(env.addr).await;
    c.send(
        "GET /raw/length HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello"), "{a:?}");
    let head = last_head();
    for name in ["upgrade:", "http2-settings:", "connection:"] {
        assert!(!head.contains(name), "{name} reached the backend: {head}");
    }
    // The connection stays HTTP/1.1: its next request is decided like any other.
    c.send(&get("/admin/panel")).await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 401, "{a:?}");

    // `Upgrade: websocket` without `Connection: upgrade` asks for no switch.
    let mut c = Client::connect(env.addr).await;
    c.send("GET /raw/length HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        .await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 200, "{a:?}");
    let head = last_head();
    assert!(
        !head.contains("upgrade") && !head.contains("connection:"),
        "{head}"
    );

    // HTTP/1.0 cannot switch protocols: its upgrade is a plain request, and a backend that
    // switches anyway is refused.
    let a = raw_bytes(
        env.addr,
        b"GET /raw/switch HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(a.json()["error"]["code"], "bad_gateway");
    let head = last_head();
    assert!(!head.contains("upgrade"), "{head}");

    // A backend asked for websocket that switches to something else: 502, nothing spliced.
    let mut c = Client::connect(env.addr).await;
    c.send(
        "GET /raw/switch-h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let a = c.answer(false).await;
    assert!(is_bad_gateway(&a), "{a:?}");
}

#[tokio::test]
async fn refusals_reach_the_audit_trail_with_their_request_id() {
    let (env, _backend) = setup().await;
    let key = env.dev.key.clone();
    let mut c = Client::connect(env.addr).await;
    // dev is not in `admins`: refused by the gateway and by forward-auth alike.
    for (path, id) in [
        ("/admin/panel", "lane-denial-0001"),
        ("/auth/admin/panel", "lane-denial-0002"),
    ] {
        c.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nX-Request-Id: {id}\r\n\r\n"
        ))
        .await;
        let a = c.answer(false).await;
        assert_eq!(a.status, 403, "{path}: {}", a.text());
        assert_eq!(a.header("x-request-id"), Some(id));
    }
    // Written in the background: wait for both.
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids = env
            .trail("gateway.request")
            .await
            .1
            .iter()
            .filter_map(|r| r["requestId"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ids.sort();
    assert_eq!(ids, ["lane-denial-0001", "lane-denial-0002"]);
}

#[tokio::test]
async fn a_route_decided_by_rego_is_decided_on_every_request() {
    let (env, _backend) = setup().await;
    let key = env.dev.key.clone();
    let mut c = Client::connect(env.addr).await;
    // The same caller, method and path: only the header the policy reads differs, so no
    // earlier verdict may stand in for the next one.
    for (tenant, status) in [("acme", 200), ("other", 403), ("acme", 200), ("other", 403)] {
        c.send(&format!(
            "GET /tenant/jobs HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nX-Tenant: {tenant}\r\n\r\n"
        ))
        .await;
        let a = c.answer(false).await;
        assert_eq!(a.status, status, "X-Tenant {tenant}: {}", a.text());
    }
}

#[tokio::test]
async fn a_head_answer_through_hypers_client_keeps_the_length_it_names() {
    let (env, _backend) = setup().await;
    let key = env.dev.key.clone();
    let mut c = Client::connect(env.addr).await;
    // `/h2/*` goes to a backend spoken to in h2c: hyper's client carries it, the lane writes
    // the answer.
    c.send(&format!(
        "GET /h2/jobs HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n"
    ))
    .await;
    let get = c.answer(false).await;
    assert_eq!(get.status, 200, "{}", get.text());
    let length = get.body.len();
    c.send(&format!(
        "HEAD /h2/jobs HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n"
    ))
    .await;
    let head = c.answer(true).await;
    assert_eq!(head.status, 200);
    // The backend describes its HEAD answer ("HEAD" is one letter longer than "GET").
    let named: usize = head
        .header("content-length")
        .expect("a content-length")
        .parse()
        .unwrap();
    assert_eq!(named, length + 1, "{head:?}");
    // And the connection is still in step.
    c.send(&format!(
        "GET /h2/again HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n"
    ))
    .await;
    let again = c.answer(false).await;
    let echo: serde_json::Value = serde_json::from_slice(&again.body).unwrap();
    assert_eq!(echo["path"], "/h2/again");
}

/// An answer that streams (server-sent events) through hyper's client: its first event reaches
/// the client while the backend is still sending, not once more has come to fill a write.
#[tokio::test]
async fn a_streamed_answers_first_event_is_not_held_back() {
    let (env, _backend) = setup().await;
    let mut conn = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    conn.write_all(
        format!(
            "GET /h2/ticks HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\n\r\n",
            env.dev.key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The next event comes 20 s after the first.
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        while !got.windows(11).any(|w| w == b"data: tick ") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(first.is_ok(), "the first event was held back: {text:?}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("data: tick 1"), "{text}");
}

#[tokio::test]
async fn a_head_just_over_the_limit_is_a_431_however_it_arrives() {
    let backend = Scripted::start().await;
    // A limit that is not a power of two: the read that crosses it can bring the head's end.
    let limit = 60 * 1024;
    let env = Env::start(Options {
        scripted_backend: Some(backend.addr),
        max_header_bytes: limit,
        ..Options::default()
    })
    .await;
    for over in [1usize, 100, 2000, 4000, 6000] {
        let mut c = Client::connect(env.addr).await;
        let start = "GET /raw/length HTTP/1.1\r\nHost: x\r\nx-big: ";
        // The whole head (the limit plus `over` bytes) in one write.
        let filler = "a".repeat(limit + over - start.len() - 4);
        c.send(&format!("{start}{filler}\r\n\r\n")).await;
        let a = c.answer(false).await;
        assert_eq!(a.status, 431, "{over} bytes over");
    }
    assert_eq!(
        backend.requests(),
        0,
        "no head over the limit reached the backend"
    );
}

/// httparse reads a request target of any length; `Uri` holds at most 65,534 bytes. A longer
/// target (only a raised head limit lets one in) goes to hyper with every byte read, and
/// hyper refuses it.
#[tokio::test]
async fn a_target_too_long_for_a_uri_is_refused_not_forwarded() {
    let backend = Scripted::start().await;
    let env = Env::start(Options {
        scripted_backend: Some(backend.addr),
        max_header_bytes: 128 * 1024,
        ..Options::default()
    })
    .await;
    let mut c = Client::connect(env.addr).await;
    let target = format!("/raw/length?q={}", "a".repeat(70_000));
    c.send(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await;
    let a = c.answer(false).await;
    assert_refused(&a, 414, "longer than 65534 bytes");
    assert_eq!(
        backend.requests(),
        0,
        "the request never reached the backend"
    );
}

/// Asserts that `a` is a JSON refusal with `status`, a request id and a message with `words`.
fn assert_refused(a: &Answer, status: u16, words: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"), "{a:?}");
    assert!(a.header("x-request-id").is_some(), "{a:?}");
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{words:?} in {body}");
}

/// A target with a fragment (which no request should carry) is read as `Uri` reads it, up to
/// the `#`, whichever side serves it: the lane (HTTP/1.1) and hyper (HTTP/1.0) give the same
/// answer, so `/auth#x` is forward-auth and `/healthz#x` Portcullis's own on both.
#[tokio::test]
async fn a_fragment_is_cut_off_alike_by_the_lane_and_by_hyper() {
    let (env, backend) = setup().await;
    for (target, status, body) in [
        ("/healthz#x", 200, &br#"{"status":"ok"}"#[..]),
        ("/raw/length#x", 200, b"hello"),
        ("/auth#x", 404, b""),
    ] {
        let mut lane = Client::connect(env.addr).await;
        lane.send(&get(target)).await;
        let a = lane.answer(false).await;
        let mut hyper = Client::connect(env.addr).await;
        hyper.version = "HTTP/1.0 ";
        hyper
            .send(&format!(
                "GET {target} HTTP/1.0\r\nHost: portal.example\r\n\r\n"
            ))
            .await;
        let b = hyper.answer(false).await;
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{target}");
        assert_eq!(a.status, status, "{target}");
        if !body.is_empty() {
            assert_eq!(a.body, body, "{target}");
        }
    }
    // What the backend was asked: the path without its fragment, both times.
    let targets: Vec<String> = backend
        .heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.split_whitespace().nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(targets, ["/raw/length", "/raw/length"]);
}

/// A head hyper's server would refuse with a bare status line and an empty body is refused by
/// the lane instead, saying what is wrong, with a request id; the connection is closed and the
/// backend never hears of it. Control-plane paths alike.
#[tokio::test]
async fn a_malformed_head_is_refused_with_what_is_wrong() {
    let (env, backend) = setup().await;
    let host = "Host: portal.example\r\n";
    for (head, status, words) in [
        (
            format!("GET /raw/len gth HTTP/1.1\r\n{host}\r\n"),
            400,
            "one space apart",
        ),
        (
            format!("GET /raw/length\u{1} HTTP/1.1\r\n{host}\r\n"),
            400,
            "target has a character",
        ),
        (
            format!("GET /raw/length HTTP/1.1\r\n{host}bad name: v\r\n\r\n"),
            400,
            "header name",
        ),
        (
            format!("GET /raw/length HTTP/1.1\r\n{host}x: \u{7f}\r\n\r\n"),
            400,
            "header value",
        ),
        (
            format!("GET /api/v1/orgs HTTP/1.1\r\n{host}bad name: v\r\n\r\n"),
            400,
            "header name",
        ),
        (
            format!("GET /raw/length HTTP/1.1\r\n{host}Content-Length: abc\r\n\r\n"),
            400,
            "Content-Length must be",
        ),
        (
            format!(
                "POST /raw/length HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
            ),
            400,
            "two different Content-Length",
        ),
        (
            format!("POST /raw/length HTTP/1.1\r\n{host}Transfer-Encoding: gzip\r\n\r\n"),
            400,
            "must end with chunked",
        ),
        (
            format!("POST /raw/length HTTP/1.0\r\n{host}Transfer-Encoding: chunked\r\n\r\n"),
            400,
            "HTTP/1.0 request cannot carry Transfer-Encoding",
        ),
    ] {
        let mut c = Client::connect(env.addr).await;
        c.send(&head).await;
        let a = c.answer(false).await;
        assert_refused(&a, status, words);
        assert!(c.is_closed().await, "{head:?}: the connection is closed");
    }
    // A head over the limit (64 KiB here) on a request the lane hands to hyper: a control-plane
    // path, a body. However much of it the first reads bring, a JSON 431.
    let big = format!("x-big: {}\r\n", "a".repeat(70 * 1024));
    for head in [
        format!("GET /healthz HTTP/1.1\r\n{host}{big}\r\n"),
        format!("POST /raw/length HTTP/1.1\r\n{host}Content-Length: 2\r\n{big}\r\nhi"),
    ] {
        let mut c = Client::connect(env.addr).await;
        c.send(&head).await;
        let a = c.answer(false).await;
        assert_refused(&a, 431, "larger than 65536 bytes");
    }
    // A head that comes a byte at a time is read whole once its blank line comes: served by the
    // lane, and a malformed one refused, as when it comes in one piece.
    for (head, status) in [
        (format!("GET /raw/length HTTP/1.1\r\n{host}\r\n"), 200),
        (
            format!("GET /raw/length HTTP/1.1\r\n{host}bad name: v\r\n\r\n"),
            400,
        ),
    ] {
        let mut c = Client::connect(env.addr).await;
        for byte in head.as_bytes().chunks(1) {
            c.send(std::str::from_utf8(byte).unwrap()).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let a = c.answer(false).await;
        if status == 200 {
            assert_eq!((a.status, a.body.as_slice()), (200, &b"hello"[..]), "{a:?}");
        } else {
            assert_refused(&a, 400, "header name");
        }
    }
    // More header fields than the lane reads itself, sent in two pieces: up to hyper's 100 the
    // request is served (through hyper, with every byte); past them, a 431 that says so.
    for (fields, status) in [(80, 200), (101, 431)] {
        let extra: String = (0..fields).map(|i| format!("x-f{i}: v\r\n")).collect();
        let head = format!("GET /raw/length HTTP/1.1\r\n{host}{extra}\r\n");
        let (first, second) = head.split_at(head.len() / 2);
        let mut c = Client::connect(env.addr).await;
        c.send(first).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.send(second).await;
        let a = c.answer(false).await;
        if status == 200 {
            assert_eq!(a.status, 200, "{fields} fields: {a:?}");
            assert_eq!(a.body, b"hello");
        } else {
            assert_refused(&a, 431, "more than 100 header fields");
        }
    }
    assert_eq!(
        backend.requests(),
        2,
        "only the trickled head and the one with 80 fields reached the backend"
    );
}

#[tokio::test]
async fn bytes_a_backend_sends_unasked_never_answer_the_next_request() {
    let (env, backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send("HEAD /raw/late-bytes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let a = c.answer(true).await;
    assert_eq!((a.status, a.header("content-length")), (200, Some("5")));
    // The backend's late bytes arrive while its connection sits in the pool.
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.send(&get("/raw/hop")).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hop"), "{a:?}");
    assert_eq!(
        backend.connections(),
        2,
        "the dirty connection was not reused"
    );
}

#[tokio::test]
async fn a_request_that_may_not_be_repeated_is_sent_once_even_when_unanswered() {
    let (env, backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    // A kept-alive backend connection first.
    c.send(&get("/raw/length")).await;
    assert_eq!(c.answer(false).await.status, 200);
    // The backend takes the POST and closes without answering: it may have acted on it, so
    // it is not sent again.
    c.send("POST /raw/dies HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 502, "{}", a.text());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let posts = backend
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("POST /raw/dies"))
        .count();
    assert_eq!(posts, 1, "the POST reached the backend once");
}

#[tokio::test]
async fn an_interim_answer_is_never_passed_on_as_the_final_one() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/sneaky-interim")).await;
    let a = c.answer(false).await;
    // Either the final answer or a refusal, never the 100 as if it were final.
    assert!(a.status == 200 || a.status == 502, "{a:?}");
    c.send(&get("/raw/hop")).await;
    let next = c.answer(false).await;
    assert_eq!(
        (next.status, next.text().as_str()),
        (200, "hop"),
        "still in step"
    );
}

#[tokio::test]
async fn a_body_that_looks_like_a_request_stays_a_body() {
    let (env, _backend) = setup().await;
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut c = Client::connect(env.addr).await;
    // A GET with a body: the lane must not read past its head as if the body were the next
    // request.
    c.send(&format!(
        "GET /public/carrier HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    ))
    .await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echo: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(echo["bodyBytes"], smuggled.len());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !env.backend.saw_path("/public/smuggled"),
        "a body was served as a request: {:?}",
        env.backend.seen()
    );
}

/// Asks for `path`, whose body stops coming after `before`: the client's connection must close
/// after the scripted backend's timeout (2 s), not when the backend gives up.
async fn cut_after_the_timeout(addr: SocketAddr, path: &str, before: &str) {
    cut_after_the_timeout_in(addr, "HTTP/1.1", path, before).await;
}

/// As [`cut_after_the_timeout`], asked in `version` (HTTP/1.0: through hyper's server and
/// client rather than the lane's raw exchange).
async fn cut_after_the_timeout_in(addr: SocketAddr, version: &str, path: &str, before: &str) {
    let mut c = Client::connect(addr).await;
    if version == "HTTP/1.0" {
        c.version = "HTTP/1.0 ";
    }
    let started = std::time::Instant::now();
    c.send(&format!(
        "GET {path} {version}\r\nHost: portal.example\r\n\r\n"
    ))
    .await;
    let a = c.head().await;
    assert_eq!(a.status, 200, "{path}");
    let rest = c.rest().await;
    let after = started.elapsed();
    assert_eq!(
        rest, before,
        "{path}: the body is cut where the backend stopped"
    );
    assert!(
        after >= Duration::from_millis(1_500) && after < Duration::from_secs(5),
        "{path}: closed after {after:?}, not the backend's 2 s timeout"
    );
}

#[tokio::test]
async fn a_body_that_stops_coming_is_cut_after_the_backends_timeout() {
    let (env, _backend) = setup().await;
    tokio::join!(
        cut_after_the_timeout(env.addr, "/raw/stall-length", "0123456789"),
        cut_after_the_timeout(env.addr, "/raw/stall-chunked", "5\r\nhello\r\n"),
        cut_after_the_timeout(env.addr, "/raw/stall-close", "4\r\nsome\r\n"),
        cut_after_the_timeout_in(env.addr, "HTTP/1.0", "/raw/stall-length", "0123456789"),
        cut_after_the_timeout_in(env.addr, "HTTP/1.0", "/raw/stall-chunked", "hello"),
    );
}

#[tokio::test]
async fn a_close_delimited_answer_cut_by_a_reset_has_no_last_chunk() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/reset")).await;
    let a = c.head().await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("transfer-encoding"), Some("chunked"), "{a:?}");
    // What arrived, then the connection closed where the last chunk belongs.
    assert_eq!(c.rest().await, "8\r\npartial-\r\n");
}

#[tokio::test]
async fn a_chunk_size_another_reader_could_take_differently_is_a_502() {
    let (env, backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    for path in [
        "/raw/size-0x",
        "/raw/size-negative",
        "/raw/size-17-digits",
        "/raw/size-space",
    ] {
        c.send(&get(path)).await;
        let a = c.answer(false).await;
        assert!(is_bad_gateway(&a), "{path}: {a:?} {}", a.text());
    }
    // The client's connection is still in step.
    c.send(&get("/raw/length")).await;
    assert_eq!(c.answer(false).await.text(), "hello");
    // A broken backend connection is never reused: one for each refusal and the last one.
    assert_eq!(backend.connections(), 5);

    // Once the head is out, the client's connection is cut where the bad size was.
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/size-space-late")).await;
    let a = c.head().await;
    assert_eq!(a.status, 200);
    assert_eq!(c.rest().await, "5\r\nhello\r\n");
}

#[tokio::test]
async fn chunks_reach_the_client_without_extensions_or_trailers() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    c.send("GET /raw/chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let a = c.head().await;
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    // The backend's `6;ext=1` and its `x-sum: 11` trailer stay behind.
    assert_eq!(c.rest().await, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_or_beside_a_length_is_a_502() {
    let (env, _backend) = setup().await;
    for path in [
        "/raw/te-gzip-chunked",
        "/raw/te-gzip",
        "/raw/te-chunked-gzip",
        "/raw/te-and-length",
    ] {
        let mut c = Client::connect(env.addr).await;
        c.send(&get(path)).await;
        let a = c.answer(false).await;
        assert!(is_bad_gateway(&a), "{path}: {a:?} {}", a.text());
    }
}

#[tokio::test]
async fn a_bodiless_answer_carries_a_length_only_when_it_is_one_number() {
    let (env, _backend) = setup().await;
    let mut c = Client::connect(env.addr).await;
    let lengths = |a: &Answer| -> Vec<String> {
        a.headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.clone())
            .collect()
    };
    // (method, path, status, the lengths the client gets)
    let table: &[(&str, &str, u16, &[&str])] = &[
        ("HEAD", "/raw/head-odd-length", 200, &[]),
        ("HEAD", "/raw/head-twice-length", 200, &["7"]),
        ("HEAD", "/raw/length-head", 200, &["5"]),
        ("GET", "/raw/nocontent-length", 204, &[]),
        ("HEAD", "/raw/nocontent-length", 204, &[]),
        ("GET", "/raw/not-modified", 304, &["9"]),
        ("GET", "/raw/not-modified-odd", 304, &[]),
    ];
    for (method, path, status, expected) in table {
        c.send(&format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
            .await;
        let a = c.answer(*method == "HEAD").await;
        assert_eq!(a.status, *status, "{method} {path}");
        assert_eq!(lengths(&a), *expected, "{method} {path}: {a:?}");
    }
    // Still in step.
    c.send(&get("/raw/length")).await;
    assert_eq!(c.answer(false).await.text(), "hello");
}

/// Whether the machine lists an IPv6 loopback address (Linux).
fn ipv6_loopback_listed() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("00000000000000000000000000000001"))
    })
}

#[tokio::test]
async fn a_backend_at_an_ipv6_literal_is_reached() {
    let listener = match TcpListener::bind("[::1]:0").await {
        Ok(l) => l,
        Err(e) => {
            // Only CI on a machine that has ::1 must run this.
            assert!(
                !(std::env::var("CI").is_ok_and(|v| v == "true") && ipv6_loopback_listed()),
                "::1 is listed but cannot be bound: {e}"
            );
            eprintln!("skipped: no IPv6 loopback to bind ({e})");
            return;
        }
    };
    let backend = Scripted::serve_on(listener);
    let env = Env::start(Options {
        scripted_backend: Some(backend.addr),
        ..Options::default()
    })
    .await;
    let mut c = Client::connect(env.addr).await;
    c.send(&get("/raw/length")).await;
    let a = c.answer(false).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (200, "hello"),
        "{}",
        a.text()
    );
    c.send(&get("/raw/chunked")).await;
    assert_eq!(c.answer(false).await.text(), "hello world");
    assert_eq!(backend.connections(), 1, "kept alive like any other");
}
