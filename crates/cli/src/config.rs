//! Configuration: embedded defaults, then a YAML file (`--config` / `PORTCULLIS_CONFIG`), then
//! environment variables. Every error names the key (or variable) that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_api::ServerConfig;
use serde::Deserialize;

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// The key (`admin.api_key`) or environment variable (`PORTCULLIS_LISTEN`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A websocket idle time set at `key` (the gateway's, or a backend's): a second to a day.
fn websocket_idle_time(key: impl Into<String>, seconds: u64) -> Result<Duration, ConfigError> {
    if (1..=86_400).contains(&seconds) {
        Ok(Duration::from_secs(seconds))
    } else {
        Err(ConfigError::new(
            key,
            format!("{seconds} is out of range: 1 to 86400 seconds (a day)"),
        ))
    }
}

/// The YAML file. Every key is optional; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    admin: Option<AdminConfig>,
    log: Option<LogConfig>,
    activity_flush_seconds: Option<u64>,
    permission: Option<PermissionConfig>,
    rego: Option<RegoConfig>,
    auth: Option<AuthConfig>,
    mail: Option<MailConfig>,
    routes: Option<Vec<portcullis_authz::route_rules::RouteSpec>>,
    gateway: Option<GatewayConfig>,
    tls: Option<TlsConfig>,
    openapi_routes: Option<Vec<OpenApiRoutes>>,
}

/// `tls:`: a TLS listener beside the plain one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsConfig {
    listen: String,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// `gateway:`: backends and identity headers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayConfig {
    backends: Option<Vec<BackendConfig>>,
    default_backend: Option<String>,
    max_body_mb: Option<u64>,
    policy_body_kb: Option<u64>,
    identity_headers: Option<IdentityHeadersConfig>,
    audit_allowed_every: Option<u64>,
    audit_queue: Option<usize>,
    access_log: Option<bool>,
    workers: Option<usize>,
    max_header_kb: Option<usize>,
    underscores_in_headers: Option<bool>,
    idle_timeout_seconds: Option<u64>,
    assertion_seconds: Option<u64>,
    max_connections: Option<usize>,
    http2_max_streams: Option<u32>,
    websocket_idle_timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendConfig {
    name: String,
    url: String,
    timeout_ms: Option<u64>,
    http2: Option<bool>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    server_name: Option<String>,
    pass_credentials: Option<bool>,
    audience: Option<String>,
    websocket_idle_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityHeadersConfig {
    toolforge: Option<bool>,
    rond: Option<bool>,
}

/// `openapi_routes:`: a backend's OpenAPI document whose `x-rond` / `x-permission` extensions
/// become routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenApiRoutes {
    backend: Option<String>,
    file: PathBuf,
}

/// `auth:`: sessions, tokens and the login endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfig {
    public_url: Option<String>,
    secret_key: Option<String>,
    access_token_minutes: Option<u64>,
    login_attempts_per_minute: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
}

/// `mail:`: the sender and, optionally, an SMTP server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MailConfig {
    from: Option<String>,
    smtp: Option<portcullis_authn::mail::SmtpSettings>,
}

/// `rego:`: the Rönd-style policies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegoConfig {
    policies_dir: Option<PathBuf>,
    eval_timeout_ms: Option<u64>,
}

/// `permission:` as in Backstage's app-config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionConfig {
    rbac: Option<RbacConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RbacConfig {
    admin: Option<RbacAdminConfig>,
    #[serde(rename = "policies-csv-file")]
    policies_csv_file: Option<PathBuf>,
    #[serde(rename = "conditionalPoliciesFile")]
    conditional_policies_file: Option<PathBuf>,
    #[serde(rename = "policyFileReload")]
    policy_file_reload: Option<bool>,
    #[serde(rename = "maxDepth")]
    max_depth: Option<usize>,
    plugins: Option<Vec<portcullis_api::rbac::plugins::PluginSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RbacAdminConfig {
    users: Option<Vec<NamedRef>>,
    #[serde(rename = "superUsers")]
    super_users: Option<Vec<NamedRef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedRef {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminConfig {
    email: Option<String>,
    api_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogConfig {
    format: Option<String>,
    level: Option<String>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the server needs.
    pub server: ServerConfig,
    /// The data directory (the SQLite file lives here by default).
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `portcullis=debug`, …).
    pub log_level: String,
}

/// Reads the configuration: defaults, then `file` (if any), then `env`.
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?;
            if text.trim().is_empty() {
                FileConfig::default()
            } else {
                yaml_serde::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?
            }
        }
        None => FileConfig::default(),
    };
    let admin = file.admin.unwrap_or_default();
    let log = file.log.unwrap_or_default();

    let pick = |var: &str,
                key: &'static str,
                from_file: Option<String>,
                default: &str|
     -> (String, String) {
        match env(var) {
            Some(v) => (v, var.to_owned()),
            None => (
                from_file.unwrap_or_else(|| default.to_owned()),
                key.to_owned(),
            ),
        }
    };

    let (listen, key) = pick("PORTCULLIS_LISTEN", "listen", file.listen, "127.0.0.1:8080");
    let listen: SocketAddr = listen.parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("'{listen}' is not an address like 127.0.0.1:8080"),
        )
    })?;

    let data_dir = match env("PORTCULLIS_DATA_DIR") {
        Some(d) if d.is_empty() => {
            return Err(ConfigError::new("PORTCULLIS_DATA_DIR", "must not be empty"));
        }
        Some(d) => PathBuf::from(d),
        None => file
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./portcullis-data")),
    };

    let (database_url, key) = pick(
        "PORTCULLIS_DATABASE_URL",
        "database_url",
        file.database_url,
        "",
    );
    let database_url = if database_url.is_empty() {
        format!("sqlite://{}", data_dir.join("portcullis.db").display())
    } else if database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://")
    {
        database_url
    } else {
        return Err(ConfigError::new(
            key,
            "must start with sqlite:// or postgres://",
        ));
    };

    let (admin_email, key) = pick(
        "PORTCULLIS_ADMIN_EMAIL",
        "admin.email",
        admin.email,
        "admin@localhost",
    );
    let at = admin_email.find('@');
    if at.is_none_or(|i| i == 0 || i + 1 == admin_email.len())
        || admin_email.contains(char::is_whitespace)
    {
        return Err(ConfigError::new(
            key,
            format!("'{admin_email}' is not an email address"),
        ));
    }

    let (admin_api_key, key) = match env("PORTCULLIS_ADMIN_API_KEY") {
        Some(k) => (Some(k), "PORTCULLIS_ADMIN_API_KEY"),
        None => (admin.api_key, "admin.api_key"),
    };
    if let Some(k) = &admin_api_key {
        if k.chars().count() < 32 {
            return Err(ConfigError::new(key, "must be at least 32 characters long"));
        }
        if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(
                key,
                "must not contain spaces or control characters",
            ));
        }
    }

    let (format, key) = pick("PORTCULLIS_LOG_FORMAT", "log.format", log.format, "text");
    let log_format = match format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::new(
                key,
                format!("'{other}' is not one of: text, json"),
            ));
        }
    };
    let (log_level, _) = pick("PORTCULLIS_LOG_LEVEL", "log.level", log.level, "info");

    let flush = match env("PORTCULLIS_ACTIVITY_FLUSH_SECONDS") {
        Some(v) => v.parse::<u64>().map_err(|_| {
            ConfigError::new(
                "PORTCULLIS_ACTIVITY_FLUSH_SECONDS",
                format!("'{v}' is not a whole number"),
            )
        })?,
        None => file.activity_flush_seconds.unwrap_or(10),
    };
    if !(1..=3600).contains(&flush) {
        return Err(ConfigError::new(
            "activity_flush_seconds",
            "must be between 1 and 3600",
        ));
    }

    let rbac = file.permission.and_then(|p| p.rbac).unwrap_or_default();
    let admin_refs = |list: Option<Vec<NamedRef>>, key: &str| -> Result<Vec<String>, ConfigError> {
        list.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                portcullis_model::EntityRef::parse(&r.name, portcullis_model::Expect::Member)
                    .map(|e| e.as_str().to_owned())
                    .map_err(|e| ConfigError::new(format!("{key}[{i}].name"), e.0))
            })
            .collect()
    };
    let admin = rbac.admin.unwrap_or_default();
    let rbac_settings = portcullis_api::RbacSettings {
        admin_users: admin_refs(admin.users, "permission.rbac.admin.users")?,
        super_users: admin_refs(admin.super_users, "permission.rbac.admin.superUsers")?,
        policies_csv_file: rbac.policies_csv_file,
        conditional_policies_file: rbac.conditional_policies_file,
        policy_file_reload: rbac.policy_file_reload.unwrap_or(false),
        max_depth: rbac.max_depth,
        plugins: rbac.plugins.unwrap_or_default(),
        rego_policies_dir: file.rego.as_ref().and_then(|r| r.policies_dir.clone()),
        routes: file.routes.clone().unwrap_or_default(),
        openapi: file
            .openapi_routes
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|o| portcullis_api::rbac::routes::OpenApiSource {
                        backend: o.backend.clone(),
                        file: o.file.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        rego_time_limit: match file.rego.as_ref().and_then(|r| r.eval_timeout_ms) {
            Some(0) => {
                return Err(ConfigError::new(
                    "rego.eval_timeout_ms",
                    "must be at least 1",
                ));
            }
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(Duration::from_millis(100)),
        },
    };
    for (i, plugin) in rbac_settings.plugins.iter().enumerate() {
        for (j, perm) in plugin.permissions.iter().enumerate() {
            if !matches!(
                perm.policy.as_str(),
                "create" | "read" | "update" | "delete" | "use"
            ) {
                return Err(ConfigError::new(
                    format!("permission.rbac.plugins[{i}].permissions[{j}].policy"),
                    format!(
                        "'{}' is not one of create, read, update, delete, use",
                        perm.policy
                    ),
                ));
            }
        }
    }

    let auth_file = file.auth.unwrap_or_default();
    let mail_file = file.mail.unwrap_or_default();
    let mut trusted_proxies = Vec::new();
    for (i, p) in auth_file
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        trusted_proxies.push(
            p.parse()
                .map_err(|e: String| ConfigError::new(format!("auth.trusted_proxies[{i}]"), e))?,
        );
    }
    let public_url = env("PORTCULLIS_PUBLIC_URL").or(auth_file.public_url);
    if let Some(url) = &public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ConfigError::new(
            "auth.public_url",
            format!("'{url}' must start with http:// or https://"),
        ));
    }
    let secret_key = env("PORTCULLIS_SECRET_KEY").or(auth_file.secret_key);
    if let Some(key) = &secret_key {
        portcullis_authn::SecretBox::from_base64(key)
            .map_err(|e| ConfigError::new("auth.secret_key", e.to_string()))?;
    }
    let access_minutes = auth_file.access_token_minutes.unwrap_or(15);
    if !(1..=1440).contains(&access_minutes) {
        return Err(ConfigError::new(
            "auth.access_token_minutes",
            format!("must be between 1 and 1440, got {access_minutes}"),
        ));
    }
    let from = mail_file
        .from
        .unwrap_or_else(|| "Portcullis <portcullis@localhost>".into());
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(ConfigError::new(
            "mail.from",
            format!("'{from}' is not a mail address"),
        ));
    }
    let gateway_file = file.gateway.unwrap_or_default();
    let mut backends = Vec::new();
    for (i, b) in gateway_file
        .backends
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let url: http::Uri = b.url.parse().map_err(|e| {
            ConfigError::new(
                format!("gateway.backends[{i}].url"),
                format!("'{}': {e}", b.url),
            )
        })?;
        let https = match url.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(ConfigError::new(
                    format!("gateway.backends[{i}].url"),
                    format!("'{}' must be http(s)://host[:port][/prefix]", b.url),
                ));
            }
        };
        if url.authority().is_none() {
            return Err(ConfigError::new(
                format!("gateway.backends[{i}].url"),
                format!("'{}' must be http(s)://host[:port][/prefix]", b.url),
            ));
        }
        let tls = portcullis_gateway::proxy::BackendTls {
            ca_file: b.ca_file,
            client_cert_file: b.client_cert_file,
            client_key_file: b.client_key_file,
            server_name: b.server_name,
        };
        // TLS settings on a plain backend would be silently unused: refuse them instead.
        if !https {
            let given = [
                ("ca_file", tls.ca_file.is_some()),
                ("client_cert_file", tls.client_cert_file.is_some()),
                ("client_key_file", tls.client_key_file.is_some()),
                ("server_name", tls.server_name.is_some()),
            ];
            if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    format!("gateway.backends[{i}].{key}"),
                    format!("needs an https:// url, not '{}'", b.url),
                ));
            }
        }
        if https && b.http2 == Some(true) {
            return Err(ConfigError::new(
                format!("gateway.backends[{i}].http2"),
                "is h2c for http:// backends; over https:// HTTP/2 is chosen by ALPN",
            ));
        }
        match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    format!("gateway.backends[{i}].client_key_file"),
                    "is required with client_cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("gateway.backends[{i}].client_cert_file"),
                    "is required with client_key_file",
                ));
            }
            _ => {}
        }
        if let Some(name) = &tls.server_name
            && name.parse::<std::net::IpAddr>().is_err()
            && (name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(ConfigError::new(
                format!("gateway.backends[{i}].server_name"),
                format!("'{name}' is not a host name or IP address"),
            ));
        }
        if b.audience.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(ConfigError::new(
                format!("gateway.backends[{i}].audience"),
                "must not be empty (leave it out for the backend's name)",
            ));
        }
        let websocket_idle = b
            .websocket_idle_timeout_seconds
            .map(|seconds| {
                websocket_idle_time(
                    format!("gateway.backends[{i}].websocket_idle_timeout_seconds"),
                    seconds,
                )
            })
            .transpose()?;
        backends.push(portcullis_gateway::Backend {
            name: b.name,
            url,
            timeout: Duration::from_millis(b.timeout_ms.unwrap_or(30_000).max(1)),
            http2: b.http2.unwrap_or(false),
            tls,
            pass_credentials: b.pass_credentials.unwrap_or(false),
            audience: b.audience,
            websocket_idle,
        });
    }
    let aliases = gateway_file.identity_headers.unwrap_or_default();
    let audit_queue = gateway_file.audit_queue.unwrap_or(65_536);
    if audit_queue == 0 {
        return Err(ConfigError::new(
            "gateway.audit_queue",
            "must be at least 1 (records waiting for the database)",
        ));
    }
    let assertion_seconds = gateway_file.assertion_seconds.unwrap_or(60);
    if !(10..=3600).contains(&assertion_seconds) {
        return Err(ConfigError::new(
            "gateway.assertion_seconds",
            format!("{assertion_seconds} is out of range: 10 to 3600 seconds"),
        ));
    }
    let idle_timeout = gateway_file.idle_timeout_seconds.unwrap_or(30);
    if !(1..=3600).contains(&idle_timeout) {
        return Err(ConfigError::new(
            "gateway.idle_timeout_seconds",
            format!("{idle_timeout} is out of range: 1 to 3600 seconds"),
        ));
    }
    let websocket_idle = websocket_idle_time(
        "gateway.websocket_idle_timeout_seconds",
        gateway_file
            .websocket_idle_timeout_seconds
            .unwrap_or(portcullis_gateway::DEFAULT_UPGRADED_IDLE.as_secs()),
    )?;
    if gateway_file.max_connections == Some(0) {
        return Err(ConfigError::new(
            "gateway.max_connections",
            "must be at least 1 (leave it out to derive it from the open-file limit)",
        ));
    }
    let http2_max_streams = gateway_file.http2_max_streams.unwrap_or(128);
    if !(1..=1000).contains(&http2_max_streams) {
        return Err(ConfigError::new(
            "gateway.http2_max_streams",
            format!("{http2_max_streams} is out of range: 1 to 1000 streams"),
        ));
    }
    let max_body_bytes = gateway_file.max_body_mb.unwrap_or(64).max(1) * 1024 * 1024;
    let policy_body_bytes = gateway_file
        .policy_body_kb
        .unwrap_or(1024)
        .saturating_mul(1024);
    if policy_body_bytes == 0 || policy_body_bytes > max_body_bytes {
        return Err(ConfigError::new(
            "gateway.policy_body_kb",
            format!(
                "{} is out of range: 1 to gateway.max_body_mb ({} KiB)",
                policy_body_bytes / 1024,
                max_body_bytes / 1024
            ),
        ));
    }
    let gateway = portcullis_api::gateway::GatewaySettings {
        backends,
        default_backend: gateway_file.default_backend,
        max_body_bytes,
        policy_body_bytes,
        aliases: portcullis_gateway::IdentityHeaders {
            toolforge: aliases.toolforge.unwrap_or(false),
            rond: aliases.rond.unwrap_or(false),
        },
        audit_allowed_every: gateway_file.audit_allowed_every.unwrap_or(0),
        audit_queue,
        access_log: gateway_file.access_log.unwrap_or(true),
        workers: gateway_file.workers.unwrap_or(0),
        max_header_bytes: gateway_file.max_header_kb.unwrap_or(64).clamp(8, 1024) * 1024,
        underscores_in_headers: gateway_file.underscores_in_headers.unwrap_or(false),
        idle_timeout: Duration::from_secs(idle_timeout),
        assertion_seconds,
        max_connections: gateway_file.max_connections.unwrap_or(0),
        http2_max_streams,
        websocket_idle_timeout: websocket_idle,
    };
    let tls = match file.tls {
        None => None,
        Some(t) => Some(portcullis_api::tls::TlsSettings {
            listen: t.listen.parse().map_err(|e| {
                ConfigError::new(
                    "tls.listen",
                    format!("'{}' is not host:port: {e}", t.listen),
                )
            })?,
            cert_file: t.cert_file,
            key_file: t.key_file,
            reload_interval: Duration::from_secs(5),
        }),
    };
    let auth = portcullis_api::AuthSettings {
        data_dir: Some(data_dir.clone()),
        secret_key,
        public_url,
        access_token_ttl: Duration::from_secs(access_minutes * 60),
        mail_from: from,
        smtp: mail_file.smtp,
        login_attempts_per_minute: auth_file.login_attempts_per_minute.unwrap_or(30).max(1),
        trusted_proxies,
        clock: portcullis_model::Clock::system(),
    };

    Ok(Config {
        server: ServerConfig {
            auth,
            listen,
            database_url,
            admin_email,
            admin_api_key,
            activity_flush_interval: Duration::from_secs(flush),
            tls,
            gateway,
            rbac: rbac_settings,
        },
        data_dir,
        log_format,
        log_level,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn embedded_defaults() {
        let c = load(None, &env_of(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.server.database_url,
            "sqlite://./portcullis-data/portcullis.db"
        );
        assert_eq!(c.server.admin_email, "admin@localhost");
        assert!(c.server.admin_api_key.is_none());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.server.gateway.audit_queue, 65_536);
        assert_eq!(c.server.gateway.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.server.gateway.policy_body_bytes, 1024 * 1024);
        assert_eq!(c.server.gateway.assertion_seconds, 60);
        assert!(!c.server.gateway.underscores_in_headers);
        // 0: derived from the open-file limit when the server starts.
        assert_eq!(c.server.gateway.max_connections, 0);
        assert_eq!(c.server.gateway.http2_max_streams, 128);
        assert_eq!(
            c.server.gateway.websocket_idle_timeout,
            Duration::from_secs(300)
        );
        let f = file_with(
            "gateway:\n  max_connections: 5000\n  http2_max_streams: 32\n  audit_queue: 100\n  idle_timeout_seconds: 5\n  underscores_in_headers: true\n  policy_body_kb: 64\n  assertion_seconds: 300\n  websocket_idle_timeout_seconds: 3600\n",
        );
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(c.server.gateway.audit_queue, 100);
        assert_eq!(c.server.gateway.max_connections, 5000);
        assert_eq!(c.server.gateway.http2_max_streams, 32);
        assert_eq!(c.server.gateway.idle_timeout, Duration::from_secs(5));
        assert!(c.server.gateway.underscores_in_headers);
        assert_eq!(c.server.gateway.policy_body_bytes, 64 * 1024);
        assert_eq!(c.server.gateway.assertion_seconds, 300);
        assert_eq!(
            c.server.gateway.websocket_idle_timeout,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = file_with("listen: 127.0.0.1:9000\nadmin:\n  email: ops@example.com\n");
        let c = load(
            Some(f.path()),
            &env_of(&[
                ("PORTCULLIS_LISTEN", "0.0.0.0:7000"),
                ("PORTCULLIS_DATA_DIR", "/srv/p"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(c.server.admin_email, "ops@example.com");
        assert_eq!(c.server.database_url, "sqlite:///srv/p/portcullis.db");
    }

    #[test]
    fn errors_name_the_key() {
        // (YAML file, environment, the key the error must name)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let table: &[Case] = &[
            ("", &[("PORTCULLIS_LISTEN", "nowhere")], "PORTCULLIS_LISTEN"),
            ("listen: nowhere\n", &[], "listen"),
            (
                "",
                &[("PORTCULLIS_DATABASE_URL", "mysql://x")],
                "PORTCULLIS_DATABASE_URL",
            ),
            (
                "",
                &[("PORTCULLIS_ADMIN_API_KEY", "short")],
                "PORTCULLIS_ADMIN_API_KEY",
            ),
            ("admin:\n  api_key: short\n", &[], "admin.api_key"),
            (
                "",
                &[("PORTCULLIS_ADMIN_EMAIL", "nobody")],
                "PORTCULLIS_ADMIN_EMAIL",
            ),
            ("log:\n  format: xml\n", &[], "log.format"),
            ("gateway:\n  audit_queue: 0\n", &[], "gateway.audit_queue"),
            (
                "gateway:\n  idle_timeout_seconds: 0\n",
                &[],
                "gateway.idle_timeout_seconds",
            ),
            (
                "gateway:\n  max_connections: 0\n",
                &[],
                "gateway.max_connections",
            ),
            (
                "gateway:\n  http2_max_streams: 0\n",
                &[],
                "gateway.http2_max_streams",
            ),
            (
                "gateway:\n  http2_max_streams: 1001\n",
                &[],
                "gateway.http2_max_streams",
            ),
            (
                "gateway:\n  websocket_idle_timeout_seconds: 0\n",
                &[],
                "gateway.websocket_idle_timeout_seconds",
            ),
            (
                "gateway:\n  websocket_idle_timeout_seconds: 86401\n",
                &[],
                "gateway.websocket_idle_timeout_seconds",
            ),
            (
                "gateway:\n  backends:\n    - { name: a, url: \"http://a\", audience: \" \" }\n",
                &[],
                "gateway.backends[0].audience",
            ),
            (
                "gateway:\n  assertion_seconds: 5\n",
                &[],
                "gateway.assertion_seconds",
            ),
            (
                "gateway:\n  policy_body_kb: 0\n",
                &[],
                "gateway.policy_body_kb",
            ),
            (
                "gateway:\n  max_body_mb: 1\n  policy_body_kb: 2048\n",
                &[],
                "gateway.policy_body_kb",
            ),
        ];
        for (text, env, key) in table {
            let f = file_with(text);
            let e = load(Some(f.path()), &env_of(env)).unwrap_err();
            assert_eq!(&e.key, key, "{e}");
        }
        let f =
            file_with("permission:\n  rbac:\n    admin:\n      users:\n        - name: alice\n");
        let e = load(Some(f.path()), &env_of(&[])).unwrap_err();
        assert_eq!(e.key, "permission.rbac.admin.users[0].name", "{e}");
        let f = file_with(
            "permission:\n  rbac:\n    admin:\n      users:\n        - name: user:default/Alice\n    policies-csv-file: /etc/p.csv\n    policyFileReload: true\n",
        );
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(c.server.rbac.admin_users, ["user:default/alice"]);
        assert!(c.server.rbac.policy_file_reload);
        let f = file_with(
            "permission:\n  rbac:\n    plugins:\n      - pluginId: acme\n        permissions:\n          - name: acme.deploy\n            policy: launch\n",
        );
        let e = load(Some(f.path()), &env_of(&[])).unwrap_err();
        assert_eq!(
            e.key, "permission.rbac.plugins[0].permissions[0].policy",
            "{e}"
        );
        let f = file_with("lisen: 1\n");
        let e = load(Some(f.path()), &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn https_backends_take_trust_settings() {
        let f = file_with(
            "gateway:\n  backends:\n    - name: jobs\n      url: https://jobs.internal:8443/v1\n      ca_file: /etc/portcullis/internal-ca.pem\n      client_cert_file: /etc/portcullis/client.pem\n      client_key_file: /etc/portcullis/client.key\n      server_name: jobs.svc\n      pass_credentials: true\n      audience: https://jobs.example.com\n      websocket_idle_timeout_seconds: 3600\n    - name: public\n      url: https://api.example.com\n",
        );
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        let jobs = &c.server.gateway.backends[0];
        assert_eq!(jobs.url.scheme_str(), Some("https"));
        assert_eq!(
            jobs.tls.ca_file.as_deref(),
            Some(Path::new("/etc/portcullis/internal-ca.pem"))
        );
        assert_eq!(
            jobs.tls.client_key_file.as_deref(),
            Some(Path::new("/etc/portcullis/client.key"))
        );
        assert_eq!(jobs.tls.server_name.as_deref(), Some("jobs.svc"));
        assert!(!c.server.gateway.backends[1].tls.is_set());
        assert!(jobs.pass_credentials);
        assert_eq!(jobs.audience(), "https://jobs.example.com");
        assert_eq!(c.server.gateway.backends[1].audience(), "public");
        assert_eq!(jobs.websocket_idle, Some(Duration::from_secs(3600)));
        assert_eq!(
            c.server.gateway.backends[1].websocket_idle, None,
            "the gateway's websocket idle time unless a backend sets its own"
        );
        assert!(
            !c.server.gateway.backends[1].pass_credentials,
            "credentials stay with Portcullis unless a backend asks"
        );

        // (backend lines, the key the error must name)
        let table: &[(&str, &str)] = &[
            ("url: ftp://jobs", "gateway.backends[0].url"),
            (
                "url: http://jobs\n      ca_file: /ca.pem",
                "gateway.backends[0].ca_file",
            ),
            (
                "url: http://jobs\n      server_name: jobs.svc",
                "gateway.backends[0].server_name",
            ),
            (
                "url: https://jobs\n      http2: true",
                "gateway.backends[0].http2",
            ),
            (
                "url: https://jobs\n      client_cert_file: /c.pem",
                "gateway.backends[0].client_key_file",
            ),
            (
                "url: https://jobs\n      client_key_file: /c.key",
                "gateway.backends[0].client_cert_file",
            ),
            (
                "url: https://jobs\n      server_name: 'jobs svc'",
                "gateway.backends[0].server_name",
            ),
            (
                "url: http://jobs\n      websocket_idle_timeout_seconds: 0",
                "gateway.backends[0].websocket_idle_timeout_seconds",
            ),
            (
                "url: http://jobs\n      websocket_idle_timeout_seconds: 86401",
                "gateway.backends[0].websocket_idle_timeout_seconds",
            ),
        ];
        for (lines, key) in table {
            let f = file_with(&format!(
                "gateway:\n  backends:\n    - name: jobs\n      {lines}\n"
            ));
            let e = load(Some(f.path()), &env_of(&[])).unwrap_err();
            assert_eq!(&e.key, key, "{e}");
        }
        let f = file_with(
            "gateway:\n  backends:\n    - name: jobs\n      url: https://jobs\n      insecure_skip_verify: true\n",
        );
        let e = load(Some(f.path()), &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("insecure_skip_verify"), "{e}");
    }
}
