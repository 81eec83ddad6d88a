//! Validation errors of domain values.

/// A value that breaks a rule of the domain; `field` names the input that carried it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ModelError {
    /// The input field (camelCase, as on the wire) that holds the bad value.
    pub field: String,
    /// What is wrong with it, in words a user can act on.
    pub message: String,
}

impl ModelError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
