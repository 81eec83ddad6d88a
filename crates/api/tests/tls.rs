//! TLS termination: the TLS listener serves with the configured certificate beside the plain
//! listener, and a certificate replaced on disk is served to the next connection without a
//! restart. A certificate that is not for the key is refused: at the start, by not starting;
//! on a reload, by serving the previous pair until the matching key is written. A stop does
//! not wait for a connection that never finishes its handshake. Backends learn the client's
//! scheme from the connection: `X-Forwarded-Proto: https` over the TLS listener. A slow reader
//! gets a large answer whole.

use std::sync::Arc;
use std::time::Duration;

use portcullis_api::ServerConfig;
use portcullis_api::tls::TlsSettings;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn write_cert(dir: &std::path::Path) -> Vec<u8> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().to_vec()
}

/// A new certificate and its key, in PEM (not written), and the certificate in DER.
fn new_pair() -> (String, String, Vec<u8>) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    (
        generated.cert.pem(),
        generated.signing_key.serialize_pem(),
        generated.cert.der().to_vec(),
    )
}

/// Starts a server with a TLS listener serving the certificate in `dir`, re-read every
/// `reload_interval`.
async fn start_with_tls(
    dir: &std::path::Path,
    reload_interval: Duration,
) -> portcullis_api::Running {
    try_start_with_tls(dir, reload_interval)
        .await
        .map_err(|e| e.to_string())
        .unwrap()
}

async fn try_start_with_tls(
    dir: &std::path::Path,
    reload_interval: Duration,
) -> Result<portcullis_api::Running, portcullis_api::ServerError> {
    portcullis_api::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some("tls-test-admin-key-0123456789abcdefghij".into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: Some(TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            reload_interval,
        }),
        gateway: Default::default(),
        auth: Default::default(),
        rbac: Default::default(),
    })
    .await
}

/// Fetches `/healthz` over TLS trusting only `trusted`; returns the status line and the
/// certificate the server presented.
async fn healthz(addr: std::net::SocketAddr, trusted: &[u8]) -> (String, Vec<u8>) {
    try_healthz(addr, trusted)
        .await
        .expect("TLS handshake with the trusted certificate")
}

/// A TLS connection to `addr` (as `localhost`) trusting only the certificate `trusted`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    trusted: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    tls_connect_with(addr, trusted, None).await
}

/// [`tls_connect`], with the socket's receive buffer set to `recv_buffer` bytes if given.
async fn tls_connect_with(
    addr: std::net::SocketAddr,
    trusted: &[u8],
    recv_buffer: Option<u32>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(trusted.to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// [`healthz`], with a failed handshake as an error.
async fn try_healthz(
    addr: std::net::SocketAddr,
    trusted: &[u8],
) -> Result<(String, Vec<u8>), std::io::Error> {
    let mut tls = tls_connect(addr, trusted).await?;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.ok();
    let text = String::from_utf8_lossy(&answer).into_owned();
    Ok((text.lines().next().unwrap_or("").to_owned(), presented))
}

#[tokio::test]
async fn tls_serves_the_certificate_and_picks_up_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let running = start_with_tls(dir.path(), Duration::from_millis(100)).await;
    let tls_addr = running.tls_addr.expect("a TLS listener");

    let (status, presented) = healthz(tls_addr, &first).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(presented, first);
    // The plain listener stays (loopback, behind another proxy).
    let plain = reqwest::get(format!("http://{}/healthz", running.addr))
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);

    // A new certificate on disk is served to the next connection.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = write_cert(dir.path());
    let mut served = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut roots_ok = true;
        let attempt = tokio::spawn({
            let second = second.clone();
            async move { healthz(tls_addr, &second).await }
        })
        .await;
        match attempt {
            Ok((status, presented)) => {
                assert_eq!(status, "HTTP/1.1 200 OK");
                served = presented;
            }
            Err(_) => roots_ok = false,
        }
        if roots_ok && served == second {
            break;
        }
    }
    assert_eq!(served, second, "the replaced certificate was not picked up");
    running.shutdown().await;
}

#[tokio::test]
async fn a_certificate_that_is_not_for_the_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = new_pair();
    let (_, key, _) = new_pair();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let error = match try_start_with_tls(dir.path(), Duration::from_secs(60)).await {
        Ok(running) => {
            running.shutdown().await;
            panic!("the server started with a certificate that is not for its key");
        }
        Err(e) => e.to_string(),
    };
    assert!(error.contains("is not for the private key"), "{error}");
    for file in ["cert.pem", "key.pem"] {
        let path = dir.path().join(file);
        assert!(error.contains(&*path.to_string_lossy()), "{error}");
    }
}

#[tokio::test]
async fn a_new_certificate_is_served_only_once_its_key_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let running = start_with_tls(dir.path(), Duration::from_millis(100)).await;
    let tls_addr = running.tls_addr.expect("a TLS listener");
    assert_eq!(healthz(tls_addr, &first).await.1, first);

    // The certificate is replaced, its key not yet: the previous pair stays in use, and every
    // handshake works (a mismatched pair fails each one with a bad signature).
    let (cert, key, second) = new_pair();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = try_healthz(tls_addr, &first).await;
        let (status, presented) = answer.expect("a handshake while the key is not written yet");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(presented, first, "the previous certificate stays in use");
    }

    // The key is written: the new certificate is served.
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let mut served = first.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Until the reload, the server presents the first certificate, which this client
        // does not trust.
        if let Ok((status, presented)) = try_healthz(tls_addr, &second).await {
            assert_eq!(status, "HTTP/1.1 200 OK");
            served = presented;
            break;
        }
    }
    assert_eq!(served, second, "the new pair was not picked up");
    running.shutdown().await;
}

#[tokio::test]
async fn a_stop_does_not_wait_for_an_unfinished_handshake() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path());
    let running = start_with_tls(dir.path(), Duration::from_secs(60)).await;
    let tls_addr = running.tls_addr.expect("a TLS listener");
    // A client that connects and never says hello.
    let mut silent = TcpStream::connect(tls_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("the stop finished without waiting out the 30 s handshake limit");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The silent connection was closed.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the unfinished connection is closed by the stop"
    );
}

/// A backend that answers every request with the head it received, as its body.
async fn head_echo_backend() -> std::net::SocketAddr {
    keep_alive_backend(|request| request.to_vec()).await
}

/// A backend answering every request on a connection with `size` bytes.
async fn bulk_backend(size: usize) -> std::net::SocketAddr {
    let body = vec![b'b'; size];
    keep_alive_backend(move |_| body.clone()).await
}

/// A plain HTTP/1.1 backend answering each request head on a kept-alive connection with a 200
/// whose body `answer` makes from the head.
async fn keep_alive_backend(
    answer: impl Fn(&[u8]) -> Vec<u8> + Clone + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let request: Vec<u8> = head.drain(..end + 4).collect();
                        let body = answer(&request);
                        let start =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        if conn.write_all(start.as_bytes()).await.is_err()
                            || conn.write_all(&body).await.is_err()
                        {
                            return;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// Starts a server with a TLS listener (the certificate in `dir`) whose `/open/*` goes to the
/// plain HTTP backend at `backend` without a credential.
async fn start_with_open_backend(
    dir: &std::path::Path,
    backend: std::net::SocketAddr,
) -> portcullis_api::Running {
    portcullis_api::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some("tls-test-admin-key-0123456789abcdefghij".into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: Some(TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            reload_interval: Duration::from_secs(60),
        }),
        gateway: portcullis_api::gateway::GatewaySettings {
            backends: vec![portcullis_gateway::Backend::new(
                "echo",
                format!("http://{backend}").parse().unwrap(),
                Duration::from_secs(5),
            )],
            ..Default::default()
        },
        auth: Default::default(),
        rbac: portcullis_api::RbacSettings {
            routes: yaml_serde::from_str(
                "[{path: /open/*, auth: none, backend: echo}, {path: /api/plugin/*, auth: none, backend: echo}]",
            )
            .unwrap(),
            ..Default::default()
        },
    })
    .await
    .map_err(|e| e.to_string())
    .unwrap()
}

/// A large answer on the raw lane over TLS, to a client that reads slowly throughout: it arrives
/// whole and in time (the end of it is sent before the lane waits for the next request: the
/// TLS layer keeps what the socket did not take until it is written to or flushed).
#[tokio::test]
async fn a_large_answer_over_tls_arrives_whole_when_the_client_reads_slowly() {
    const SIZE: usize = 2 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path());
    let running = start_with_open_backend(dir.path(), bulk_backend(SIZE).await).await;
    let tls_addr = running.tls_addr.expect("a TLS listener");
    let mut tls = tls_connect_with(tls_addr, &cert, Some(16 * 1024))
        .await
        .unwrap();
    tls.write_all(b"GET /open/bulk HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut got = Vec::with_capacity(SIZE + 1024);
    let mut buf = vec![0u8; 16 * 1024];
    let whole = |got: &[u8]| {
        got.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|end| got.len() >= end + 4 + SIZE)
    };
    // The idle time (30 s) is far longer: only an answer sent whole arrives within this.
    let reading = tokio::time::timeout(Duration::from_secs(10), async {
        while !whole(&got) {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            // Slower than the server writes: it waits on the client throughout.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    let head = String::from_utf8_lossy(&got[..end]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        reading.is_ok(),
        "{} of {SIZE} body bytes came",
        got.len() - end - 4
    );
    assert_eq!(got.len(), end + 4 + SIZE, "{head}");
    running.shutdown().await;
}

#[tokio::test]
async fn backends_learn_the_scheme_of_the_clients_connection() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path());
    let running = start_with_open_backend(dir.path(), head_echo_backend().await).await;
    let tls_addr = running.tls_addr.expect("a TLS listener");
    let proto = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("x-forwarded-proto: "))
            .map(str::to_owned)
    };
    // Over TLS: the raw lane (no body) and hyper (a body) alike, and a path under a
    // control-plane prefix that the control plane does not serve (its router hands it over).
    for request in [
        "GET /open/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "POST /open/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        "GET /api/plugin/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ] {
        let answer = tls_exchange(tls_addr, &cert, request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(proto(&answer).as_deref(), Some("https"), "{answer}");
    }
    // The plain listener (no https public URL): http.
    let mut plain = TcpStream::connect(running.addr).await.unwrap();
    plain
        .write_all(b"GET /open/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).await.unwrap();
    assert_eq!(proto(&answer).as_deref(), Some("http"), "{answer}");
    running.shutdown().await;
}

/// Sends `request` over TLS trusting only `trusted`; returns the whole answer as text.
async fn tls_exchange(addr: std::net::SocketAddr, trusted: &[u8], request: &str) -> String {
    let mut tls = tls_connect(addr, trusted).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.ok();
    String::from_utf8_lossy(&answer).into_owned()
}
