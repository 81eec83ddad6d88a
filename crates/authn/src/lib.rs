//! Credentials of Portcullis: API keys, local passwords with TOTP MFA, login sessions with signed
//! tokens, the mail that carries temporary passwords and reset links, and the in-memory
//! [`Directory`] that turns a presented credential into a [`Principal`] without the database.
#![forbid(unsafe_code)]

pub mod activity;
pub mod api_key;
pub mod directory;
mod error;
pub mod login;
pub mod mail;
pub mod password;
pub mod random;
pub mod secret_box;
pub mod tokens;
pub mod totp;

pub use activity::{ActivityFlusher, Touched};
pub use api_key::{GeneratedKey, KeyDigest};
pub use directory::{
    Credential, Directory, Principal, SessionCheck, SessionEntry, SessionWatch, UserEntry,
};
pub use error::AuthnError;
pub use secret_box::SecretBox;
pub use tokens::{KeyRing, SessionClaims, TokenError, TokenUser};
