//! What a client can make the server keep without limit. An HTTP/2 connection with no open
//! stream is closed after the idle time an HTTP/1.1 connection gets (`idle_timeout`, 3 s
//! here), over h2c and over TLS, whether or not the client answers the closing handshake. Over
//! TLS, HTTP/2 is served only where ALPN chose it. A request method outside the
//! standard ones is counted in the metrics as `OTHER`, not under a series of its own. A client
//! that half-closes after its request still gets the answer. A control-plane body that stops
//! coming is a 408 after the idle time. Over `max_connections`, a connection is closed as
//! soon as it is accepted, on either listener, and counted; the connections held are then
//! asked to close once idle, heads still coming after a second (on hyper's server: once the
//! last answer is a second old) and TLS handshakes after three are given up, so that idle or
//! trickling clients do not keep new ones out; each such close is counted by its reason.

#[path = "common/metrics.rs"]
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_api::ServerConfig;
use portcullis_api::tls::TlsSettings;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The idle time of HTTP/1.1 connections (the server's head read time), which HTTP/2 gets too.
const IDLE: Duration = Duration::from_secs(3);
/// Longest the close may take after the idle time: the close handshake's grace (5 s) and
/// leeway for a loaded machine.
const LEEWAY: Duration = Duration::from_secs(12);

/// Starts a server with a TLS listener serving a new self-signed certificate; returns the
/// server and the certificate (DER) to trust.
async fn start(dir: &std::path::Path) -> (portcullis_api::Running, Vec<u8>) {
    start_capped(dir, 0, IDLE).await
}

/// As [`start`], holding at most `max_connections` client connections (0: the derived cap),
/// with `idle` as the idle time.
async fn start_capped(
    dir: &std::path::Path,
    max_connections: usize,
    idle: Duration,
) -> (portcullis_api::Running, Vec<u8>) {
    start_with(
        dir,
        portcullis_api::gateway::GatewaySettings {
            idle_timeout: idle,
            max_connections,
            ..Default::default()
        },
        Default::default(),
    )
    .await
}

/// As [`start`], with these gateway settings and route rules.
async fn start_with(
    dir: &std::path::Path,
    gateway: portcullis_api::gateway::GatewaySettings,
    rbac: portcullis_api::RbacSettings,
) -> (portcullis_api::Running, Vec<u8>) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    let running = portcullis_api::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some("connections-test-admin-key-0123456789abcdef".into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: Some(TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            reload_interval: Duration::from_secs(60),
        }),
        gateway,
        auth: Default::default(),
        rbac,
    })
    .await
    .map_err(|e| e.to_string())
    .unwrap();
    (running, generated.cert.der().to_vec())
}

/// An HTTP/2 connection to `addr` without TLS (prior knowledge): the request sender, and the
/// connection's task to run.
async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    hyper::client::conn::http2::Connection<TokioIo<TcpStream>, Empty<bytes::Bytes>, TokioExecutor>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("an h2c handshake")
}

/// Asserts that a connection idle since `idle_since` was closed at `closed_after` of it: not
/// before the idle time, and not much after it.
fn assert_closed_for_idleness(what: &str, closed_after: Option<Duration>) {
    let Some(after) = closed_after else {
        panic!(
            "{what}: still open {:?} after its last request",
            IDLE + LEEWAY
        );
    };
    eprintln!("{what}: closed {after:?} after its last request");
    assert!(
        after >= IDLE - Duration::from_secs(1),
        "{what}: closed after {after:?}, before the idle time"
    );
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_after_the_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start(dir.path()).await;
    let (mut sender, conn) = h2c(running.addr).await;
    // Ends when the server closes the connection (the client answers its GOAWAY and ping).
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(format!("http://{}/healthz", running.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a request");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("the body");
    let idle_since = Instant::now();

    // The client keeps its end (dropping `sender` would close the connection from here).
    let closed = tokio::time::timeout(IDLE + LEEWAY, conn).await;
    let closed_after = closed.is_ok().then(|| idle_since.elapsed());
    assert_closed_for_idleness("h2c", closed_after);
    assert!(sender.is_closed());
    running.shutdown().await;
}

#[tokio::test]
async fn an_h2_connection_over_tls_that_sends_only_its_preface_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (running, cert) = start(dir.path()).await;
    let mut tls = tls_connect(&running, cert, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The client preface and an empty SETTINGS frame, then nothing: not even an answer to
    // the server's SETTINGS or to the ping of its graceful close.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let idle_since = Instant::now();
    let read_to_close = async {
        let mut buf = [0u8; 4096];
        // The server's frames are read and ignored; the end (or a reset) is the close.
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let closed = tokio::time::timeout(IDLE + LEEWAY, read_to_close).await;
    let closed_after = closed.is_ok().then(|| idle_since.elapsed());
    assert_closed_for_idleness("h2 over TLS", closed_after);
    running.shutdown().await;
}

/// A TLS connection to the server's TLS listener, trusting `cert` and offering `alpn`.
async fn tls_connect(
    running: &portcullis_api::Running,
    cert: Vec<u8>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tls_addr: SocketAddr = running.tls_addr.expect("a TLS listener");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert)).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake")
}

#[tokio::test]
async fn over_tls_http2_is_served_only_where_alpn_chose_it() {
    let dir = tempfile::tempdir().unwrap();
    let (running, cert) = start(dir.path()).await;
    // ALPN chose HTTP/1.1, or the client offered nothing: an HTTP/2 preface is not HTTP/2 here
    // (RFC 9113 section 3.3): a 400 saying so, and no HTTP/2 frame.
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut tls = tls_connect(&running, cert.clone(), alpn).await;
        let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_ne!(chosen.as_deref(), Some(&b"h2"[..]));
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(LEEWAY, tls.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection is closed ({alpn:?})");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400 ")
                && answer.contains("ALPN")
                && answer.to_ascii_lowercase().contains("x-request-id: "),
            "ALPN {alpn:?}: an HTTP/1.1 400 that says why, got {answer:?}"
        );
        // The same connection set-up with an HTTP/1.1 request is served.
        let mut tls = tls_connect(&running, cert.clone(), alpn).await;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(LEEWAY, tls.read_to_end(&mut answer)).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // ALPN chose h2: HTTP/2 is served.
    let tls = tls_connect(&running, cert, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(conn);
    let request = hyper::Request::get("https://localhost/healthz")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    running.shutdown().await;
}

#[tokio::test]
async fn made_up_methods_are_counted_as_other() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start(dir.path()).await;
    let http = reqwest::Client::new();
    let made_up = ["PCLMADEUPONE", "PCLMADEUPTWO", "PCL-MADE-UP_3"];
    for method in made_up {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = http
            .request(method, format!("http://{}/healthz", running.addr))
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 405);
    }
    // A standard method keeps its name.
    let answer = http
        .get(format!("http://{}/healthz", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let metrics = http
        .get(format!("http://{}/metrics", running.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |method: &str, status: &str| {
        metrics.lines().any(|l| {
            l.starts_with("portcullis_http_requests_total")
                && l.contains(&format!(r#"method="{method}""#))
                && l.contains(r#"route="/healthz""#)
                && l.contains(&format!(r#"status="{status}""#))
        })
    };
    assert!(counted("OTHER", "405"), "{metrics}");
    assert!(counted("GET", "200"), "{metrics}");
    for method in made_up {
        assert!(
            !metrics.contains(method),
            "{method} has a series: {metrics}"
        );
    }
    running.shutdown().await;
}

/// A client that shuts its sending side once its request is out (`nc -N`, some health
/// checkers) gets its answer, on every way a request is served: a control-plane path, an
/// HTTP/1.0 request and one with a body (hyper), and a plain gateway request (the raw lane).
#[tokio::test]
async fn a_request_followed_by_a_half_close_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start(dir.path()).await;
    let requests: [(&str, &[u8]); 4] = [
        ("control plane", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("HTTP/1.0", b"GET /healthz HTTP/1.0\r\n\r\n"),
        (
            "a body",
            b"POST /api/v1/orgs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        ),
        ("raw lane", b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (what, request) in requests {
        let mut conn = TcpStream::connect(running.addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer and no close within 10 s"))
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.split_whitespace().nth(1).unwrap_or("(nothing)");
        let expected = match what {
            "control plane" | "HTTP/1.0" => "200",
            // No credential: refused, but answered.
            "a body" => "401",
            // No route is configured here.
            _ => "404",
        };
        assert_eq!(status, expected, "{what}: {answer:?}");
    }
    running.shutdown().await;
}

/// A control-plane request whose body stops coming is answered 408 after the idle time, as a
/// gateway request's is, and its connection closed: a client cannot hold a connection (and the
/// task reading its body) by announcing a body it never sends. Sign-in (no credential needed),
/// an admin's JSON body, and a body a handler reads itself; framed by length and chunked.
#[tokio::test]
async fn a_control_plane_body_that_stops_coming_is_a_408() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start(dir.path()).await;
    let key = "connections-test-admin-key-0123456789abcdef";
    let requests = [
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"grant_type\":".to_owned(),
        format!("POST /api/v1/orgs HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{{\"sl\r\n"),
        format!("DELETE /api/permission/policies/role/default/ops HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n[{{"),
    ];
    for request in requests {
        let mut conn = TcpStream::connect(running.addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        tokio::time::timeout(IDLE + LEEWAY, conn.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("no answer and no close: {request:?}"))
            .unwrap();
        let waited = started.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{request:?}: {answer}");
        assert!(
            answer.contains("no part of the request body came"),
            "{answer}"
        );
        assert!(answer.contains("x-request-id:"), "{answer}");
        assert!(waited >= IDLE - Duration::from_millis(100), "{waited:?}");
    }
    running.shutdown().await;
}

/// HTTP/2 names the host in `:authority`: it must be one authority as `Host` must, and a
/// `Host` beside it must name the same host.
#[tokio::test]
async fn an_http2_authority_follows_the_host_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start(dir.path()).await;
    let (mut sender, conn) = h2c(running.addr).await;
    tokio::spawn(conn);
    let mut ask = async |authority: &str, host: Option<&str>| {
        let mut request = hyper::Request::get(format!("http://{authority}/healthz"));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let request = request.body(Empty::<bytes::Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.expect("an answer");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(ask("portal.example:8443", None).await.0, 200);
    assert_eq!(ask("portal.example", Some("PORTAL.example")).await.0, 200);
    for authority in ["a.example,b.example", "portal.example:99999"] {
        let (status, body) = ask(authority, None).await;
        assert_eq!(status, 400, "{authority}: {body}");
        assert!(body.contains("authority must be"), "{body}");
    }
    let (status, body) = ask("portal.example", Some("evil.example")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("another host"), "{body}");
    running.shutdown().await;
}

/// A kept-alive HTTP/1.1 connection that has been served once (so the server holds it).
async fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let answer = answer_to(
        &mut tcp,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    tcp
}

/// What the server answers (lower-cased; empty if it closed the connection) to `bytes` sent
/// on `tcp`, read in one go within 5 s.
async fn answer_to(tcp: &mut TcpStream, bytes: &[u8]) -> String {
    tcp.write_all(bytes).await.unwrap();
    let mut answer = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).to_lowercase()
}

/// What the server does with a connection it was just given: `Some(answer)` when it answers
/// a request sent on it, `None` when it closes the connection without a word.
async fn what_a_new_connection_gets(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The write may already meet the close; the read says what happened.
    let _ = tcp.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection was neither answered nor closed"
    );
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// The answer to `request` on a new connection, tried again for up to 5 s while the server
/// refuses new connections (until it has seen a held one close).
async fn answered_once_a_place_frees(addr: SocketAddr, request: &[u8]) -> String {
    for _ in 0..50 {
        if let Some(answer) = what_a_new_connection_gets(addr, request).await {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no place was freed for a new connection");
}

/// Whether the server closes `tcp` within `within` (reading, and dropping, what it sends).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Serialises the tests that count what reclaims close: the counter is the process's, shared by
/// every test server, so each reads it before and after with no other such test between.
static RECLAIM_COUNTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many connections reclaims have closed for `reason`, process-wide: other tests' servers
/// may add to the count, never take away.
fn reclaimed(running: &portcullis_api::Running, reason: &str) -> f64 {
    metrics::series(
        &running.metrics(),
        "portcullis_gateway_connections_reclaimed_total",
        &[&format!(r#"reason="{reason}""#)],
    )
}

/// A connection to `addr` that has sent part of a request head for `path`: busy, not idle.
async fn halfway_through_a_head(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n").as_bytes())
        .await
        .unwrap();
    tcp
}

/// The cap counts the connections of both listeners together. Those held here are busy (each
/// halfway through a request head), so the reclaim a refusal starts does not cut them off: each
/// gets its answer, which says `Connection: close`, and then closes; whether the raw lane
/// answers (forward-auth) or hyper's server (a control-plane path).
#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start_capped(dir.path(), 3, Duration::from_secs(30)).await;
    let addr = running.addr;
    let tls_addr = running.tls_addr.unwrap();
    let mut held = Vec::new();
    for (path, status) in [("/auth/x", "401"), ("/healthz", "200"), ("/auth/y", "401")] {
        held.push((halfway_through_a_head(addr, path).await, status));
    }
    // Each is taken by the server as it is accepted: give the listener a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // A fourth is closed without an answer, on the plain listener and on the TLS one (whose
    // handshake never starts: the client's hello meets a closed connection).
    assert_eq!(what_a_new_connection_gets(addr, request).await, None);
    let hello = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00";
    assert_eq!(what_a_new_connection_gets(tls_addr, hello).await, None);
    // The held ones finish their request, told it is their last.
    for (tcp, status) in &mut held {
        let answer = answer_to(tcp, b"\r\n").await;
        assert!(
            answer.starts_with(&format!("http/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(closed_within(tcp, Duration::from_secs(5)).await);
    }
    // The places they held are taken again.
    let answer = answered_once_a_place_frees(addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The refusals are counted (the metrics are the process's: other tests' servers may add
    // to them, never take away).
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_gateway_connections_refused_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refusal counter in {metrics}"));
    assert!(refused >= 2.0, "refused: {refused}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portcullis_gateway_connections_open")),
        "no open-connection gauge in {metrics}"
    );
    running.shutdown().await;
}

/// Clients holding every place without using it do not keep a new client out for their idle
/// time (30 s here): the refusal of one more closes those quiet for a second, HTTP/1.1 and
/// HTTP/2 alike, and one that has sent nothing for a second as well; one just opened is spared
/// (its first request may be on its way) and its first answer is its last, or, if it sends
/// none, it is closed once it has been quiet for a second.
#[tokio::test]
async fn idle_connections_are_closed_when_the_cap_is_reached() {
    let _counting = RECLAIM_COUNTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start_capped(dir.path(), 6, Duration::from_secs(30)).await;
    let addr = running.addr;
    let idle_before = reclaimed(&running, "idle");
    let mut idle = vec![served_connection(addr).await];
    let silent = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = h2c(addr).await;
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(format!("http://{addr}/healthz"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("an h2c request");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("the body");

    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A fresh connection is spared by the reclaim (as long as this test gets to it within the
    // second).
    // So is one just answered (through hyper's server, which serves /healthz), whose next
    // answer is its last.
    let mut recent = served_connection(addr).await;
    let fresh = TcpStream::connect(addr).await;
    let spared = TcpStream::connect(addr).await;
    let fresh_at = Instant::now();
    // When the spared one (which sends nothing) is closed, measured from its start.
    let spared_closed = tokio::spawn(async move {
        let mut spared = spared.unwrap();
        let closed = closed_within(&mut spared, Duration::from_secs(4)).await;
        closed.then(|| fresh_at.elapsed())
    });
    // Long enough for the server to be waiting for its first request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(what_a_new_connection_gets(addr, request).await, None);
    let mut fresh = fresh.unwrap();
    let in_time = fresh_at.elapsed() < Duration::from_millis(700);
    if in_time {
        let answer = answer_to(&mut fresh, request).await;
        assert!(
            answer.starts_with("http/1.1 200"),
            "a fresh connection was reclaimed: {answer}"
        );
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        let answer = answer_to(&mut recent, request).await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(closed_within(&mut recent, Duration::from_secs(5)).await);
        // One spared that sends nothing is closed once it has been quiet for a second,
        // without waiting for another refusal (none has come since).
        let closed_after = spared_closed
            .await
            .unwrap()
            .expect("a spared connection that stayed quiet is still open");
        assert!(
            closed_after >= Duration::from_millis(900),
            "the spared connection was closed after {closed_after:?}, before it had been quiet for a second"
        );
    } else {
        eprintln!("the fresh connection's check skipped: the machine took over 0.7 s");
    }
    drop(fresh);
    idle.push(silent);
    for tcp in &mut idle {
        assert!(
            closed_within(tcp, Duration::from_secs(3)).await,
            "an idle HTTP/1.1 connection is still open"
        );
    }
    // HTTP/2 ends with a GOAWAY the client answers.
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(ended.is_ok(), "the idle h2c connection is still open");
    let answer = answered_once_a_place_frees(addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Closed without an answer and counted: the HTTP/1.1 connection served through hyper, the
    // silent one, the HTTP/2 one and the spared one that stayed quiet. Those answered with
    // `Connection: close` are not. (Where the machine was too slow for the spared checks, the
    // fresh and recent ones may have been closed quiet as well.)
    let idle = reclaimed(&running, "idle") - idle_before;
    if in_time {
        assert_eq!(idle, 4.0, "idle connections reclaimed");
    } else {
        assert!(idle >= 4.0, "idle connections reclaimed: {idle}");
    }
    running.shutdown().await;
}

/// Clients that trickle a request head or a TLS handshake do not keep a new client out for
/// their head time (30 s here) either: once a refusal has started a reclaim, a head that has
/// been coming for a second is given up (one begun after the reclaim as well), and a handshake
/// under way for three.
#[tokio::test]
async fn slow_heads_and_handshakes_are_given_up_when_the_cap_is_reached() {
    let _counting = RECLAIM_COUNTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start_capped(dir.path(), 4, Duration::from_secs(30)).await;
    let (addr, tls_addr) = (running.addr, running.tls_addr.unwrap());
    let heads_before = reclaimed(&running, "slow_head");
    let handshakes_before = reclaimed(&running, "handshake");
    let mut slow = vec![
        halfway_through_a_head(addr, "/auth/x").await,
        halfway_through_a_head(addr, "/healthz").await,
    ];
    // The first bytes of a ClientHello: the handshake waits for the rest.
    let mut handshake = TcpStream::connect(tls_addr).await.unwrap();
    handshake
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .unwrap();
    let handshake_began = Instant::now();
    let handshake_closed = tokio::spawn(async move {
        let closed = closed_within(&mut handshake, Duration::from_secs(10)).await;
        closed.then(|| handshake_began.elapsed())
    });
    // More of each head keeps coming, too slowly to make a head in time.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for tcp in &mut slow {
        tcp.write_all(b"X-Slow: 1\r\n").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    // One more, opened just before the reclaim, begins its head after it.
    let mut late = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(what_a_new_connection_gets(addr, request).await, None);
    for (n, tcp) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, Duration::from_secs(3)).await,
            "slow head {n} is still open"
        );
    }
    // A head begun after the reclaim gets its second too, and no more.
    late.write_all(b"GET /auth/z HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let late_began = Instant::now();
    assert!(
        closed_within(&mut late, Duration::from_secs(3)).await,
        "a head begun after the reclaim is still open"
    );
    assert!(
        late_began.elapsed() >= Duration::from_millis(800),
        "a head begun after the reclaim was given up after {:?}",
        late_began.elapsed()
    );
    let closed_after = handshake_closed
        .await
        .unwrap()
        .expect("the slow TLS handshake is still open");
    // A handshake gets three seconds (a slow link may need more than one).
    assert!(
        closed_after >= Duration::from_millis(2500),
        "the handshake was given up after {closed_after:?}"
    );
    let answer = answered_once_a_place_frees(addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Each is counted by why it was closed.
    let heads = reclaimed(&running, "slow_head") - heads_before;
    assert_eq!(heads, 3.0, "slow heads counted");
    let handshakes = reclaimed(&running, "handshake") - handshakes_before;
    assert_eq!(handshakes, 1.0, "slow handshakes counted");
    running.shutdown().await;
}

/// A head trickled on a connection the general HTTP server already serves (after a
/// control-plane request) is given up by a reclaim as well, once its last answer is a second
/// old, however steadily its bytes come. hyper's server tells no half-read head from an idle
/// connection, so it is counted as `idle`.
#[tokio::test]
async fn a_head_trickled_after_a_hand_off_is_given_up_when_the_cap_is_reached() {
    let _counting = RECLAIM_COUNTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start_capped(dir.path(), 2, Duration::from_secs(30)).await;
    let addr = running.addr;
    let idle_before = reclaimed(&running, "idle");
    // Served through hyper (/healthz is the control plane's), and one that sends nothing.
    let mut trickling = served_connection(addr).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    trickling
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trickling.write_all(b"X-Slow: 1\r\n").await.unwrap();
    }
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(what_a_new_connection_gets(addr, request).await, None);
    let keep_trickling = async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if trickling.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), keep_trickling).await;
    assert!(
        closed_within(&mut trickling, Duration::from_millis(500)).await,
        "a head trickled on a connection hyper serves is still open"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    let answer = answered_once_a_place_frees(addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle = reclaimed(&running, "idle") - idle_before;
    assert_eq!(idle, 2.0, "the trickling and the silent connection counted");
    running.shutdown().await;
}

/// An HTTP/2 connection (h2c) whose request bodies the test writes as it likes.
async fn h2c_streaming(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::channel::Channel<bytes::Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("an h2c handshake");
    tokio::spawn(conn);
    sender
}

/// A stream the client holds open: a request whose body has not ended, and its answer to come.
struct HeldStream {
    body: http_body_util::channel::Sender<bytes::Bytes>,
    answer: tokio::task::JoinHandle<hyper::Response<hyper::body::Incoming>>,
}

/// Sends `method path` on `sender`; its body (none for GET) ends when the returned stream's
/// `body` is dropped.
async fn open_stream(
    sender: &mut hyper::client::conn::http2::SendRequest<
        http_body_util::channel::Channel<bytes::Bytes>,
    >,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> HeldStream {
    let (body, channel) = http_body_util::channel::Channel::new(1);
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .header("x-api-key", "connections-test-admin-key-0123456789abcdef")
        .body(channel)
        .unwrap();
    sender.ready().await.expect("the connection takes requests");
    let answer = sender.send_request(request);
    let answer = tokio::spawn(async move { answer.await.expect("an answer") });
    HeldStream { body, answer }
}

/// The answer to `stream` once its request body is ended, within 5 s.
async fn answer_to_stream(stream: HeldStream) -> hyper::Response<hyper::body::Incoming> {
    drop(stream.body);
    tokio::time::timeout(Duration::from_secs(5), stream.answer)
        .await
        .expect("answered within 5 s")
        .unwrap()
}

/// A backend that answers each request, once its body has ended, with the body's length; and
/// the count of requests it has begun to receive.
async fn counting_backend() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let begun = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = begun.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async {
                            let read = req.into_body().collect().await;
                            let length = read.map_or(0, |b| b.to_bytes().len());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(length.to_string())),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, begun)
}

/// A connection to `addr` whose first request is answered, trying again for a few seconds
/// while the server holds as many as it may (one over the cap is closed at once).
async fn h2c_once_a_place_frees(
    addr: SocketAddr,
    path: &str,
) -> hyper::client::conn::http2::SendRequest<http_body_util::channel::Channel<bytes::Bytes>> {
    for _ in 0..20 {
        let mut sender = h2c_streaming(addr).await;
        let stream = open_stream(&mut sender, addr, "GET", path).await;
        drop(stream.body);
        if let Ok(answer) = stream.answer.await
            && answer.status() == 200
        {
            return sender;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no connection was let in");
}

/// Each HTTP/2 stream forwarding beside another on its connection may hold a backend
/// connection of its own, so it takes a place under `max_connections` as a connection does:
/// over the cap it is answered 503 at once (with `Retry-After`), a stream that forwards nothing
/// (the control plane) is served, and a place a stream gave back is taken again.
#[tokio::test]
async fn http2_streams_forwarding_beside_others_take_places_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, begun) = counting_backend().await;
    let (running, _) = start_with(
        dir.path(),
        portcullis_api::gateway::GatewaySettings {
            max_connections: 3,
            idle_timeout: Duration::from_secs(30),
            backends: vec![portcullis_gateway::Backend::new(
                "up",
                format!("http://{backend}").parse().unwrap(),
                Duration::from_secs(30),
            )],
            ..Default::default()
        },
        portcullis_api::RbacSettings {
            routes: yaml_serde::from_str("- { path: /up/*, auth: none, backend: up }").unwrap(),
            ..Default::default()
        },
    )
    .await;
    let addr = running.addr;
    let mut sender = h2c_streaming(addr).await;
    // Three uploads whose bodies have not ended, each with a backend connection: the first
    // holds the connection's own place, the other two the two places left.
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(open_stream(&mut sender, addr, "POST", &format!("/up/{n}")).await);
    }
    // Each reaches the backend (its place taken before it is forwarded), none is refused.
    for _ in 0..100 {
        if begun.load(std::sync::atomic::Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(begun.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(held.iter().all(|stream| !stream.answer.is_finished()));
    // The control plane holds no backend connection: served at the cap.
    let health = open_stream(&mut sender, addr, "GET", "/healthz").await;
    assert_eq!(answer_to_stream(health).await.status(), 200);
    // One more forwarding stream is over the cap.
    let over = open_stream(&mut sender, addr, "GET", "/up/over").await;
    let answer = answer_to_stream(over).await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_connections")),
        "{body}"
    );
    // The refusal closes nothing: the same connection goes on being served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = open_stream(&mut sender, addr, "GET", "/healthz").await;
    assert_eq!(answer_to_stream(again).await.status(), 200);
    // The second upload ends: its answer comes and its place is given back, which a new
    // connection then takes (it is closed at once while the server holds three).
    let mut second = held.remove(1);
    second
        .body
        .send_data(bytes::Bytes::from_static(b"12345"))
        .await
        .unwrap();
    let answer = answer_to_stream(second).await;
    assert_eq!(answer.status(), 200);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"5");
    let mut next = h2c_once_a_place_frees(addr, "/up/next").await;
    // The metrics over that connection (a new one would find the server full).
    let asked = open_stream(&mut next, addr, "GET", "/metrics").await;
    drop(asked.body);
    let answer = asked.answer.await.unwrap();
    let metrics = answer.into_body().collect().await.unwrap().to_bytes();
    let metrics = String::from_utf8_lossy(&metrics);
    drop(held);
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_gateway_streams_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no stream refusal counter in {metrics}"));
    assert!(refused >= 1.0, "refused: {refused}");
    // The refused stream is counted under its route, with no backend to blame.
    let series =
        |labels: &[&str]| metrics::series(&metrics, "portcullis_gateway_requests_total", labels);
    assert_eq!(
        series(&["route=\"/up/*\"", "backend=\"(none)\"", "status=\"503\""]),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        series(&["backend=\"up\"", "status=\"503\""]),
        0.0,
        "{metrics}"
    );
    running.shutdown().await;
}

/// `gateway.http2_max_streams` is what the server tells HTTP/2 clients they may open at once
/// (its SETTINGS): with 2, a client holding two streams open waits with its third until one
/// ends.
#[tokio::test]
async fn an_http2_client_opens_at_most_http2_max_streams_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = start_with(
        dir.path(),
        portcullis_api::gateway::GatewaySettings {
            http2_max_streams: 2,
            ..Default::default()
        },
        Default::default(),
    )
    .await;
    let addr = running.addr;
    let mut sender = h2c_streaming(addr).await;
    // The server's SETTINGS come with its first answer.
    let first = open_stream(&mut sender, addr, "GET", "/healthz").await;
    drop(first.body);
    assert_eq!(first.answer.await.unwrap().status(), 200);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(open_stream(&mut sender, addr, "POST", "/api/v1/orgs").await);
    }
    let third = open_stream(&mut sender, addr, "GET", "/healthz").await;
    drop(third.body);
    let mut third_answer = third.answer;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut third_answer)
            .await
            .is_err(),
        "a third stream was opened beside two"
    );
    drop(held.remove(0).body);
    let answer = tokio::time::timeout(Duration::from_secs(5), third_answer)
        .await
        .expect("the third is sent once a stream ends")
        .unwrap();
    assert_eq!(answer.status(), 200);
    drop(held);
    running.shutdown().await;
}
