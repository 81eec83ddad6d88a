//! The store's error type.

/// What can go wrong in the store. `NotFound` and `Conflict` carry a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (or is not visible in that org).
    #[error("{0}")]
    NotFound(String),
    /// The change would break a uniqueness or structure rule (duplicate, cycle).
    #[error("{0}")]
    Conflict(String),
    /// The database URL names no supported database.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing the statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }

    /// Whether the statement referred to a row that is gone: a foreign key violated because
    /// another change removed what this one names at the same time (a group deleted while a
    /// member is added to it).
    pub fn is_reference_gone(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation())
    }

    /// Maps a unique-constraint violation to `Conflict(message)`, anything else unchanged.
    pub(crate) fn unique(err: sqlx::Error, message: impl Into<String>) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(message.into()),
            _ => Self::Database(err),
        }
    }
}
