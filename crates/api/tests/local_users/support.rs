//! Helpers of the local-user tests: a real server on a real port with an adjustable clock, a
//! client that never follows redirects and keeps cookies by hand, TOTP codes computed here, a
//! real SMTP server (Python `aiosmtpd`) and a way to run small Python checks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use crate::python::python_status;
pub use crate::reply::Reply;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_model::Clock;
use reqwest::Method;
use serde_json::{Value, json};

/// The email of the admin created on first start.
pub const ADMIN_EMAIL: &str = "admin@localhost";
/// The admin's API key (configured, so the tests know it).
pub const ADMIN_KEY: &str = "pcl_local-users-test-admin-key-0123456789abcdefghij";
/// The password [`Server::active_user`] gives its users.
pub const PASSWORD: &str = "correct horse battery staple";

/// One minute.
pub const MINUTE: Duration = Duration::from_secs(60);
/// One second.
pub const SECOND: Duration = Duration::from_secs(1);

/// How a test's server is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Login attempts per minute from one address.
    pub logins_per_minute: u32,
    /// The port of a local SMTP server to deliver mail to.
    pub smtp_port: Option<u16>,
    /// `auth.public_url` (default: the listen address).
    pub public_url: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            logins_per_minute: 1000,
            smtp_port: None,
            public_url: None,
        }
    }
}

/// A server started for one test.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub authority: String,
    /// The public URL links in mail start with (`base` unless configured).
    pub public: String,
    /// The clock of every time rule of this server.
    pub clock: Clock,
    /// A client that does not follow redirects and keeps no cookies.
    pub http: reqwest::Client,
    smtp: bool,
    running: Option<portcullis_api::Running>,
    dir: tempfile::TempDir,
}

/// A local user just created by the admin.
#[derive(Debug, Clone)]
pub struct Created {
    /// User id.
    pub id: String,
    /// The temporary password shown once.
    pub temporary: String,
    /// The creation answer.
    pub body: Value,
}

/// Tokens of a session.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token (JWT).
    pub access: String,
    /// The refresh token.
    pub refresh: String,
    /// The whole answer.
    pub body: Value,
    /// The session id (`sid` claim).
    pub sid: String,
}

impl Tokens {
    fn of(body: Value) -> Self {
        let access = body["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("an accessToken in {body}"))
            .to_owned();
        let refresh = body["refreshToken"]
            .as_str()
            .unwrap_or_else(|| panic!("a refreshToken in {body}"))
            .to_owned();
        let sid = jwt_part(&access, 1)["sid"]
            .as_str()
            .unwrap_or_else(|| panic!("a sid claim in {access}"))
            .to_owned();
        Self {
            access,
            refresh,
            body,
            sid,
        }
    }

    /// The stage the session is in.
    pub fn stage(&self) -> &str {
        self.body["stage"].as_str().unwrap_or("")
    }
}

impl Server {
    /// A fresh server with the default options.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// A fresh server.
    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::adjustable();
        let smtp = options
            .smtp_port
            .map(|port| portcullis_authn::mail::SmtpSettings {
                host: "127.0.0.1".into(),
                port,
                security: portcullis_authn::mail::SmtpSecurity::None,
                username: None,
                password: None,
            });
        let config = portcullis_api::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}/p.db", dir.path().display()),
            admin_email: ADMIN_EMAIL.into(),
            admin_api_key: Some(ADMIN_KEY.into()),
            activity_flush_interval: Duration::from_millis(100),
            tls: None,
            gateway: Default::default(),
            rbac: Default::default(),
            auth: portcullis_api::AuthSettings {
                clock: clock.clone(),
                smtp,
                data_dir: Some(dir.path().to_path_buf()),
                login_attempts_per_minute: options.logins_per_minute,
                public_url: options.public_url.map(str::to_owned),
                ..Default::default()
            },
        };
        let running = portcullis_api::start(config).await.unwrap();
        let authority = running.addr.to_string();
        Self {
            base: format!("http://{authority}"),
            public: options
                .public_url
                .map_or_else(|| format!("http://{authority}"), str::to_owned),
            authority,
            clock,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            smtp: options.smtp_port.is_some(),
            running: Some(running),
            dir,
        }
    }

    /// Stops the server and removes its files.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        drop(self.dir);
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Moves the server's clock forward to `at` (ms since the epoch); a clock already past it
    /// (real time goes on too) stays where it is.
    pub fn advance_to(&self, at: i64) {
        let now = self.clock.now_millis();
        if at > now {
            self.clock.advance(Duration::from_millis((at - now) as u64));
        }
    }

    /// Like [`Server::advance_to`], for an instant that must still be ahead (a check "just
    /// before" a limit would be meaningless after it).
    #[track_caller]
    pub fn advance_to_before(&self, at: i64) {
        let now = self.clock.now_millis();
        assert!(
            at > now,
            "the test is too slow: {at} is already past ({now})"
        );
        self.clock.advance(Duration::from_millis((at - now) as u64));
    }

    /// The server's time, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// A request builder for `path`.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends a prepared request.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        Reply::from(req.send().await.expect("the server answers")).await
    }

    /// Sends a request with an optional bearer credential and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.request(method, path);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(req).await
    }

    /// `GET path` with a bearer credential.
    pub async fn get(&self, bearer: &str, path: &str) -> Reply {
        self.call(Method::GET, path, Some(bearer), None).await
    }

    /// `POST path` with a bearer credential and a JSON body.
    pub async fn post(&self, bearer: &str, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(bearer), Some(&body))
            .await
    }

    /// `DELETE path` with a bearer credential.
    pub async fn delete(&self, bearer: &str, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(bearer), None).await
    }

    /// `POST path` with a JSON body and no credential.
    pub async fn post_anon(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, None, Some(&body)).await
    }

    /// `GET /api/v1/me` with a bearer credential.
    pub async fn me(&self, bearer: &str) -> Reply {
        self.get(bearer, "/api/v1/me").await
    }

    /// `GET path` authenticated by the `sid` cookie only.
    pub async fn get_with_cookie(&self, sid: &str, path: &str) -> Reply {
        self.send(
            self.request(Method::GET, path)
                .header("cookie", format!("sid={sid}")),
        )
        .await
    }

    /// `POST /oauth/token` with `body`.
    pub async fn token(&self, body: Value) -> Reply {
        self.post_anon("/oauth/token", body).await
    }

    /// A password login (API client).
    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.token(json!({ "email": email, "password": password }))
            .await
    }

    /// A password login that must succeed.
    pub async fn login_ok(&self, email: &str, password: &str) -> Tokens {
        Tokens::of(self.login(email, password).await.json_with(200))
    }

    /// A password login of a browser (`setCookies`) that must succeed; also returns the reply
    /// (with its `Set-Cookie` headers).
    pub async fn browser_login(&self, email: &str, password: &str) -> (Tokens, Reply) {
        let reply = self
            .token(json!({ "email": email, "password": password, "setCookies": true }))
            .await;
        (Tokens::of(reply.json_with(200)), reply)
    }

    /// `POST /refreshtoken` with a refresh token in the body.
    pub async fn refresh(&self, refresh: &str) -> Reply {
        self.post_anon("/refreshtoken", json!({ "refreshToken": refresh }))
            .await
    }

    /// Creates a local user in org `default` as the admin.
    pub async fn create_user(&self, email: &str) -> Created {
        let body = self
            .post(
                ADMIN_KEY,
                "/api/v1/orgs/default/users",
                json!({ "email": email }),
            )
            .await
            .json_with(201);
        Created {
            id: body["id"].as_str().unwrap().to_owned(),
            temporary: body["temporaryPassword"]
                .as_str()
                .unwrap_or_else(|| panic!("a temporaryPassword in {body}"))
                .to_owned(),
            body,
        }
    }

    /// A local user who has chosen [`PASSWORD`]; returns the id. Without SMTP the password is
    /// set through a reset link read from the log transport's outbox (two argon2 hashes instead
    /// of five: the tests run unoptimised); with SMTP, by logging in with the temporary password
    /// and changing it.
    pub async fn active_user(&self, email: &str) -> String {
        let created = self.create_user(email).await;
        if self.smtp {
            let tokens = self.login_ok(email, &created.temporary).await;
            assert_eq!(tokens.stage(), "password_change");
            self.post(
                &tokens.access,
                "/api/v1/me/password",
                json!({ "currentPassword": created.temporary, "newPassword": PASSWORD }),
            )
            .await
            .expect(204);
        } else {
            let token = self.reset_token(email).await;
            self.post_anon(
                "/api/v1/password-reset/confirm",
                json!({ "token": token, "newPassword": PASSWORD }),
            )
            .await
            .expect(204);
        }
        created.id
    }

    /// Asks for a reset link for `email` and returns its token, read from the outbox of the log
    /// mail transport (`<data>/outbox/*.eml`).
    pub async fn reset_token(&self, email: &str) -> String {
        assert!(!self.smtp, "mail goes to the SMTP server here");
        let before = self.outbox();
        self.post_anon("/api/v1/password-reset", json!({ "email": email }))
            .await
            .expect(202);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let fresh: Vec<(String, String)> = self
                .outbox()
                .into_iter()
                .filter(|(name, _)| !before.iter().any(|(b, _)| b == name))
                .filter(|(_, m)| {
                    m.contains(&format!("To: {email}"))
                        && m.contains("Reset your Portcullis password")
                })
                .collect();
            if let Some((_, mail)) = fresh.first() {
                let body = mail_body(mail);
                let link = format!("{}/web-login/reset?token=", self.public);
                let start = body
                    .find(&link)
                    .unwrap_or_else(|| panic!("a reset link {link}… in {body:?}"))
                    + link.len();
                return body[start..].split_whitespace().next().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reset mail for {email} in the outbox within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The messages of the log mail transport: (file name, raw message).
    pub fn outbox(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("outbox")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(e.path()).ok()?;
                name.ends_with(".eml").then_some((name, text))
            })
            .collect()
    }

    /// Changes org `default`'s settings (a merge patch) as the admin; returns the settings.
    pub async fn org_settings(&self, patch: Value) -> Value {
        let body = self
            .call(
                Method::PATCH,
                "/api/v1/orgs/default",
                Some(ADMIN_KEY),
                Some(&json!({ "settings": patch })),
            )
            .await
            .json_with(200);
        body["settings"].clone()
    }

    /// Starts and confirms a TOTP enrollment for the session; returns the secret (base32) and
    /// the recovery codes.
    pub async fn enroll_totp(&self, access: &str) -> (String, Vec<String>) {
        let begun = self
            .post(access, "/api/v1/me/mfa/totp", json!({}))
            .await
            .json_with(201);
        let secret = begun["secret"].as_str().unwrap().to_owned();
        let confirmed = self
            .post(
                access,
                "/api/v1/me/mfa/totp/confirm",
                json!({ "code": self.totp(&secret) }),
            )
            .await
            .json_with(200);
        let codes = confirmed["recoveryCodes"]
            .as_array()
            .unwrap_or_else(|| panic!("recoveryCodes in {confirmed}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        (secret, codes)
    }

    /// The TOTP code of a base32 secret at the server's current time.
    pub fn totp(&self, secret: &str) -> String {
        totp_at(secret, self.clock.now_secs())
    }

    /// Audit records (newest first) of `action`, read by the admin.
    pub async fn audit(&self, action: &str) -> Vec<Value> {
        let body = self
            .get(
                ADMIN_KEY,
                &format!("/api/v1/audit?action={action}&limit=500"),
            )
            .await
            .json_with(200);
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items in {body}"))
            .clone()
    }

    /// The login page for a `redirect` given as raw query text (already encoded).
    pub async fn login_page(&self, raw_query: &str) -> LoginPage {
        let reply = self
            .send(self.request(Method::GET, &format!("/web-login{raw_query}")))
            .await;
        reply.expect(200);
        let cookie = reply
            .cookie("pcl_csrf")
            .unwrap_or_else(|| panic!("a pcl_csrf cookie: {:?}", reply.headers));
        let csrf = hidden(&reply.text, "csrf").expect("a csrf field");
        let redirect = hidden(&reply.text, "redirect").expect("a redirect field");
        LoginPage {
            csrf_cookie: cookie.value,
            csrf,
            redirect,
            reply,
        }
    }

    /// Posts a form to `path` as a browser on this site would (with `Origin`), with these
    /// cookies (`pcl_csrf`, `sid`) and fields.
    pub async fn post_form(&self, path: &str, cookies: &str, fields: &[(&str, &str)]) -> Reply {
        let mut req = self
            .request(Method::POST, path)
            .header("origin", &self.public)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        self.send(req).await
    }

    /// Signs in through the HTML form; returns the answer to the form post.
    pub async fn web_login(&self, email: &str, password: &str, redirect: &str) -> Reply {
        let page = self.login_page("").await;
        self.post_form(
            "/web-login",
            &format!("pcl_csrf={}", page.csrf_cookie),
            &[
                ("email", email),
                ("password", password),
                ("redirect", redirect),
                ("csrf", &page.csrf),
            ],
        )
        .await
    }
}

/// The decoded body of a raw single-part message (7bit, quoted-printable or base64).
pub fn mail_body(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let encoding = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-transfer-encoding:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    match encoding.as_str() {
        "quoted-printable" => {
            let joined = body.replace("=\n", "");
            let bytes = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'='
                    && let Some(Ok(v)) = joined.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
                {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("a base64 body"),
            )
            .into_owned()
        }
        _ => body.to_owned(),
    }
}

/// A login page as served.
#[derive(Debug)]
pub struct LoginPage {
    /// The `pcl_csrf` cookie set with it.
    pub csrf_cookie: String,
    /// The hidden `csrf` field.
    pub csrf: String,
    /// The hidden `redirect` field (HTML entities decoded).
    pub redirect: String,
    /// The page.
    pub reply: Reply,
}

/// The value of the hidden input `name` of an HTML page (entities decoded).
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Percent-encodes everything but unreserved characters (for query values and form fields).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A `Set-Cookie` header, split.
#[derive(Debug, Clone)]
pub struct SetCookie {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// The attributes as sent (`Path=/; Max-Age=…; HttpOnly; …`).
    pub attributes: Vec<String>,
}

impl SetCookie {
    /// Whether an attribute is present (case-insensitive, `Name` or `Name=value`).
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }

    /// The value of an attribute such as `Path` or `Max-Age`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find_map(|a| {
            a.split_once('=')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        })
    }
}

impl Reply {
    /// The `Location` header (panics without one).
    #[track_caller]
    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("a Location header: {} {:?}", self.status, self.headers))
    }

    /// Every `Set-Cookie` header.
    pub fn cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let mut parts = v.split(';').map(str::trim);
                let (name, value) = parts.next()?.split_once('=')?;
                Some(SetCookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    attributes: parts.map(str::to_owned).collect(),
                })
            })
            .collect()
    }

    /// The `Set-Cookie` of `name`, if sent.
    pub fn cookie(&self, name: &str) -> Option<SetCookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }
}

/// Asserts that `text` contains `needle`.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp (`2026-01-31T12:00:00.123Z`).
#[track_caller]
pub fn millis(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("a timestamp, got {v}"));
    let body = text.strip_suffix('Z').expect("UTC");
    let (date, time) = body.split_once('T').expect("a T");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    let (y, m) = (d[0] - i64::from(d[1] <= 2), d[1]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2]) * 1_000 + ms
}

/// One part of a JWT (0 header, 1 payload) as JSON.
#[track_caller]
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("a JWT, got {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("base64url in {token}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JSON in {token}: {e}"))
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes RFC 4648 base32 (upper or lower case, padding optional).
#[track_caller]
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut count, mut out) = (0u64, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("not base32: {text:?}")) as u64;
        bits = (bits << 5) | v;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// The TOTP code of a base32 secret at `unix_secs`.
pub fn totp_at(secret: &str, unix_secs: u64) -> String {
    portcullis_authn::totp::TotpSecret::from_bytes(base32_decode(secret))
        .code_at(unix_secs)
        .unwrap()
}

/// A six-digit code that is not `code`.
pub fn other_code(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 500_000) % 1_000_000)
}

/// Runs `python3 -c script args…`; panics (with stderr) unless it succeeds; returns stdout.
#[track_caller]
pub fn python(script: &str, args: &[&str]) -> String {
    let (ok, out, err) = python_status(script, args);
    assert!(ok, "python failed: {err}");
    out
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An SMTP server (aiosmtpd) that appends every message it receives, decoded, as one JSON line
/// (`to`, `subject`, `from`, `body`) to a file.
const SMTP_SERVER: &str = r#"
import email, json, sys, time
from email import policy
from aiosmtpd.controller import Controller

port, path = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        part = msg.get_body(preferencelist=("plain",)) or msg
        record = {
            "envelopeFrom": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "headerTo": str(msg["to"]),
            "from": str(msg["from"]),
            "subject": str(msg["subject"]),
            "body": part.get_content(),
        }
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"

controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// A real SMTP server for one test; stopped when dropped.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mail.jsonl");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SMTP_SERVER)
            .arg(port.to_string())
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Self {
            port,
            child,
            file,
            _dir: dir,
        }
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Messages received for `to`.
    pub fn messages_to(&self, to: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|r| r == to))
            })
            .collect()
    }

    /// Waits (up to 10 s) until `count` messages for `to` have arrived; returns them.
    pub async fn wait_for(&self, to: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.messages_to(to);
            if found.len() >= count {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no mail for {to} within 10 s; received: {:?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
