//! Upgraded connections (a websocket handshake) through the gateway: authorized like any
//! request, then spliced both ways byte for byte, and cut off within seconds of the credential
//! being deleted. The backend is a raw TCP server that accepts the handshake and echoes. An
//! upgraded connection keeps its place under the server's connection cap until it closes, and
//! is closed once nothing has passed either way for the websocket idle time.

#[path = "common/metrics.rs"]
mod metrics;

use std::time::{Duration, Instant};

use portcullis_api::gateway::GatewaySettings;
use portcullis_api::{RbacSettings, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ADMIN_KEY: &str = "websocket-test-admin-key-0123456789abcdef";

/// A backend that answers any upgrade with 101 and then echoes every byte.
async fn echo_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_lowercase();
                assert!(text.contains("upgrade: websocket"), "{text}");
                assert!(
                    text.contains("x-portcullis-user: ws-bot"),
                    "identity reaches the backend: {text}"
                );
                // A failed check here drops the connection: the client sees a 502, not a 101.
                assert!(
                    !text.contains("x-api-key"),
                    "the caller's key stays with Portcullis: {text}"
                );
                conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).await.unwrap(),
            1,
            "connection closed early"
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A server with the echo backend behind `routes`, and a machine user `ws-bot` with a key.
struct Setup {
    running: portcullis_api::Running,
    base: String,
    http: reqwest::Client,
    /// The bot's user id.
    id: String,
    /// The key as created (`key`, `id`).
    key: Value,
    /// The TLS listener's certificate (DER), where it has one.
    cert: Option<Vec<u8>>,
    /// Holds the database for the server's life.
    _dir: tempfile::TempDir,
}

async fn setup(routes: &str) -> Setup {
    setup_capped(routes, 0).await
}

/// As [`setup`], the server holding at most `max_connections` client connections (0: the
/// derived cap).
async fn setup_capped(routes: &str, max_connections: usize) -> Setup {
    setup_with(
        routes,
        GatewaySettings {
            max_connections,
            ..Default::default()
        },
    )
    .await
}

/// As [`setup`], with these gateway settings (their backends replaced by the echo backend).
async fn setup_with(routes: &str, gateway: GatewaySettings) -> Setup {
    setup_with_backend(routes, gateway, "echo", None, false).await
}

/// As [`setup_with`], the echo backend named `name` (metrics are the process's: a test that
/// counts names its own), with a websocket idle time of its own; with a TLS listener beside
/// the plain one where `tls`.
async fn setup_with_backend(
    routes: &str,
    gateway: GatewaySettings,
    name: &str,
    websocket_idle: Option<Duration>,
    tls: bool,
) -> Setup {
    let backend = echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = tls.then(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        made.cert.der().to_vec()
    });
    let routes = yaml_serde::from_str(routes).unwrap();
    let running = portcullis_api::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.path().display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some(ADMIN_KEY.into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: tls.then(|| portcullis_api::tls::TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            reload_interval: Duration::from_secs(60),
        }),
        gateway: GatewaySettings {
            backends: vec![portcullis_gateway::Backend {
                websocket_idle,
                ..portcullis_gateway::Backend::new(
                    name,
                    format!("http://{backend}").parse().unwrap(),
                    Duration::from_secs(5),
                )
            }],
            ..gateway
        },
        auth: Default::default(),
        rbac: RbacSettings {
            routes,
            ..Default::default()
        },
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let bot: Value = http
        .post(format!("{base}/api/v1/orgs/default/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"email": "ws-bot@example.com", "kind": "machine"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = bot["id"].as_str().unwrap().to_owned();
    let key = create_key(&http, &base, &id, "ws").await;
    Setup {
        running,
        base,
        http,
        id,
        key,
        cert,
        _dir: dir,
    }
}

/// A new API key named `name` for the user `id`, as created (`key`, `id`).
async fn create_key(http: &reqwest::Client, base: &str, id: &str, name: &str) -> Value {
    http.post(format!("{base}/api/v1/orgs/default/users/{id}/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Deletes the user `id`'s API `key` (as created).
async fn delete_key(http: &reqwest::Client, base: &str, id: &str, key: &Value) {
    let key_id = key["id"].as_str().unwrap();
    let deleted = http
        .delete(format!(
            "{base}/api/v1/orgs/default/users/{id}/keys/{key_id}"
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

/// A websocket handshake for `path` with extra header lines.
fn handshake(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: portcullis\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A websocket opened through the gateway at `addr` to the echo backend with the key `secret`.
async fn open_websocket(addr: std::net::SocketAddr, secret: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(handshake("/ws/echo", &format!("X-API-KEY: {secret}\r\n")).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn
}

/// Waits up to 5 s for the server to close `conn`; whether it did.
async fn closed_within_5s(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn an_upgraded_connection_is_spliced_and_cut_off_when_its_key_is_deleted() {
    let Setup {
        running,
        base,
        http,
        id,
        key,
        _dir,
        ..
    } = setup("[{path: /ws/*, backend: echo}]").await;
    let secret = key["key"].as_str().unwrap().to_owned();

    // Without a credential the upgrade is refused like any request.
    let mut anonymous = TcpStream::connect(running.addr).await.unwrap();
    anonymous
        .write_all(handshake("/ws/echo", "").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut anonymous).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let mut conn = open_websocket(running.addr, &secret).await;
    for message in ["hello", "through the gateway"] {
        conn.write_all(message.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; message.len()];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, message.as_bytes());
    }

    // Deleting the key cuts the connection off.
    delete_key(&http, &base, &id, &key).await;
    let started = Instant::now();
    assert!(
        closed_within_5s(&mut conn).await,
        "the connection stayed open after the key was deleted"
    );
    eprintln!(
        "connection closed {:?} after the key was deleted",
        started.elapsed()
    );

    // Both requests are counted per route and backend.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |status: &str, backend: &str| {
        metrics.lines().any(|l| {
            l.starts_with("portcullis_gateway_requests_total")
                && l.contains(r#"route="/ws/*""#)
                && l.contains(&format!(r#"backend="{backend}""#))
                && l.contains(&format!(r#"status="{status}""#))
        })
    };
    assert!(counted("101", "echo"), "{metrics}");
    assert!(counted("401", "(none)"), "{metrics}");
    // Latency as a Prometheus histogram: cumulative buckets per route and backend, from half a
    // millisecond up to `+Inf`, which holds every request counted.
    let bucket = |le: &str| {
        let labels = [
            r#"route="/ws/*""#.to_owned(),
            r#"backend="echo""#.to_owned(),
            format!(r#"le="{le}""#),
        ];
        metrics
            .lines()
            .filter(|l| l.starts_with("portcullis_gateway_request_duration_seconds_bucket{"))
            .find(|l| labels.iter().all(|label| l.contains(label.as_str())))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let (first, all) = (bucket("0.0005"), bucket("+Inf"));
    assert!(first.is_some(), "no half-millisecond bucket in {metrics}");
    assert!(
        all.is_some_and(|n| n >= 1.0),
        "+Inf bucket: {all:?} in {metrics}"
    );
    assert!(first <= all, "buckets are cumulative: {first:?} > {all:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn an_upgraded_connection_is_cut_off_when_its_caller_loses_the_route() {
    let Setup {
        running,
        base,
        http,
        id,
        key,
        _dir,
        ..
    } = setup("[{path: /team/*, groups: groups.team, backend: echo}]").await;
    let admin = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let status = admin(
        reqwest::Method::POST,
        "/api/v1/orgs/default/groups".into(),
        Some(json!({"name": "team"})),
    )
    .await
    .unwrap()
    .status();
    assert!(status.is_success(), "{status}");
    let status = admin(
        reqwest::Method::POST,
        "/api/v1/orgs/default/groups/team/members".into(),
        Some(json!({"userId": id})),
    )
    .await
    .unwrap()
    .status();
    assert!(status.is_success(), "{status}");
    let secret = key["key"].as_str().unwrap();
    let mut conn = TcpStream::connect(running.addr).await.unwrap();
    conn.write_all(handshake("/team/chat", &format!("X-API-KEY: {secret}\r\n")).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // The key stays valid; the caller leaves the group the route needs.
    let removed = admin(
        reqwest::Method::DELETE,
        format!("/api/v1/orgs/default/groups/team/members/users/{id}"),
        None,
    )
    .await
    .unwrap()
    .status();
    assert_eq!(removed, 204);
    assert!(
        closed_within_5s(&mut conn).await,
        "the connection stayed open after its caller lost the route"
    );
    running.shutdown().await;
}

/// Whether a new connection to `addr` is answered (`true`) or closed without a word.
async fn a_new_connection_is_answered(addr: std::net::SocketAddr) -> bool {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let _ = conn
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: portcullis\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("answered or closed in time");
    matches!(read, Ok(n) if n > 0)
}

/// hyper's connection ends when it hands an upgraded connection over; the splice that carries
/// it from then on holds its place under the cap, so a websocket cannot take a descriptor the
/// cap does not count.
#[tokio::test]
async fn an_upgraded_connection_keeps_its_place_under_the_cap() {
    let Setup {
        running,
        http,
        key,
        _dir,
        ..
    } = setup_capped("[{path: /ws/*, backend: echo}]", 1).await;
    // The set-up's kept-alive connection gives its place up as it closes.
    drop(http);
    let secret = key["key"].as_str().unwrap().to_owned();
    let mut upgraded = None;
    for _ in 0..50 {
        let mut conn = TcpStream::connect(running.addr).await.unwrap();
        let request = handshake("/ws/echo", &format!("X-API-KEY: {secret}\r\n"));
        if conn.write_all(request.as_bytes()).await.is_ok() {
            let mut first = [0u8; 1];
            if let Ok(Ok(1)) =
                tokio::time::timeout(Duration::from_secs(5), conn.read(&mut first)).await
            {
                let head = format!("{}{}", first[0] as char, read_head(&mut conn).await);
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                upgraded = Some(conn);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut upgraded = upgraded.expect("a place for the websocket");
    upgraded.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    upgraded.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    // The place is the websocket's while it is open.
    assert!(
        !a_new_connection_is_answered(running.addr).await,
        "a connection was let in beside the websocket over a cap of one"
    );
    upgraded.write_all(b"pong").await.unwrap();
    upgraded.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"pong", "the websocket goes on");
    // Closed, it gives the place up.
    drop(upgraded);
    let mut answered = false;
    for _ in 0..50 {
        if a_new_connection_is_answered(running.addr).await {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the websocket's place was not given back");
    running.shutdown().await;
}

/// A websocket that carries nothing either way for its idle time is closed (one whose client
/// vanished gives its place and its backend connection back); one that keeps talking outlives
/// that time, and is closed in turn once it falls quiet.
#[tokio::test]
async fn a_websocket_quiet_for_its_idle_time_is_closed_and_a_talking_one_is_not() {
    const IDLE: Duration = Duration::from_secs(2);
    let Setup {
        running, key, _dir, ..
    } = setup_with(
        "[{path: /ws/*, backend: echo}]",
        GatewaySettings {
            websocket_idle_timeout: IDLE,
            ..Default::default()
        },
    )
    .await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let mut quiet = open_websocket(running.addr, &secret).await;
    let opened = Instant::now();
    let quiet_closed = tokio::spawn(async move {
        assert!(
            closed_within_5s(&mut quiet).await,
            "a quiet websocket stayed open"
        );
        opened.elapsed()
    });
    let mut talking = open_websocket(running.addr, &secret).await;
    let talked_until = Instant::now() + IDLE * 2 + Duration::from_millis(500);
    while Instant::now() < talked_until {
        talking.write_all(b"tick").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), talking.read_exact(&mut echo))
            .await
            .expect("the talking websocket answered in time")
            .expect("the talking websocket stays open past the idle time");
        assert_eq!(&echo, b"tick");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let quiet_after = quiet_closed.await.unwrap();
    assert!(
        quiet_after >= IDLE - Duration::from_millis(500),
        "the quiet websocket was closed after {quiet_after:?}, before its idle time of {IDLE:?}"
    );
    let fell_quiet = Instant::now();
    assert!(
        closed_within_5s(&mut talking).await,
        "a websocket fallen quiet stayed open"
    );
    assert!(
        fell_quiet.elapsed() >= IDLE - Duration::from_millis(500),
        "closed {:?} after falling quiet, before its idle time",
        fell_quiet.elapsed()
    );
    eprintln!(
        "quiet websocket closed after {quiet_after:?}, the talking one {:?} after its last message",
        fell_quiet.elapsed()
    );
    running.shutdown().await;
}

/// A backend's own websocket idle time is the one its websockets get, in place of the
/// gateway's (five minutes by default here).
#[tokio::test]
async fn a_backend_sets_its_own_websocket_idle_time() {
    let Setup {
        running, key, _dir, ..
    } = setup_with_backend(
        "[{path: /ws/*, backend: echo}]",
        GatewaySettings::default(),
        "echo",
        Some(Duration::from_secs(1)),
        false,
    )
    .await;
    let secret = key["key"].as_str().unwrap();
    let mut conn = open_websocket(running.addr, secret).await;
    conn.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    conn.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    let quiet_since = Instant::now();
    assert!(
        closed_within_5s(&mut conn).await,
        "the backend's websocket idle time (1 s) was not applied"
    );
    assert!(
        quiet_since.elapsed() >= Duration::from_millis(500),
        "closed {:?} after its last message, before its idle time",
        quiet_since.elapsed()
    );
    running.shutdown().await;
}

/// Asserts that the process's metrics (`running` renders them) come to show `what`: `done`
/// holds of them within 5 s.
async fn shows(running: &portcullis_api::Running, what: &str, done: impl Fn(&str) -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !done(&running.metrics()) {
        assert!(Instant::now() < until, "{what}: {}", running.metrics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Websockets are counted per backend while open (`portcullis_gateway_websockets_open`) and by
/// how each ended (`portcullis_gateway_websockets_closed_total`): closed by the client (over
/// plain TCP, and over TLS without `close_notify`), failed (a reset), idle, revoked (the key
/// deleted) or stopped with the server. Two servers share the backend's name (the metrics are
/// the process's): one with the default idle time of five minutes, so that nothing there ends
/// as idle however slow the machine, and one with an idle time of a second.
#[tokio::test]
async fn websockets_are_counted_while_open_and_by_how_they_ended() {
    const OPEN: &str = "portcullis_gateway_websockets_open";
    const CLOSED: &str = "portcullis_gateway_websockets_closed_total";
    const BACKEND: &str = r#"backend="counted-echo""#;
    const ROUTES: &str = "[{path: /ws/*, backend: counted-echo}]";
    let Setup {
        running,
        base,
        http,
        id,
        key,
        cert,
        _dir,
    } = setup_with_backend(
        ROUTES,
        GatewaySettings::default(),
        "counted-echo",
        None,
        true,
    )
    .await;
    let quick = setup_with_backend(
        ROUTES,
        GatewaySettings {
            websocket_idle_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        "counted-echo",
        None,
        false,
    )
    .await;
    let open = |m: &str| metrics::series(m, OPEN, &[BACKEND]);
    let ended = |m: &str, reason: &str| {
        metrics::series(m, CLOSED, &[BACKEND, &format!(r#"reason="{reason}""#)])
    };
    let secret = key["key"].as_str().unwrap().to_owned();

    // Closed by the client; reset by it (SO_LINGER 0 sends an RST); and over TLS, closed
    // without `close_notify` (the TCP connection dropped under the TLS stream).
    let closing = open_websocket(running.addr, &secret).await;
    let resetting = open_websocket(running.addr, &secret).await;
    let tls_addr = running.tls_addr.expect("a TLS listener");
    let mut over_tls = tls_connect(tls_addr, cert.as_deref().unwrap()).await;
    over_tls
        .write_all(handshake("/ws/echo", &format!("X-API-KEY: {secret}\r\n")).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(over_tls.read(&mut byte).await.unwrap(), 1, "closed early");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    shows(&running, "three websockets open", |m| open(m) == 3.0).await;
    drop(closing);
    resetting.set_zero_linger().unwrap();
    drop(resetting);
    let (tcp, _) = over_tls.into_inner();
    drop(tcp);
    shows(&running, "two closed, one failed, none open", |m| {
        ended(m, "closed") == 2.0 && ended(m, "failed") == 1.0 && open(m) == 0.0
    })
    .await;
    // One that says nothing for its idle time.
    let mut quiet = open_websocket(quick.running.addr, quick.key["key"].as_str().unwrap()).await;
    assert!(
        closed_within_5s(&mut quiet).await,
        "a quiet websocket stayed open"
    );
    shows(&running, "one idle, none open", |m| {
        ended(m, "idle") == 1.0 && open(m) == 0.0
    })
    .await;
    // One whose key is deleted.
    let mut revoked = open_websocket(running.addr, &secret).await;
    delete_key(&http, &base, &id, &key).await;
    assert!(
        closed_within_5s(&mut revoked).await,
        "open after its key was deleted"
    );
    shows(&running, "one revoked, none open", |m| {
        ended(m, "revoked") == 1.0 && open(m) == 0.0
    })
    .await;
    // One still open when the server stops, with a new key: the other server reads the
    // process's metrics once this one has stopped.
    let fresh = create_key(&http, &base, &id, "ws-2").await;
    let _stopped = open_websocket(running.addr, fresh["key"].as_str().unwrap()).await;
    shows(&running, "one open", |m| open(m) == 1.0).await;
    running.shutdown().await;
    let metrics = quick.running.metrics();
    // Each way of ending counted as often as it happened, no more.
    for (reason, count) in [
        ("closed", 2.0),
        ("failed", 1.0),
        ("idle", 1.0),
        ("revoked", 1.0),
        ("stopped", 1.0),
    ] {
        assert_eq!(ended(&metrics, reason), count, "{reason}: {metrics}");
    }
    assert_eq!(open(&metrics), 0.0, "{metrics}");
    quick.running.shutdown().await;
}

/// A TLS connection to `addr` (as `localhost`) trusting only the certificate `trusted`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    trusted: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(trusted.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}
