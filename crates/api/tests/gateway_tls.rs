//! `https://` backends through the gateway: real TLS backends (rustls, HTTP/2 or 1.1 by ALPN)
//! with certificates from an internal CA made here, and Portcullis in front of them. Shows that
//! the backend's certificate is checked against its own `ca_file` (or the Mozilla roots) and
//! `server_name`, that a client certificate is presented when configured, that HTTP/2 is used
//! when the backend offers it, and that upgrades still go over HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_api::{RbacSettings, ServerConfig};
use portcullis_gateway::proxy::BackendTls;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ADMIN_KEY: &str = "gateway-tls-test-admin-key-0123456789abcdef";
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority that signs leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its key, in PEM and DER.
struct Leaf {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn sign(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        }
    }

    /// A server certificate for the names.
    fn server(&self, names: &[&str]) -> Leaf {
        self.sign(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    fn client(&self, name: &str) -> Leaf {
        self.sign(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl Leaf {
    /// Writes `NAME.pem` and `NAME.key`; returns their paths.
    fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, self.key.serialize_pem()).unwrap();
        (cert, key)
    }
}

// ---------------------------------------------------------------------------------------------
// The TLS backend

/// A running TLS backend: answers every request with what it received as JSON (HTTP version,
/// authority, headers, body length), `/…/slow` after 3 s, and an upgrade request with 101,
/// then echoes bytes.
struct TlsBackend {
    addr: SocketAddr,
    /// TLS handshakes that completed (on the backend's side).
    handshakes: Arc<AtomicUsize>,
    /// `VERSION PATH` of every HTTP request served.
    seen: Arc<Mutex<Vec<String>>>,
}

impl TlsBackend {
    /// Serves with `leaf`, offering `alpn`; with `client_ca`, requires a client certificate
    /// signed by it.
    async fn start(leaf: &Leaf, alpn: &[&[u8]], client_ca: Option<&Ca>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der()));
        let mut config = builder
            .with_single_cert(vec![leaf.cert_der.clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let handshakes = handshakes.clone();
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let handshakes = handshakes.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        let alpn = tls
                            .get_ref()
                            .1
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned());
                        let client_cert = tls.get_ref().1.peer_certificates().is_some();
                        let service = hyper::service::service_fn(move |req| {
                            answer(req, seen.clone(), alpn.clone(), client_cert)
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            handshakes,
            seen,
        }
    }

    /// `https://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// Reads a request body to its end, keeping only the count.
async fn count_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut total = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Some(data) = frame?.data_ref() {
            total += data.len() as u64;
        }
    }
    Ok(total)
}

async fn answer(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<String>>>,
    alpn: Option<String>,
    client_cert: bool,
) -> Result<Response<String>, Infallible> {
    let version = format!("{:?}", req.version());
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push(format!("{version} {path}"));
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(String::new())
            .unwrap());
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut headers: Map<String, Value> = Map::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Value::Array(list) = headers
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::String(value));
        }
    }
    let authority = req.uri().authority().map(|a| a.to_string());
    let body_bytes = count_body(req.into_body()).await.ok();
    let body = json!({
        "version": version,
        "alpn": alpn,
        "clientCertificate": client_cert,
        "path": path,
        "authority": authority,
        "headers": headers,
        "bodyBytes": body_bytes,
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap())
}

// ---------------------------------------------------------------------------------------------
// Portcullis in front

/// A gateway backend named `name` at `url` with `tls`.
fn backend(name: &str, url: &str, tls: BackendTls) -> portcullis_gateway::Backend {
    portcullis_gateway::Backend {
        tls,
        ..portcullis_gateway::Backend::new(name, url.parse().unwrap(), Duration::from_millis(1_500))
    }
}

/// Trust `ca_file` only.
fn trusting(ca_file: &Path) -> BackendTls {
    BackendTls {
        ca_file: Some(ca_file.to_owned()),
        ..Default::default()
    }
}

/// A fresh internal CA and its certificate written to `dir/ca.pem`.
fn internal_ca(dir: &Path) -> (Ca, std::path::PathBuf) {
    let ca = Ca::new("Portcullis test internal CA");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    (ca, ca_file)
}

/// Starts Portcullis with `backends`, each reachable without a credential under `/NAME/*`.
async fn portcullis(
    dir: &Path,
    backends: Vec<portcullis_gateway::Backend>,
) -> Result<portcullis_api::Running, portcullis_api::ServerError> {
    let routes: String = backends
        .iter()
        .map(|b| format!("- {{path: /{0}/*, auth: none, backend: {0}}}\n", b.name))
        .collect();
    portcullis_api::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some(ADMIN_KEY.into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: None,
        gateway: portcullis_api::gateway::GatewaySettings {
            backends,
            max_body_bytes: 1024 * 1024,
            // One worker: each worker keeps pools of its own, and the reuse count below is
            // exact only with one.
            workers: 1,
            ..Default::default()
        },
        auth: Default::default(),
        rbac: RbacSettings {
            routes: yaml_serde::from_str(&routes).unwrap(),
            ..Default::default()
        },
    })
    .await
}

/// Status and body of `GET base+path`.
async fn get(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[track_caller]
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts a 502 with the gateway's JSON error naming the backend.
#[track_caller]
fn assert_bad_gateway((status, text): &(u16, String), backend: &str) {
    assert_eq!(*status, 502, "{text}");
    let body = json(text);
    assert_eq!(body["error"]["code"], "bad_gateway", "{text}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("'{backend}'")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn https_backends_get_http2_when_they_offer_it_and_http11_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = internal_ca(dir.path());
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    let h2 = TlsBackend::start(&leaf, H2_AND_H1, None).await;
    let h1 = TlsBackend::start(&leaf, H1_ONLY, None).await;
    let running = portcullis(
        dir.path(),
        vec![
            backend("h2", &h2.url(), trusting(&ca_file)),
            backend("h1", &h1.url(), trusting(&ca_file)),
            // Same backend, named by host name rather than address.
            backend(
                "byname",
                &format!("https://localhost:{}", h2.addr.port()),
                trusting(&ca_file),
            ),
        ],
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);

    let (status, text) = get(&base, "/h2/jobs?page=2").await;
    assert_eq!(status, 200, "{text}");
    let echo = json(&text);
    assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
    assert_eq!(echo["alpn"], "h2");
    assert_eq!(echo["path"], "/h2/jobs");
    assert_eq!(echo["authority"], h2.addr.to_string(), "{echo}");
    assert!(echo["headers"].get("host").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "http", "{echo}");
    assert!(echo["headers"].get("x-request-id").is_some(), "{echo}");
    assert_eq!(echo["clientCertificate"], false);

    let (status, text) = get(&base, "/h1/jobs").await;
    assert_eq!(status, 200, "{text}");
    let echo = json(&text);
    assert_eq!(echo["version"], "HTTP/1.1", "{echo}");
    assert_eq!(echo["alpn"], "http/1.1");
    assert_eq!(echo["headers"]["host"][0], h1.addr.to_string(), "{echo}");

    let (status, text) = get(&base, "/byname/jobs").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["version"], "HTTP/2.0");

    // HTTP/2 connections are shared: further requests reuse them (one handshake per host
    // name: the address and `localhost`).
    for _ in 0..3 {
        assert_eq!(get(&base, "/h2/again").await.0, 200);
    }
    assert_eq!(h2.handshakes(), 2, "{:?}", h2.seen());
    running.shutdown().await;
}

#[tokio::test]
async fn bodies_stream_over_tls_and_limits_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = internal_ca(dir.path());
    let leaf = ca.server(&["127.0.0.1"]);
    let h2 = TlsBackend::start(&leaf, H2_AND_H1, None).await;
    let h1 = TlsBackend::start(&leaf, H1_ONLY, None).await;
    let running = portcullis(
        dir.path(),
        vec![
            backend("h2", &h2.url(), trusting(&ca_file)),
            backend("h1", &h1.url(), trusting(&ca_file)),
        ],
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    // 900 KiB: many HTTP/2 flow-control windows (64 KiB), under the 1 MiB cap.
    let size = 900 * 1024;
    for name in ["h2", "h1"] {
        let response = http
            .post(format!("{base}/{name}/upload"))
            .body(vec![7u8; size])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["bodyBytes"], size as u64, "{name}: {echo}");
    }
    let response = http
        .post(format!("{base}/h2/upload"))
        .body(vec![7u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // The backend's time limit covers the answer over TLS too.
    let (status, text) = get(&base, "/h2/slow").await;
    assert_eq!(status, 504, "{text}");
    running.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let internal = Ca::new("Portcullis test internal CA");
    let rogue = Ca::new("Someone else's CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, internal.pem()).unwrap();
    // Signed by a CA that is not in ca_file.
    let impostor = TlsBackend::start(&rogue.server(&["127.0.0.1"]), H2_AND_H1, None).await;
    // Signed by the internal CA, but the backend has no ca_file: only the Mozilla roots.
    let internal_only = TlsBackend::start(&internal.server(&["127.0.0.1"]), H2_AND_H1, None).await;
    let running = portcullis(
        dir.path(),
        vec![
            backend("impostor", &impostor.url(), trusting(&ca_file)),
            backend("public", &internal_only.url(), BackendTls::default()),
        ],
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);

    assert_bad_gateway(&get(&base, "/impostor/jobs").await, "impostor");
    assert_bad_gateway(&get(&base, "/public/jobs").await, "public");
    for backend in [&impostor, &internal_only] {
        assert_eq!(backend.handshakes(), 0);
        assert!(backend.seen().is_empty(), "{:?}", backend.seen());
    }
    running.shutdown().await;
}

#[tokio::test]
async fn the_certificate_must_carry_the_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = internal_ca(dir.path());
    // The certificate names a service, not the address the gateway connects to.
    let service = TlsBackend::start(&ca.server(&["jobs.internal"]), H2_AND_H1, None).await;
    let named = |name: Option<&str>| BackendTls {
        ca_file: Some(ca_file.clone()),
        server_name: name.map(str::to_owned),
        ..Default::default()
    };
    let running = portcullis(
        dir.path(),
        vec![
            backend("right", &service.url(), named(Some("jobs.internal"))),
            backend("wrong", &service.url(), named(Some("billing.internal"))),
            backend("address", &service.url(), named(None)),
        ],
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);

    assert_bad_gateway(&get(&base, "/wrong/jobs").await, "wrong");
    assert_bad_gateway(&get(&base, "/address/jobs").await, "address");
    assert!(service.seen().is_empty(), "{:?}", service.seen());
    let (status, text) = get(&base, "/right/jobs").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["version"], "HTTP/2.0");
    assert_eq!(service.seen(), ["HTTP/2.0 /right/jobs"]);
    running.shutdown().await;
}

#[tokio::test]
async fn a_backend_requiring_a_client_certificate_gets_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = internal_ca(dir.path());
    let (client_cert, client_key) = ca.client("portcullis").write(dir.path(), "client");
    // A certificate from another CA: the backend refuses it.
    let (other_cert, other_key) = Ca::new("Someone else's CA")
        .client("portcullis")
        .write(dir.path(), "other");
    let strict = TlsBackend::start(&ca.server(&["127.0.0.1"]), H2_AND_H1, Some(&ca)).await;
    let with_cert = |cert: &Path, key: &Path| BackendTls {
        ca_file: Some(ca_file.clone()),
        client_cert_file: Some(cert.to_owned()),
        client_key_file: Some(key.to_owned()),
        ..Default::default()
    };
    let running = portcullis(
        dir.path(),
        vec![
            backend("mtls", &strict.url(), with_cert(&client_cert, &client_key)),
            backend("anonymous", &strict.url(), trusting(&ca_file)),
            backend(
                "stranger",
                &strict.url(),
                with_cert(&other_cert, &other_key),
            ),
        ],
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);

    assert_bad_gateway(&get(&base, "/anonymous/jobs").await, "anonymous");
    assert_bad_gateway(&get(&base, "/stranger/jobs").await, "stranger");
    assert_eq!(strict.handshakes(), 0);
    assert!(strict.seen().is_empty(), "{:?}", strict.seen());

    let (status, text) = get(&base, "/mtls/jobs").await;
    assert_eq!(status, 200, "{text}");
    let echo = json(&text);
    assert_eq!(echo["clientCertificate"], true, "{echo}");
    assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
    assert_eq!(strict.seen(), ["HTTP/2.0 /mtls/jobs"]);
    running.shutdown().await;
}

#[tokio::test]
async fn an_upgrade_to_an_http2_capable_backend_goes_over_http11() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = internal_ca(dir.path());
    let backend_tls = TlsBackend::start(&ca.server(&["127.0.0.1"]), H2_AND_H1, None).await;
    let running = portcullis(
        dir.path(),
        vec![backend("ws", &backend_tls.url(), trusting(&ca_file))],
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    // An ordinary request first: the pool then holds an HTTP/2 connection to this backend,
    // which the upgrade must not use.
    let (status, text) = get(&base, "/ws/plain").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["version"], "HTTP/2.0");

    let mut conn = TcpStream::connect(running.addr).await.unwrap();
    conn.write_all(
        b"GET /ws/echo HTTP/1.1\r\nHost: portcullis\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
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
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for message in ["hello", "over TLS to the backend"] {
        conn.write_all(message.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(buf, message.as_bytes());
    }
    assert_eq!(
        backend_tls.seen(),
        ["HTTP/2.0 /ws/plain", "HTTP/1.1 /ws/echo"]
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_ca_file_stops_the_start_naming_backend_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let Err(e) = portcullis(
        dir.path(),
        vec![backend("jobs", "https://127.0.0.1:9", trusting(&missing))],
    )
    .await
    else {
        panic!("started with a missing ca_file");
    };
    let message = e.to_string();
    assert!(message.contains("'jobs'"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
}

/// A backend that accepts the TCP connection and never answers the TLS handshake: a request
/// with a body (whose backend timeout starts only once the body is being sent) gets a 502
/// once the handshake's time is over, rather than waiting as long as the client does.
#[tokio::test]
async fn a_backend_that_never_finishes_its_tls_handshake_is_a_502() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, ca_file) = internal_ca(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    // Holds every connection open, reading and writing nothing.
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let running = portcullis(
        dir.path(),
        vec![backend(
            "silent",
            &format!("https://{silent}"),
            trusting(&ca_file),
        )],
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        reqwest::Client::new()
            .post(format!("http://{}/silent/upload", running.addr))
            .body(vec![7u8; 1024])
            .send(),
    )
    .await
    .expect("an answer before the client gives up")
    .unwrap();
    let waited = started.elapsed();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_bad_gateway(&(status, text), "silent");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    held.abort();
    running.shutdown().await;
}
