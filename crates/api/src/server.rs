//! The server: connects the store, bootstraps a fresh database, loads the credential directory,
//! and serves the control plane until told to stop.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::observability::REQUEST_ID;
use portcullis_authn::login::{GroupsOf, LocalAuth, LoginSettings};
use portcullis_authn::mail::{MailTransport, Mailer, SmtpSettings};
use portcullis_authn::{ActivityFlusher, AuthnError, Directory, KeyRing, SecretBox, api_key};
use portcullis_model::Clock;
use portcullis_model::names;
use portcullis_store::{BootstrapAdmin, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::client_ip::Cidr;
use crate::state::{AppState, WebSettings};

/// Everything the server needs to start.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Email of the admin created on first start.
    pub admin_email: String,
    /// API key to install for that admin instead of generating one.
    pub admin_api_key: Option<String>,
    /// How often batched activity (last access) is written.
    pub activity_flush_interval: Duration,
    /// RBAC settings.
    pub rbac: crate::RbacSettings,
    /// Local logins, sessions, mail.
    pub auth: AuthSettings,
    /// Backends and the gateway's identity headers.
    pub gateway: crate::gateway::GatewaySettings,
    /// A TLS listener beside the plain one.
    pub tls: Option<crate::tls::TlsSettings>,
}

/// Settings of local logins, sessions, tokens and mail.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The data directory: `secret.key` and the `outbox/` of the log mail transport live here.
    pub data_dir: Option<PathBuf>,
    /// The server's secret key (base64 of 32 bytes) instead of `<data>/secret.key`; every
    /// replica of one database needs the same.
    pub secret_key: Option<String>,
    /// The public base URL (default `http://<listen address>`): links in mail, the token
    /// issuer, same-origin checks, and `Secure` cookies when it is https.
    pub public_url: Option<String>,
    /// Lifetime of API access tokens.
    pub access_token_ttl: Duration,
    /// Sender of mail.
    pub mail_from: String,
    /// SMTP server; without one, mail goes to `<data>/outbox/` and the log.
    pub smtp: Option<SmtpSettings>,
    /// Login attempts per minute from one client address.
    pub login_attempts_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The clock of every time rule (tests move it).
    pub clock: Clock,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            data_dir: None,
            secret_key: None,
            public_url: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            mail_from: "Portcullis <portcullis@localhost>".into(),
            smtp: None,
            login_attempts_per_minute: 30,
            trusted_proxies: Vec::new(),
            clock: Clock::system(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("admin_email", &self.admin_email)
            .field("admin_api_key", &self.admin_api_key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Credentials could not be prepared.
    #[error("credentials: {0}")]
    Authn(#[from] AuthnError),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The Rego policies cannot be read or compiled.
    #[error("rego policies: {0}")]
    Rego(String),
    /// The TLS certificate or key cannot be used, or the TLS address cannot be bound.
    #[error("tls: {0}")]
    Tls(String),
    /// The route rules are invalid.
    #[error("routes: {0}")]
    Routes(String),
    /// The admin email is not an email.
    #[error("admin email: {0}")]
    AdminEmail(portcullis_model::ModelError),
}

/// A started server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// On first start without a configured key: the admin's generated API key, to show once.
    pub bootstrap_key: Option<String>,
    /// The address of the TLS listener, when one is configured.
    pub tls_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    store: Store,
}

impl Running {
    /// Stops accepting connections, lets requests in flight finish, flushes activity.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
    }

    /// The process's metrics in the Prometheus text format, as `/metrics` serves them (read
    /// without a connection, which a server at its connection cap may refuse).
    pub fn metrics(&self) -> String {
        crate::observability::recorder().render()
    }
}

/// The gateway's proxy as configured. Each worker builds its own, so that its pools' connections
/// live on that worker's runtime.
fn proxy_for(
    gateway: &crate::gateway::GatewaySettings,
) -> Result<portcullis_gateway::Proxy, portcullis_gateway::GatewayError> {
    Ok(portcullis_gateway::Proxy::new(
        gateway.backends.clone(),
        gateway.max_body_bytes,
        gateway.idle_timeout,
    )?
    .with_upgraded_idle(gateway.websocket_idle_timeout)
    .with_upgrade_events(std::sync::Arc::new(crate::observability::WebsocketMetrics)))
}

/// How often a replica reloads every credential, in case it missed an announcement.
const RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// Starts the server.
pub async fn start(config: ServerConfig) -> Result<Running, ServerError> {
    let store = Store::connect(&config.database_url).await?;
    let bootstrap_key = bootstrap(&store, &config).await?;
    let (directory, feed) = Directory::load(&store).await?;
    let metrics = crate::observability::recorder();
    let rbac = crate::rbac::Rbac::start(&store, config.rbac.clone()).await?;
    // Always: files no longer configured take what they granted with them.
    crate::rbac::files::reload(&store, &rbac).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Bind(config.listen, e))?;
    let settings = &config.auth;
    let clock = settings.clock.clone();
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let secret_box = secret_box(settings, &config.database_url)?;
    let keys = KeyRing::load(
        &store,
        secret_box.clone(),
        public_url.clone(),
        "portcullis".into(),
        clock.now_millis(),
    )
    .await?;
    let transport = match &settings.smtp {
        Some(smtp) => MailTransport::Smtp(smtp.clone()),
        None => MailTransport::Log(
            settings
                .data_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join("outbox"),
        ),
    };
    let mailer = Mailer::new(
        store.clone(),
        secret_box.clone(),
        transport,
        &settings.mail_from,
        clock.clone(),
    )?;
    let groups_of: GroupsOf = {
        let (rbac, directory) = (rbac.clone(), directory.clone());
        Arc::new(move |user, org: &str| {
            let Some(entry) = directory.user(user) else {
                return Vec::new();
            };
            let user_ref = format!("user:{org}/{}", entry.username.to_lowercase());
            let prefix = format!("group:{org}/");
            rbac.snapshot()
                .groups_of_user(&user_ref)
                .into_iter()
                .filter_map(|g| g.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        })
    };
    let auth = LocalAuth::new(
        store.clone(),
        directory.clone(),
        keys.clone(),
        secret_box,
        mailer.clone(),
        clock.clone(),
        LoginSettings {
            access_token_ttl: settings.access_token_ttl,
            public_url: public_url.clone(),
            totp_issuer: "Portcullis".into(),
        },
        groups_of,
    );
    let per_minute =
        NonZeroU32::new(settings.login_attempts_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    if config.tls.is_some() && !public_url.starts_with("https://") {
        // Cookies follow the public URL, whichever listener a browser signs in on.
        tracing::warn!(
            public_url = %public_url,
            "a TLS listener is configured but auth.public_url is not https: session cookies are set without the Secure flag"
        );
    }
    let web = Arc::new(WebSettings {
        cookie_secure: public_url.starts_with("https://"),
        public_url,
        trusted_proxies: settings.trusted_proxies.clone(),
        login_limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
    });
    let proxy = if config.gateway.backends.is_empty() {
        None
    } else {
        Some(Arc::new(
            proxy_for(&config.gateway).map_err(|e| ServerError::Routes(e.to_string()))?,
        ))
    };
    if let Some(rules) = rbac.routes() {
        for rule in rules.rules() {
            if let Some(b) = rule.backend()
                && !proxy.as_ref().is_some_and(|p| p.has_backend(b))
            {
                return Err(ServerError::Routes(format!(
                    "{} names backend '{b}', which is not configured",
                    rule.source()
                )));
            }
        }
    }
    let state_web = web.clone();
    let (audit_queue, audit_writer) = crate::audit_queue::AuditQueue::new(
        config.gateway.audit_queue,
        store.clone(),
        clock.clone(),
    );
    let state = AppState {
        audit: Arc::new(audit_queue),
        store: store.clone(),
        directory: directory.clone(),
        metrics,
        rbac: rbac.clone(),
        auth,
        keys: keys.clone(),
        clock,
        web,
        proxy,
        gateway: Arc::new(config.gateway.clone()),
        control: tokio::runtime::Handle::current(),
    };
    let app = crate::routes::router()
        .layer(axum::middleware::from_fn(crate::observability::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID,
            crate::observability::MakeRequestId,
        ))
        .with_state(state.clone());
    let front = crate::front::FrontDoor::new(app, state);
    let proxies: crate::workers::ProxyFactory = {
        let gateway = config.gateway.clone();
        // Checked above with the same settings: a failure here cannot be a new one.
        Arc::new(move || {
            if gateway.backends.is_empty() {
                return None;
            }
            match proxy_for(&gateway) {
                Ok(proxy) => Some(Arc::new(proxy)),
                Err(e) => {
                    tracing::error!(error = %e, "a worker could not set up its backends");
                    None
                }
            }
        })
    };
    let count = match config.gateway.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let derived = crate::workers::derived_max_connections();
    let max_connections = match config.gateway.max_connections {
        0 => derived,
        n => {
            if n > derived {
                tracing::warn!(
                    max_connections = n,
                    open_file_limit_allows = derived,
                    "gateway.max_connections is more than the open-file limit allows: \
                     connections and backends may fail for want of descriptors"
                );
            }
            n
        }
    };
    tracing::info!(max_connections, "client connections held at most");
    let workers = Arc::new(
        crate::workers::Workers::start(
            count,
            front,
            proxies,
            crate::workers::ConnectionLimits {
                max_header_bytes: config.gateway.max_header_bytes,
                idle_timeout: config.gateway.idle_timeout,
                max_connections,
                http2_max_streams: config.gateway.http2_max_streams,
            },
        )
        .map_err(|e| ServerError::Bind(config.listen, e))?,
    );

    let (stop, stopped) = watch::channel(false);
    let (tls_addr, tls_task) = match &config.tls {
        Some(tls) => {
            let (addr, task) = crate::tls::serve(tls.clone(), workers.clone(), stopped.clone())
                .await
                .map_err(ServerError::Tls)?;
            tracing::info!(%addr, "portcullis is listening with TLS");
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let mail_task = tokio::spawn(mailer.run(stopped.clone()));
    let keys_task = tokio::spawn(reload_keys(
        keys,
        store.clone(),
        state_web.clone(),
        stopped.clone(),
    ));
    let (store_for_files, stopped_for_files) = (store.clone(), stopped.clone());

    // Other replicas' changes (PostgreSQL only; returns at once on SQLite).
    let follow_task = tokio::spawn(directory.clone().follow_changes(
        store.clone(),
        RESYNC_INTERVAL,
        stopped.clone(),
    ));
    let rbac_follow_task =
        tokio::spawn(rbac.clone().follow_changes(store.clone(), stopped.clone()));
    let files_task = tokio::spawn(async move {
        if rbac.settings().policy_file_reload {
            crate::rbac::files::watch(store_for_files, rbac, stopped_for_files).await;
        }
    });
    let flusher = ActivityFlusher::new(directory, store.clone(), feed);
    // The flusher's last run waits until every worker has drained: requests still finishing
    // after the stop (up to the drain time) authenticate, and their activity must be in it.
    let (drained, until_drained) = watch::channel(false);
    // The same holds for the gateway decisions queued for the audit trail.
    let audit_task = tokio::spawn(audit_writer.run(until_drained.clone()));
    let flush_task = tokio::spawn(flusher.run(config.activity_flush_interval, until_drained));
    let mut until = stopped;
    let serve_task = tokio::spawn(async move {
        let stopping = async move {
            let _ = until.wait_for(|&s| s).await;
        };
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                () = &mut stopping => break,
                (tcp, peer) = crate::workers::accept(&listener) => {
                    workers.dispatch(tcp, peer, None);
                }
            }
        }
        drop(listener);
        workers.stop().await;
        let _ = drained.send(true);
    });
    tracing::info!(%addr, backend = ?store.backend(), "portcullis is listening");
    let mut tasks_extra = Vec::new();
    tasks_extra.extend(tls_task);
    Ok(Running {
        addr,
        tls_addr,
        bootstrap_key,
        stop,
        tasks: vec![
            serve_task,
            flush_task,
            audit_task,
            follow_task,
            rbac_follow_task,
            files_task,
            mail_task,
            keys_task,
        ]
        .into_iter()
        .chain(tasks_extra)
        .collect(),
        store,
    })
}

/// The server's secret key: configured, or `<data>/secret.key` (created on first start), or
/// `secret.key` beside the SQLite file, or, failing all, a random one that lives as long as the
/// process.
fn secret_box(settings: &AuthSettings, database_url: &str) -> Result<SecretBox, ServerError> {
    if let Some(key) = &settings.secret_key {
        return Ok(SecretBox::from_base64(key)?);
    }
    if let Some(dir) = &settings.data_dir {
        return Ok(SecretBox::load_or_create(&dir.join("secret.key"))?);
    }
    // Without a data directory, the key lives beside the SQLite file it protects.
    if let Some(file) = database_url
        .strip_prefix("sqlite://")
        .map(|p| std::path::Path::new(p.split('?').next().unwrap_or(p)))
        && let Some(dir) = file.parent().filter(|d| d.is_dir())
    {
        return Ok(SecretBox::load_or_create(&dir.join("secret.key"))?);
    }
    tracing::warn!(
        "no data directory and no secret key configured: sealed secrets (TOTP, signing keys) will not survive a restart"
    );
    let key: [u8; 32] = portcullis_authn::random::random_bytes()?;
    Ok(SecretBox::from_key(&key))
}

/// Re-reads the signing keys every 30 seconds, so a rotation made by the CLI or another
/// replica is published and used here before its key becomes active; also forgets the
/// login-rate state of addresses that have been quiet (the limiter's memory stays bounded).
async fn reload_keys(
    keys: Arc<KeyRing>,
    store: Store,
    web: Arc<WebSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(30));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {
                if let Err(e) = keys.reload(&store).await {
                    tracing::warn!(error = %e, "could not reload the token signing keys");
                }
                web.login_limiter.retain_recent();
            }
        }
    }
}

/// On an empty database, creates org `default` and its admin. Returns the generated key, if one
/// was generated (a configured key is not echoed).
async fn bootstrap(store: &Store, config: &ServerConfig) -> Result<Option<String>, ServerError> {
    if !store.is_empty().await? {
        if config.admin_api_key.is_some() {
            tracing::warn!(
                "the database is already set up: the configured admin API key is not installed again"
            );
        }
        return Ok(None);
    }
    let email = names::validate_email("admin email", &config.admin_email)
        .map_err(ServerError::AdminEmail)?;
    let (key, shown) = match &config.admin_api_key {
        Some(secret) => (api_key::install(secret, "bootstrap", None)?, None),
        None => {
            let generated = api_key::generate("bootstrap", None, None)?;
            (generated.record, Some(generated.secret))
        }
    };
    let admin = BootstrapAdmin {
        username: names::username_from_email(&email),
        email,
        key,
    };
    match store.bootstrap(&admin).await? {
        Some((org, user)) => {
            tracing::info!(org = %org.slug, admin = %user.email, "first start: created org and admin");
            Ok(shown)
        }
        None => Ok(None),
    }
}
