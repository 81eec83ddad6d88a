//! Helpers shared by the HTTP tests: a real server on a real port with its own SQLite file, a
//! small HTTP client that keeps status, headers and body together, and shortcuts for the
//! requests most tests need (creating orgs, users and keys).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::reply::Reply;
use reqwest::Method;
use serde_json::{Value, json};

/// The email of the admin created on first start.
pub const ADMIN_EMAIL: &str = "admin@localhost";

/// A server started for one test, with the admin's key.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bootstrap admin's API key (generated on first start, or the configured one).
    pub admin_key: String,
    /// Shared HTTP client.
    pub http: reqwest::Client,
    running: Option<portcullis_api::Running>,
    config: portcullis_api::ServerConfig,
    dir: tempfile::TempDir,
}

fn config_for(
    dir: &tempfile::TempDir,
    admin_api_key: Option<String>,
) -> portcullis_api::ServerConfig {
    portcullis_api::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.path().display()),
        admin_email: ADMIN_EMAIL.into(),
        admin_api_key,
        activity_flush_interval: Duration::from_millis(100),
        tls: None,
        gateway: Default::default(),
        auth: Default::default(),
        rbac: Default::default(),
    }
}

impl Server {
    /// Starts a fresh server on an empty database; the admin key is the generated one.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config_for(&dir, None);
        let running = portcullis_api::start(config.clone()).await.unwrap();
        let admin_key = running
            .bootstrap_key
            .clone()
            .expect("a fresh database generates the admin's key");
        Self::wrap(running, config, dir, admin_key)
    }

    /// Starts a fresh server with a configured admin key.
    pub async fn start_with_admin_key(key: &str) -> (Self, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let config = config_for(&dir, Some(key.to_owned()));
        let running = portcullis_api::start(config.clone()).await.unwrap();
        let shown = running.bootstrap_key.clone();
        (Self::wrap(running, config, dir, key.to_owned()), shown)
    }

    fn wrap(
        running: portcullis_api::Running,
        config: portcullis_api::ServerConfig,
        dir: tempfile::TempDir,
        admin_key: String,
    ) -> Self {
        Self {
            base: format!("http://{}", running.addr),
            admin_key,
            http: reqwest::Client::new(),
            running: Some(running),
            config,
            dir,
        }
    }

    /// Stops the server and starts it again on the same database (and a new port). Returns the
    /// key the second start showed, if any.
    pub async fn restart(&mut self) -> Option<String> {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        let running = portcullis_api::start(self.config.clone()).await.unwrap();
        let shown = running.bootstrap_key.clone();
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        shown
    }

    /// Stops the server (flushing activity) and removes its database.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        drop(self.dir);
    }

    /// The admin's key, for readability at call sites.
    pub fn admin(&self) -> &str {
        &self.admin_key
    }

    /// Sends a request. `key` goes in `Authorization: Bearer`; a `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        Reply::from(req.send().await.expect("the server answers")).await
    }

    /// Sends a prepared request (for unusual headers or raw bodies).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        Reply::from(req.send().await.expect("the server answers")).await
    }

    /// A request builder for `path`, to add headers or a raw body to.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// `GET path` with `key`.
    pub async fn get(&self, key: &str, path: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    /// `POST path` with `key` and a JSON body.
    pub async fn post(&self, key: &str, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(&body)).await
    }

    /// `POST path` with `key` and no body.
    pub async fn post_empty(&self, key: &str, path: &str) -> Reply {
        self.call(Method::POST, path, Some(key), None).await
    }

    /// `PATCH path` with `key` and a JSON body.
    pub async fn patch(&self, key: &str, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(key), Some(&body)).await
    }

    /// `PUT path` with `key` and a JSON body.
    pub async fn put(&self, key: &str, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(key), Some(&body)).await
    }

    /// `DELETE path` with `key`.
    pub async fn delete(&self, key: &str, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// Creates an org as the admin (who becomes its admin).
    pub async fn create_org(&self, slug: &str) -> Value {
        self.post(self.admin(), "/api/v1/orgs", json!({ "slug": slug }))
            .await
            .json_with(201)
    }

    /// Creates a user in `org` as `key`; returns the user as reads show it (without the
    /// one-time temporary-password fields, which are checked on their own).
    pub async fn create_user(&self, key: &str, org: &str, body: Value) -> Value {
        let kind = body["kind"].as_str().unwrap_or("local").to_owned();
        let mut created = self
            .post(key, &format!("/api/v1/orgs/{org}/users"), body)
            .await
            .json_with(201);
        let fields = created.as_object_mut().unwrap();
        let invited = fields.remove("invited");
        let password = fields.remove("temporaryPassword");
        let expires = fields.remove("temporaryPasswordExpiresAt");
        if kind == "local" {
            assert_eq!(invited, Some(Value::Bool(false)));
            assert!(
                password
                    .as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.len() >= 16)
            );
            assert!(expires.is_some());
        } else {
            assert!(
                password.is_none() && expires.is_none(),
                "only local users get a password"
            );
        }
        created
    }

    /// Creates a key for a machine or SSO user of `org` as `key`; returns the created key body.
    pub async fn create_key_for(&self, key: &str, org: &str, user_id: &str, name: &str) -> Value {
        self.post(
            key,
            &format!("/api/v1/orgs/{org}/users/{user_id}/keys"),
            json!({ "name": name }),
        )
        .await
        .json_with(201)
    }

    /// Creates a machine user with `role` in `org` (as the admin) and an API key for it (bound
    /// to `org`). Returns the user's id and the key.
    pub async fn machine(&self, org: &str, email: &str, role: &str) -> (String, String) {
        let user = self
            .create_user(
                self.admin(),
                org,
                json!({ "email": email, "kind": "machine", "orgRole": role }),
            )
            .await;
        let id = user["id"].as_str().unwrap().to_owned();
        let key = self.create_key_for(self.admin(), org, &id, "ci").await;
        (id, key["key"].as_str().unwrap().to_owned())
    }

    /// The admin's user id.
    pub async fn admin_id(&self) -> String {
        self.get(self.admin(), "/api/v1/me").await.json_with(200)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Reads the audit trail as the admin with a query string (without `?`).
    pub async fn audit(&self, query: &str) -> Value {
        self.get(self.admin(), &format!("/api/v1/audit?{query}"))
            .await
            .json_with(200)
    }
}

/// Asserts that `text` contains `needle`, showing both when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");
}

/// The string values of `field` in a JSON array.
#[track_caller]
pub fn strings(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("an array, got {items}"))
        .iter()
        .map(|i| {
            i[field]
                .as_str()
                .unwrap_or_else(|| panic!("a string '{field}' in {i}"))
                .to_owned()
        })
        .collect()
}

/// Whether a JSON value is a timestamp as the API writes them: RFC 3339 in UTC with exactly
/// three fractional digits (`2026-01-31T12:00:00.120Z`), so that texts sort like instants.
pub fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let b = s.as_bytes();
        b.len() == 24
            && b.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'.',
                23 => c == b'Z',
                _ => c.is_ascii_digit(),
            })
    })
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp as the API writes them
/// (`2026-01-31T12:00:00Z`, `2026-01-31T12:00:00.5Z`, `2026-01-31T12:00:00.123Z`).
#[track_caller]
pub fn millis(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("a timestamp, got {v}"));
    let fail = || -> ! { panic!("not an RFC 3339 UTC timestamp: {text:?}") };
    let body = text.strip_suffix('Z').unwrap_or_else(|| fail());
    let (date, time) = body.split_once('T').unwrap_or_else(|| fail());
    let num = |s: &str| -> i64 { s.parse().unwrap_or_else(|_| fail()) };
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<i64> = hms.split(':').map(num).collect();
    if d.len() != 3 || t.len() != 3 || frac.len() > 9 {
        fail();
    }
    let frac_ms = if frac.is_empty() {
        0
    } else {
        num(&format!("{frac:0<9}")) / 1_000_000
    };
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2]) * 1_000) + frac_ms
}

/// `now + offset` as RFC 3339 UTC text (seconds precision), computed from the system clock.
pub fn rfc3339_from_now(offset: Duration, past: bool) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = if past {
        now.saturating_sub(offset)
    } else {
        now + offset
    }
    .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_clock_helpers_agree_with_known_instants() {
    assert!(is_timestamp(&json!("2026-01-31T12:00:00.120Z")));
    assert!(!is_timestamp(&json!("2026-01-31T12:00:00.12Z")));
    assert!(!is_timestamp(&json!("2026-01-31T12:00:00Z")));
    assert!(!is_timestamp(&json!(null)));
    assert_eq!(millis(&json!("1970-01-01T00:00:00Z")), 0);
    assert_eq!(
        millis(&json!("2025-11-26T09:30:00.123Z")),
        1_764_149_400_123
    );
    assert_eq!(millis(&json!("2000-03-01T00:00:00.5Z")), 951_868_800_500);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let text = rfc3339_from_now(Duration::from_secs(3_600), false);
    assert!(
        (millis(&json!(text)) - now - 3_600_000).abs() < 2_000,
        "{text}"
    );
    let text = rfc3339_from_now(Duration::from_secs(86_400 * 400), true);
    assert!(
        (millis(&json!(text)) - now + 86_400_000 * 400).abs() < 2_000,
        "{text}"
    );
}
