//! Batched activity: the last access of users and the last use of keys are kept in memory on
//! the request path and written to the store every few seconds, never once per request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use portcullis_model::UserId;
use portcullis_store::Store;
use tokio::sync::{mpsc, watch};

use crate::Directory;

/// A credential that was used since the last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Touched {
    /// A user reached Portcullis.
    User(UserId),
    /// A key (by lookup id) was used.
    Key([u8; 16]),
    /// A session was used.
    Session(portcullis_model::SessionId),
}

/// Writes batched activity to the store.
pub struct ActivityFlusher {
    directory: Arc<Directory>,
    store: Store,
    feed: mpsc::UnboundedReceiver<Touched>,
}

impl ActivityFlusher {
    /// A flusher for `directory`'s feed.
    pub fn new(
        directory: Arc<Directory>,
        store: Store,
        feed: mpsc::UnboundedReceiver<Touched>,
    ) -> Self {
        Self {
            directory,
            store,
            feed,
        }
    }

    /// Flushes every `interval` until `stop` turns true, then once more.
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.flush().await,
                _ = stop.changed() => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    /// Writes everything touched since the last call.
    pub async fn flush(&mut self) {
        let mut touched = HashSet::new();
        while let Ok(t) = self.feed.try_recv() {
            touched.insert(t);
        }
        if touched.is_empty() {
            return;
        }
        let mut users = Vec::new();
        let mut keys = Vec::new();
        let mut sessions = Vec::new();
        for t in touched {
            match t {
                Touched::User(u) => {
                    users.extend(self.directory.take_user_activity(u).map(|at| (u, at)))
                }
                Touched::Key(lookup) => keys.extend(self.directory.take_key_activity(&lookup)),
                Touched::Session(id) => {
                    sessions.extend(self.directory.take_session_activity(id).map(|at| (id, at)))
                }
            }
        }
        if let Err(e) = self.store.touch_sessions(&sessions).await {
            tracing::warn!(error = %e, sessions = sessions.len(), "could not record session activity");
        }
        if let Err(e) = self.store.record_activity(&users, &keys).await {
            // Activity is informational: log and carry on rather than fail requests.
            tracing::warn!(error = %e, users = users.len(), keys = keys.len(), "could not record activity");
        }
    }
}
