//! The server: connects the store, bootstraps a fresh database, loads the credential directory,
//! and serves the control plane until told to stop.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderName;
use portcullis_authn::{ActivityFlusher, AuthnError, Directory, api_key};
use portcullis_model::names;
use portcullis_store::{BootstrapAdmin, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::state::AppState;

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
}

/// How often a replica reloads every credential, in case it missed an announcement.
const RESYNC_INTERVAL: Duration = Duration::from_secs(300);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Starts the server.
pub async fn start(config: ServerConfig) -> Result<Running, ServerError> {
    let store = Store::connect(&config.database_url).await?;
    let bootstrap_key = bootstrap(&store, &config).await?;
    let (directory, feed) = Directory::load(&store).await?;
    let metrics = crate::observability::recorder();
    let rbac = crate::rbac::Rbac::start(&store, config.rbac.clone()).await?;
    // Always: files no longer configured take what they granted with them.
    crate::rbac::files::reload(&store, &rbac).await?;
    let state = AppState {
        store: store.clone(),
        directory: directory.clone(),
        metrics,
        rbac: rbac.clone(),
    };
    let app = crate::routes::router()
        .layer(axum::middleware::from_fn(crate::observability::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Bind(config.listen, e))?;
    let (stop, stopped) = watch::channel(false);
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
    let flush_task = tokio::spawn(flusher.run(config.activity_flush_interval, stopped.clone()));
    let mut until = stopped;
    let serve_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = until.wait_for(|&s| s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "server stopped with an error");
        }
    });
    tracing::info!(%addr, backend = ?store.backend(), "portcullis is listening");
    // Serve first, then flush: the flusher's last run sees every request.
    Ok(Running {
        addr,
        bootstrap_key,
        stop,
        tasks: vec![
            serve_task,
            flush_task,
            follow_task,
            rbac_follow_task,
            files_task,
        ],
        store,
    })
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
