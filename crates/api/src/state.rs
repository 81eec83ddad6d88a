//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_authn::Directory;
use portcullis_store::Store;

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
}
