//! The change feed between replicas: after a committed change to a user's credentials, the
//! replica that made it announces the user; every other replica reloads that user. PostgreSQL
//! carries the announcements (`NOTIFY`); SQLite serves one process, so there is nothing to carry.

use portcullis_model::UserId;
use sqlx::postgres::PgListener;

use crate::{Backend, Store, StoreError};

const CHANNEL: &str = "portcullis_credentials";

/// What a replica hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The credentials of `user` changed on the replica `origin`.
    User {
        /// The announcing replica.
        origin: String,
        /// The user.
        user: UserId,
    },
    /// RBAC data (roles, policies, conditions, group membership) changed on the replica `origin`.
    Rbac {
        /// The announcing replica.
        origin: String,
    },
    /// A login session was revoked or changed on the replica `origin`.
    Session {
        /// The announcing replica.
        origin: String,
        /// The session.
        session: portcullis_model::SessionId,
    },
    /// The token signing keys changed (a rotation).
    SigningKeys,
    /// The connection was lost and re-established: announcements may have been missed, so reload
    /// everything.
    Resync,
}

/// A subscription to announcements.
pub struct ChangeFeed {
    listener: PgListener,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeFeed")
    }
}

impl Store {
    /// Announces that `user`'s credentials changed (no-op on SQLite).
    pub async fn announce_credentials(&self, origin: &str, user: UserId) -> Result<(), StoreError> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(format!("{origin} {user}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Announces that RBAC data changed (no-op on SQLite).
    pub async fn announce_rbac(&self, origin: &str) -> Result<(), StoreError> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(format!("{origin} rbac"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Announces that a session was revoked or changed (no-op on SQLite).
    pub async fn announce_session(
        &self,
        origin: &str,
        session: portcullis_model::SessionId,
    ) -> Result<(), StoreError> {
        self.notify(format!("{origin} session:{session}")).await
    }

    /// Announces new token signing keys (no-op on SQLite).
    pub async fn announce_signing_keys(&self) -> Result<(), StoreError> {
        self.notify("- signing-keys".to_owned()).await
    }

    async fn notify(&self, payload: String) -> Result<(), StoreError> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Subscribes to announcements; `None` on SQLite.
    pub async fn credential_changes(&self) -> Result<Option<ChangeFeed>, StoreError> {
        let Some(url) = self.postgres_url() else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(ChangeFeed { listener }))
    }
}

impl ChangeFeed {
    /// Waits for the next announcement.
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(Change::Resync),
                Some(n) => {
                    let Some((origin, user)) = n.payload().split_once(' ') else {
                        continue;
                    };
                    if user == "signing-keys" {
                        return Ok(Change::SigningKeys);
                    }
                    if let Some(session) = user.strip_prefix("session:") {
                        let Ok(session) = session.parse() else {
                            continue;
                        };
                        return Ok(Change::Session {
                            origin: origin.to_owned(),
                            session,
                        });
                    }
                    if user == "rbac" {
                        return Ok(Change::Rbac {
                            origin: origin.to_owned(),
                        });
                    }
                    let Ok(user) = user.parse() else { continue };
                    return Ok(Change::User {
                        origin: origin.to_owned(),
                        user,
                    });
                }
            }
        }
    }
}
