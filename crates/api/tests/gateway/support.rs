//! A Portcullis server with the gateway configured in front of a test backend, two callers
//! (`dev`, in groups `devs` and `ops`; `outsider`, in none), and clients: reqwest (never
//! following redirects) and a raw HTTP/1.1 one for request targets reqwest would rewrite
//! (`/api//jobs/../jobs`) and for request bodies written chunk by chunk.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::backend::{Backend, MIB};
pub use crate::python::python_status as python;
pub use crate::reply::Reply;

pub const ADMIN_KEY: &str = "gateway-test-admin-key-0123456789abcdef01234567";

/// The route rules of every test server. `echo` is the test backend; `impatient` is the same
/// backend with a 500 ms timeout; `down` is a closed port; `trusting` is the test backend
/// configured to receive the caller's credential, with an assertion audience of its own.
/// `/sites/*` names no backend (forward-auth asks about it); `/tools/{tool}/*` names the
/// Toolforge tool.
const ROUTES: &str = r#"
- path: /api/*
  groups: groups.devs
  backend: echo
- path: /admin/*
  groups: groups.admins
  backend: echo
- path: /public/*
  auth: none
  backend: echo
- path: /slow
  groups: "true"
  backend: impatient
- path: /impatient/*
  groups: "true"
  backend: impatient
- path: /down/*
  groups: "true"
  backend: down
- path: /big
  methods: [GET]
  groups: "true"
  backend: echo
- path: /upload
  methods: [POST, PUT]
  groups: "true"
  backend: echo
- path: /h2/*
  groups: "true"
  backend: echo-h2
- path: /draining/*
  groups: "true"
  backend: echo
- path: /raw/*
  auth: none
  backend: scripted
- path: /tenant/*
  policy: tenant_acme
  backend: echo
- path: /trusting/*
  groups: "true"
  backend: trusting
- path: /cms/*
  groups: 'clientType == "cms"'
  backend: echo
- path: /sites/*
  groups: "true"
- path: /tools/{tool}/*
  groups: "true"
  backend: echo
- path: /orders/*
  methods: [POST, PUT, PATCH, DELETE]
  policy: orders_within_limit
  backend: echo
- path: /ops-orders/*
  methods: [POST]
  groups: groups.ops
  policy: orders_within_limit
  backend: echo
"#;

/// The echo backend's OpenAPI document: `POST /streamed-orders/{id}` is decided by
/// `orders_within_limit` with Rönd's `preventBodyLoad` (the policy never gets the body).
const OPENAPI: &str = r#"{"openapi": "3.0.3", "info": {"title": "echo", "version": "1"}, "paths": {"/streamed-orders/{id}": {"post": {"x-rond": {"requestFlow": {"policyName": "orders_within_limit", "preventBodyLoad": true}}}}}}"#;

/// The Rego policies of `/tenant/*` (decided on a request header, so on every request) and of
/// `/orders/*` (refuses an order over 100 in the JSON body: allowed when the body says nothing,
/// so a body the policy does not see would pass).
const POLICIES: &str = "package policies\ntenant_acme {\n  get_header(\"X-Tenant\", input.request.headers) == \"acme\"\n}\norders_within_limit {\n  not input.request.body.amount > 100\n}\n";

/// How a test server is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether `127.0.0.1/32` is a trusted proxy (otherwise no proxy is trusted).
    pub trusted_loopback: bool,
    /// `gateway.max_body_bytes`.
    pub max_body_bytes: u64,
    /// The backend of `/raw/*` (a closed port when none).
    pub scripted_backend: Option<SocketAddr>,
    /// Whether that backend is spoken to in HTTP/2 (h2c) rather than HTTP/1.1.
    pub scripted_h2: bool,
    /// `gateway.max_header_kb`, in bytes.
    pub max_header_bytes: usize,
    /// `gateway.audit_queue`.
    pub audit_queue: usize,
    /// The Rego policies (one module), [`POLICIES`] by default.
    pub policies: &'static str,
    /// `gateway.idle_timeout_seconds`.
    pub idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trusted_loopback: true,
            max_body_bytes: 256 * MIB,
            scripted_backend: None,
            scripted_h2: false,
            max_header_bytes: 64 * 1024,
            audit_queue: 65_536,
            policies: POLICIES,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A user with an API key.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub id: String,
    /// Username (what `X-Portcullis-User` carries).
    pub username: String,
    /// API key.
    pub key: String,
}

/// A running server, its backend and its callers.
pub struct Env {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's address.
    pub addr: SocketAddr,
    /// The test backend.
    pub backend: Backend,
    /// In groups `devs` and `ops`.
    pub dev: Caller,
    /// In no group.
    pub outsider: Caller,
    /// A client that never follows redirects.
    pub http: reqwest::Client,
    running: Option<portcullis_api::Running>,
    _dir: tempfile::TempDir,
}

/// What the backend received, as it echoed it.
#[derive(Debug, Clone)]
pub struct Echo(pub Value);

impl Echo {
    /// Every value of a request header the backend saw.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0["headers"][name]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one value of a request header the backend saw (panics on several).
    #[track_caller]
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} arrived {} times: {all:?}",
            all.len()
        );
        all.into_iter().next()
    }

    /// The path the backend saw.
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap_or_default()
    }
}

/// A free port on 127.0.0.1 (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Env {
    /// Starts a backend and a server in front of it, and creates the callers.
    pub async fn start(options: Options) -> Self {
        let backend = Backend::start().await;
        let dir = tempfile::tempdir().unwrap();
        let backend_url: axum::http::Uri = backend.url().parse().unwrap();
        let closed: axum::http::Uri = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
        let scripted: axum::http::Uri = match options.scripted_backend {
            Some(addr) => format!("http://{addr}").parse().unwrap(),
            None => closed.clone(),
        };
        let gateway_backend =
            |name: &str, url: &axum::http::Uri, timeout_ms: u64| portcullis_gateway::Backend {
                http2: name.ends_with("-h2") || (name == "scripted" && options.scripted_h2),
                pass_credentials: name == "trusting",
                // One backend with an audience of its own; the others go by their names.
                audience: (name == "trusting").then(|| "https://trusting.example".into()),
                ..portcullis_gateway::Backend::new(
                    name,
                    url.clone(),
                    Duration::from_millis(timeout_ms),
                )
            };
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("tenant.rego"), options.policies).unwrap();
        let openapi_file = dir.path().join("echo-openapi.json");
        std::fs::write(&openapi_file, OPENAPI).unwrap();
        let config = portcullis_api::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}/p.db", dir.path().display()),
            admin_email: "admin@localhost".into(),
            admin_api_key: Some(ADMIN_KEY.into()),
            activity_flush_interval: Duration::from_secs(1),
            tls: None,
            rbac: portcullis_api::RbacSettings {
                routes: yaml_serde::from_str(ROUTES).unwrap(),
                rego_policies_dir: Some(policies),
                openapi: vec![portcullis_api::rbac::routes::OpenApiSource {
                    backend: Some("echo".into()),
                    file: openapi_file,
                }],
                ..Default::default()
            },
            auth: portcullis_api::AuthSettings {
                data_dir: Some(dir.path().to_owned()),
                trusted_proxies: if options.trusted_loopback {
                    vec!["127.0.0.1/32".parse().unwrap()]
                } else {
                    Vec::new()
                },
                ..Default::default()
            },
            gateway: portcullis_api::gateway::GatewaySettings {
                backends: vec![
                    gateway_backend("echo", &backend_url, 10_000),
                    gateway_backend("echo-h2", &backend_url, 10_000),
                    gateway_backend("impatient", &backend_url, 500),
                    gateway_backend("down", &closed, 2_000),
                    gateway_backend("scripted", &scripted, 2_000),
                    gateway_backend("trusting", &backend_url, 10_000),
                ],
                default_backend: None,
                max_body_bytes: options.max_body_bytes,
                aliases: portcullis_gateway::IdentityHeaders {
                    toolforge: true,
                    rond: true,
                },
                audit_allowed_every: 0,
                audit_queue: options.audit_queue,
                max_header_bytes: options.max_header_bytes,
                idle_timeout: options.idle_timeout,
                ..Default::default()
            },
        };
        let running = portcullis_api::start(config).await.unwrap();
        let addr = running.addr;
        let base = format!("http://{addr}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let admin = Admin {
            http: &http,
            base: &base,
        };
        for group in ["devs", "ops", "admins"] {
            admin
                .post("/api/v1/orgs/default/groups", json!({ "name": group }))
                .await;
        }
        let dev = admin.machine("dev@example.com").await;
        let outsider = admin.machine("outsider@example.com").await;
        for group in ["devs", "ops"] {
            admin
                .post(
                    &format!("/api/v1/orgs/default/groups/{group}/members"),
                    json!({ "userId": dev.id }),
                )
                .await;
        }
        Self {
            base,
            addr,
            backend,
            dev,
            outsider,
            http,
            running: Some(running),
            _dir: dir,
        }
    }

    /// The newest records (up to 500) of the audit trail with `action`, and how many it holds.
    pub async fn trail(&self, action: &str) -> (i64, Vec<Value>) {
        let page: Value = self
            .http
            .get(format!(
                "{}/api/v1/audit?action={action}&limit=500",
                self.base
            ))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            page["total"].as_i64().expect("total"),
            page["items"].as_array().expect("items").clone(),
        )
    }

    /// The server's database (SQLite), to read or lock from outside.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}/p.db", self._dir.path().display())
    }

    /// Stops the server as a signal would: lets requests in flight finish.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// A request builder for `path` on the server.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends a prepared request.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        Reply::from(req.send().await.expect("the server answers")).await
    }

    /// `GET path` with an optional key (`X-API-KEY`) and extra headers.
    pub async fn get(&self, path: &str, key: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.request(reqwest::Method::GET, path);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req).await
    }

    /// `GET path` that must reach the backend; returns what the backend received.
    pub async fn echo(&self, path: &str, key: Option<&str>, headers: &[(&str, &str)]) -> Echo {
        Echo(self.get(path, key, headers).await.json_with(200))
    }

    /// The process's metrics in Prometheus text, as the admin reads them.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

struct Admin<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
}

impl Admin<'_> {
    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!((200..300).contains(&status), "POST {path}: {status} {body}");
        body
    }

    async fn machine(&self, email: &str) -> Caller {
        let user = self
            .post(
                "/api/v1/orgs/default/users",
                json!({ "email": email, "kind": "machine", "orgRole": "member" }),
            )
            .await;
        let id = user["id"].as_str().unwrap().to_owned();
        let username = user["username"].as_str().unwrap().to_owned();
        let key = self
            .post(
                &format!("/api/v1/orgs/default/users/{id}/keys"),
                json!({ "name": "gateway-test" }),
            )
            .await;
        Caller {
            id,
            username,
            key: key["key"].as_str().unwrap().to_owned(),
        }
    }
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawReply {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl RawReply {
    /// A response header (the first of that name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: the body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn head(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head
}

/// Sends `method target` exactly as written (no client-side normalisation), with no body.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawReply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut request = head(addr, method, target, headers);
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    read_reply(&mut conn).await
}

/// Sends `method target` with a body of `total` bytes written from a loop in chunked encoding,
/// 64 KiB at a time; nothing but one chunk is ever in memory.
pub async fn raw_upload(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    total: u64,
) -> RawReply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut request = head(addr, method, target, headers);
    request.push_str("transfer-encoding: chunked\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let chunk = vec![b'u'; 64 * 1024];
    let mut left = total;
    // A server that answers early may close before the body is written: read its answer then.
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        let mut piece = format!("{n:x}\r\n").into_bytes();
        piece.extend_from_slice(&chunk[..n]);
        piece.extend_from_slice(b"\r\n");
        if conn.write_all(&piece).await.is_err() {
            return read_reply(&mut conn).await;
        }
        left -= n as u64;
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    read_reply(&mut conn).await
}

/// The claims of a JWT (not verified: the suites that verify use PyJWT).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Sends `request` (a head and only part of the body it announces), sends nothing more, and
/// asserts the answer is a 408 after the idle time `idle` has passed (and not much later).
pub async fn assert_stalled_body_is_a_408(addr: SocketAddr, request: &str, idle: Duration) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        waited >= idle - Duration::from_millis(100) && waited < idle + Duration::from_secs(8),
        "{waited:?}"
    );
}

/// Sends `bytes` exactly as they are and reads the answer until the server closes.
pub async fn raw_bytes(addr: SocketAddr, bytes: &[u8]) -> RawReply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // A server that answers early may close before everything is written: read its answer then.
    let _ = conn.write_all(bytes).await;
    read_reply(&mut conn).await
}

/// Sends `method target` with `body` after a `Content-Length`.
pub async fn raw_with_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawReply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut request = head(addr, method, target, headers);
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    let _ = conn.write_all(&request).await;
    read_reply(&mut conn).await
}

/// Sends `method target` with `body` in chunked encoding, `piece` bytes a chunk.
pub async fn raw_chunked(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    piece: usize,
) -> RawReply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut request = head(addr, method, target, headers).into_bytes();
    request.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    for chunk in body.chunks(piece) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // A server that answers early may close before the body is written: read its answer then.
    let _ = conn.write_all(&request).await;
    read_reply(&mut conn).await
}

async fn read_reply(conn: &mut TcpStream) -> RawReply {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Until the server closes (or resets) the connection.
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    RawReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// This process's resident set: (current, peak) in bytes, from `/proc/self/status`.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak (`VmHWM`) to the current resident set; false when the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The 401 of a route that needs a signed-in caller.
/// Asserts that `reply` is our JSON error with `status` and a message naming each of `parts`.
#[track_caller]
pub fn assert_error_mentions(reply: &Reply, status: u16, parts: &[&str]) {
    let body = reply.json_with(status);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {body}");
    }
}

pub fn unauthenticated_body() -> Value {
    json!({"error": {"code": "unauthenticated", "message": "this route needs a signed-in caller"}})
}

/// Rönd's 403 when a check (here: the groups expression) refuses.
pub fn forbidden_body() -> Value {
    json!({
        "error": "RBAC policy evaluation failed",
        "message": "You do not have permissions to access this feature, contact the administrator for more information.",
        "statusCode": 403,
    })
}

/// Rönd's 404 for a request no route matches.
pub fn not_found_body(method: &str, path: &str) -> Value {
    json!({
        "error": format!("not found oas definition: {method} {path}"),
        "message": "The request doesn't match any known API",
        "statusCode": 404,
    })
}

/// Every identity header name a client might forge, with a forged value.
pub const FORGED: [(&str, &str); 11] = [
    ("x-portcullis-user", "mallory"),
    ("x-portcullis-user-id", "u-mallory"),
    ("x-portcullis-groups", "admins"),
    ("x-portcullis-org", "evil"),
    ("x-portcullis-assertion", "forged.assertion.value"),
    ("x-portcullis-impersonated-by", "mallory"),
    ("x-toolforge-user", "mallory"),
    ("x-toolforge-tool", "evil-tool"),
    ("miauserid", "mallory"),
    ("miausergroups", "admins"),
    ("miauserproperties", "{\"email\":\"mallory@evil.example\"}"),
];

/// A local user's browser session: the `sid` cookie's value.
pub async fn session_cookie(env: &Env) -> String {
    let admin = |path: &str, body: Value| {
        env.http
            .post(format!("{}{path}", env.base))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
    };
    let created: Value = admin(
        "/api/v1/orgs/default/users",
        json!({ "email": "carol@example.com" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let temporary = created["temporaryPassword"].as_str().expect("a password");
    let token = |password: &str, cookies: bool| {
        env.http
            .post(format!("{}/oauth/token", env.base))
            .json(&json!({ "email": "carol@example.com", "password": password, "setCookies": cookies }))
            .send()
    };
    let first: Value = token(temporary, false).await.unwrap().json().await.unwrap();
    let access = first["accessToken"].as_str().expect("a token");
    let changed = env
        .http
        .post(format!("{}/api/v1/me/password", env.base))
        .bearer_auth(access)
        .json(
            &json!({ "currentPassword": temporary, "newPassword": "correct horse battery staple" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    let signed_in = token("correct horse battery staple", true).await.unwrap();
    assert_eq!(signed_in.status(), 200);
    signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("sid="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .next()
        .expect("a sid cookie")
}
