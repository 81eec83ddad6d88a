//! The authn crate's error type.

/// What can go wrong while managing credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// A key to install is too short to be a secret.
    #[error("an API key must be at least {0} characters long")]
    KeyTooShort(usize),
    /// The random number generator failed (the OS could not provide entropy).
    #[error("no randomness available: {0}")]
    Randomness(String),
    /// Loading credentials from the store failed.
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
}
