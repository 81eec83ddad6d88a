//! The control plane of Portcullis: the admin REST API under `/api/v1`, health and metrics
//! endpoints, and the [`server`] that hosts them. Handlers check access through
//! `portcullis-authz`, change data through `portcullis-store`, and refresh the in-memory
//! directory of `portcullis-authn` before they answer.
#![forbid(unsafe_code)]

mod audit_queue;
mod auth;
pub mod client_ip;
mod error;
mod extract;
pub mod front;
pub mod gateway;
mod http1;
mod observability;
mod openapi;
pub mod rbac;
mod routes;
pub mod server;
mod state;
pub mod tls;
mod views;
pub mod workers;

pub use error::ApiError;
pub use rbac::RbacSettings;
pub use server::{AuthSettings, Running, ServerConfig, ServerError, start};
