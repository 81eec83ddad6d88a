//! Connecting, migrating and the transaction helpers that hide the SQL dialect.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Transaction};

use crate::StoreError;

/// Which database holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file (WAL).
    Sqlite,
    /// A PostgreSQL server, shared by several replicas.
    Postgres,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Kept for the change-feed listener, which needs a connection of its own.
    postgres_url: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for Store {
    // The URL may hold a password: show the backend only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file when missing,
    /// and applies every pending migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        let url = match backend {
            // Create the file on first start; WAL and foreign keys are set per connection below.
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let postgres_url =
            (backend == Backend::Postgres).then(|| std::sync::Arc::from(url.as_str()));
        let store = Self {
            pool,
            backend,
            postgres_url,
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&store.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&store.pool).await?,
        }
        Ok(store)
    }

    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front, so two writers
    /// queue instead of failing when one upgrades a read.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Serialises writers of RBAC data (SQLite's write lock already does; PostgreSQL takes a
    /// transaction-scoped advisory lock), so checks made inside the transaction hold until it
    /// commits and replicas syncing the same file cannot collide.
    pub(crate) async fn lock_rbac(
        &self,
        tx: &mut Transaction<'static, sqlx::Any>,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7262738)")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Serialises the writers whose checks read one org's rows as a whole (group nesting against
    /// cycles; a member's removal, demotion, deactivation or reactivation against assignments to
    /// its projects and groups and against losing the last admin), so that what they read holds
    /// until they commit. Writers that check nothing across rows (adding a member, promoting
    /// one, taking one off a project) do not take it. On PostgreSQL the org's row is locked
    /// `FOR NO KEY UPDATE`: writers taking it queue, while rows that merely reference the org (a
    /// key being made, whose foreign key check shares the row) do not wait for it, so that it
    /// cannot close a deadlock with a writer holding a membership's row.
    pub(crate) async fn lock_org(
        &self,
        tx: &mut Transaction<'static, sqlx::Any>,
        org: &str,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR NO KEY UPDATE")
                .bind(org)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("mysql://bob:secret@host/db"),
            "mysql://bob:***@host/db"
        );
        assert_eq!(super::redact("mysql://host/db"), "mysql://host/db");
    }
}
