//! What every handler shares.

use std::net::IpAddr;
use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_authn::login::LocalAuth;
use portcullis_authn::{Directory, KeyRing};
use portcullis_model::Clock;
use portcullis_store::Store;

use crate::client_ip::Cidr;
use crate::rbac::Rbac;

/// Shared state of the control plane; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The source of truth.
    pub store: Store,
    /// In-memory credentials.
    pub directory: Arc<Directory>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The RBAC engine.
    pub rbac: Arc<Rbac>,
    /// Local logins, sessions, MFA, resets.
    pub auth: Arc<LocalAuth>,
    /// Token signing keys.
    pub keys: Arc<KeyRing>,
    /// The clock of every time rule.
    pub clock: Clock,
    /// Settings of the browser-facing endpoints.
    pub web: Arc<WebSettings>,
    /// The forwarding client, when backends are configured.
    pub proxy: Option<Arc<portcullis_gateway::Proxy>>,
    /// Gateway settings.
    pub gateway: Arc<crate::gateway::GatewaySettings>,
    /// Gateway decisions on their way to the audit trail.
    pub audit: Arc<crate::audit_queue::AuditQueue>,
    /// The shared runtime: the control plane and every database call run there, whichever
    /// worker thread a request came in on.
    pub control: tokio::runtime::Handle,
}

/// Settings of the browser-facing endpoints (login pages, cookies, rate limits).
pub struct WebSettings {
    /// The public base URL (links in mail, same-origin checks).
    pub public_url: String,
    /// Cookies carry `Secure` (behind TLS).
    pub cookie_secure: bool,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Login attempts per client address.
    pub login_limiter: DefaultKeyedRateLimiter<IpAddr>,
}
