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
    /// The server's secret key is missing, malformed, or does not open a sealed value.
    #[error("secret key: {0}")]
    SecretKey(String),
    /// A new password breaks the rules.
    #[error("{0}")]
    WeakPassword(String),
    /// TOTP setup failed.
    #[error("TOTP: {0}")]
    Totp(String),
    /// Mail could not be prepared.
    #[error("mail: {0}")]
    Mail(String),
    /// Loading credentials from the store failed.
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
}
