//! Credentials of Portcullis. For now: API keys, and the in-memory [`Directory`] that turns a
//! presented key into a [`Principal`] without touching the database.
#![forbid(unsafe_code)]

pub mod activity;
pub mod api_key;
pub mod directory;
mod error;

pub use activity::{ActivityFlusher, Touched};
pub use api_key::{GeneratedKey, KeyDigest};
pub use directory::{Directory, Principal, UserEntry};
pub use error::AuthnError;
