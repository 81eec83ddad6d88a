//! The in-memory directory of credentials: API keys by lookup id and users with their
//! memberships. Authenticating a request reads it without locks or I/O; every committed change
//! to a user, a membership or a key refreshes that user's entries before the change is
//! acknowledged, so a deleted key or a deactivated member is refused on the very next request.

mod sessions;
mod sharded;

pub use sessions::{SessionCheck, SessionEntry, SessionWatch};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use portcullis_authz::{Caller, OrgMembership};
use portcullis_model::{KeyId, OrgId, UserId, UserKind};
use portcullis_store::{Change, CredentialUser, Store};
use sharded::Sharded;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};

use crate::AuthnError;
use crate::activity::Touched;
use crate::api_key::{KeyDigest, unhex};

/// A user as the directory knows them.
#[derive(Debug)]
pub struct UserEntry {
    /// Id.
    pub id: UserId,
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Kind.
    pub kind: UserKind,
    /// May create orgs.
    pub platform_admin: bool,
    /// Memberships by org slug.
    pub memberships: HashMap<String, OrgMembership>,
    pub(crate) last_access: AtomicI64,
    pub(crate) dirty: AtomicBool,
}

/// An API key as the directory knows it.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) id: KeyId,
    lookup: [u8; 16],
    user_id: UserId,
    org_id: Option<OrgId>,
    verifier: [u8; 16],
    expires_at: Option<i64>,
    pub(crate) last_used: AtomicI64,
    pub(crate) dirty: AtomicBool,
}

/// The credential a request presented.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API key.
    ApiKey(KeyId),
    /// A login session (access token or `sid` cookie).
    Session(Arc<SessionEntry>),
}

/// Who is calling, once a credential has been checked.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: Arc<UserEntry>,
    /// The credential used.
    pub credential: Credential,
    /// When the key is bound to one org, that org.
    pub credential_org: Option<OrgId>,
}

impl Principal {
    /// The session behind this request, when it came with a session token.
    pub fn session(&self) -> Option<&Arc<SessionEntry>> {
        match &self.credential {
            Credential::Session(s) => Some(s),
            Credential::ApiKey(_) => None,
        }
    }

    /// The caller as authorization sees it, for the org with this slug.
    pub fn caller_in(&self, org_slug: &str) -> Caller<'_> {
        Caller {
            platform_admin: self.user.platform_admin,
            membership: self.user.memberships.get(org_slug),
            credential_org: self.credential_org,
        }
    }

    /// The caller as authorization sees it, outside any org.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            platform_admin: self.user.platform_admin,
            membership: None,
            credential_org: self.credential_org,
        }
    }
}

/// The directory. Share it as `Arc<Directory>`.
pub struct Directory {
    keys: Sharded<[u8; 16], KeyEntry>,
    users: Sharded<UserId, UserEntry>,
    sessions: Sharded<portcullis_model::SessionId, SessionEntry>,
    /// Key lookups per user, so a refresh can drop keys that are gone.
    writer: Mutex<HashMap<UserId, Vec<[u8; 16]>>>,
    /// Serialises changes to the session table.
    session_writer: Mutex<()>,
    activity: mpsc::UnboundedSender<Touched>,
    /// This process, in announcements to other replicas.
    origin: String,
}

fn user_entry(c: &CredentialUser, carried: Option<&UserEntry>) -> UserEntry {
    let memberships = c
        .memberships
        .iter()
        .map(|m| {
            (
                m.slug.clone(),
                OrgMembership {
                    org_id: m.org_id,
                    role: m.role,
                    status: m.status,
                },
            )
        })
        .collect();
    UserEntry {
        id: c.user.id,
        email: c.user.email.clone(),
        username: c.user.username.clone(),
        kind: c.user.kind,
        platform_admin: c.user.platform_admin,
        memberships,
        last_access: AtomicI64::new(carried.map_or(0, |u| u.last_access.load(Ordering::Relaxed))),
        dirty: AtomicBool::new(carried.is_some_and(|u| u.dirty.load(Ordering::Relaxed))),
    }
}

fn key_entries(c: &CredentialUser) -> Vec<([u8; 16], KeyEntry)> {
    c.keys
        .iter()
        .filter_map(|k| {
            let (Some(lookup), Some(verifier)) = (unhex::<16>(&k.lookup), unhex::<16>(&k.hash)) else {
                tracing::warn!(key_id = %k.id, "stored API key has unreadable digests; it is ignored");
                return None;
            };
            let entry = KeyEntry {
                id: k.id,
                lookup,
                user_id: k.user_id,
                org_id: k.org_id,
                verifier,
                expires_at: k.expires_at.map(|t| t.0),
                last_used: AtomicI64::new(0),
                dirty: AtomicBool::new(false),
            };
            Some((lookup, entry))
        })
        .collect()
}

impl Directory {
    /// Loads every credential from the store. Returns the directory and the receiving end of its
    /// activity feed, for an [`crate::ActivityFlusher`].
    pub async fn load(
        store: &Store,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Touched>), AuthnError> {
        let all = store.load_all_credentials().await?;
        Ok(Self::from_credentials(&all))
    }

    /// Builds a directory from credential data already in memory.
    pub fn from_credentials(
        all: &[CredentialUser],
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Touched>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut dir = Self {
            keys: Sharded::new(),
            users: Sharded::new(),
            sessions: Sharded::new(),
            writer: Mutex::new(HashMap::new()),
            session_writer: Mutex::new(()),
            activity: tx,
            origin: UserId::new().to_string(),
        };
        let index = dir.fill(all);
        // Not shared yet: no lock needed.
        *dir.writer.get_mut() = index;
        (Arc::new(dir), rx)
    }

    /// Replaces every entry with `all`, keeping activity not yet flushed; returns the key index.
    fn fill(&self, all: &[CredentialUser]) -> HashMap<UserId, Vec<[u8; 16]>> {
        let mut index = HashMap::new();
        let mut keys = Vec::new();
        let mut users = Vec::new();
        for c in all {
            let entries = key_entries(c);
            index.insert(c.user.id, entries.iter().map(|(l, _)| *l).collect());
            keys.extend(entries.into_iter().map(|(l, e)| (l, Arc::new(e))));
            let carried = self.users.get(&c.user.id);
            users.push((c.user.id, Arc::new(user_entry(c, carried.as_deref()))));
        }
        self.keys.fill(keys);
        self.users.fill(users);
        index
    }

    /// Reloads every credential (after a replica may have missed announcements).
    pub async fn reload_all(&self, store: &Store) -> Result<(), AuthnError> {
        let mut guard = self.writer.lock().await;
        let all = store.load_all_credentials().await?;
        *guard = self.fill(&all);
        Ok(())
    }

    /// Call after every committed change to a user, membership or key, before answering: reloads
    /// the user here and announces the change to the other replicas.
    pub async fn user_changed(&self, store: &Store, user: UserId) -> Result<(), AuthnError> {
        // A committed change must reach memory: retry a failing reload before giving up, and
        // tell the other replicas either way.
        let mut result = self.refresh_user(store, user).await;
        for pause in [50, 250, 1000] {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
            result = self.refresh_user(store, user).await;
        }
        if let Err(e) = store.announce_credentials(&self.origin, user).await {
            // The other replicas catch up at their next periodic resync.
            tracing::warn!(error = %e, %user, "could not announce a credential change to other replicas");
        }
        result
    }

    /// Follows other replicas' announcements until `stop` turns true, reloading what they
    /// changed; reloads everything after a lost connection, and every `resync` as a safety net.
    pub async fn follow_changes(
        self: Arc<Self>,
        store: Store,
        resync: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut feed = match store.credential_changes().await {
            Ok(Some(feed)) => feed,
            Ok(None) => {
                // One process: no announcements to follow, but a periodic reload still repairs
                // a refresh that failed after its change was committed.
                let mut ticker = tokio::time::interval(resync);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = ticker.tick() => {
                            if let Err(e) = self.reload_all(&store).await {
                                tracing::warn!(error = %e, "periodic credential reload failed");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot follow credential changes of other replicas");
                return;
            }
        };
        let mut ticker = tokio::time::interval(resync);
        ticker.tick().await;
        loop {
            let result = tokio::select! {
                _ = stop.changed() => return,
                _ = ticker.tick() => self.reload_all(&store).await,
                change = feed.next() => match change {
                    Ok(Change::User { origin, user }) if origin != self.origin => self.refresh_user(&store, user).await,
                    Ok(Change::Session { origin, session }) if origin != self.origin => {
                        self.forget_session(session).await;
                        Ok(())
                    }
                    Ok(Change::User { .. } | Change::Rbac { .. } | Change::Session { .. } | Change::SigningKeys) => Ok(()),
                    Ok(Change::Resync) => self.reload_all(&store).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "credential change feed failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(())
                    }
                },
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not apply a credential change");
            }
        }
    }

    /// Checks a presented API key at `now_ms` (the server's clock): no lock, no I/O, no
    /// allocation. `None` for an unknown, wrong or expired key, or one whose user is gone.
    pub fn authenticate_api_key(&self, presented: &str, now_ms: i64) -> Option<Principal> {
        let digest = KeyDigest::of(presented.as_bytes());
        let key = self.keys.get(&digest.lookup)?;
        if !digest.verifies(&key.verifier) {
            return None;
        }
        if key.expires_at.is_some_and(|at| at <= now_ms) {
            return None;
        }
        let user = self.users.get(&key.user_id)?;
        self.touch(&user, &key, now_ms);
        Some(Principal {
            user,
            credential: Credential::ApiKey(key.id),
            credential_org: key.org_id,
        })
    }

    /// Records use of a credential in memory; the flusher writes it to the store in batches.
    fn touch(&self, user: &UserEntry, key: &KeyEntry, now: i64) {
        // Read before writing: a hot credential is used by every worker thread many times a
        // millisecond, and a write (even of the same value) takes its cache line from the
        // others each time.
        if user.last_access.load(Ordering::Relaxed) < now {
            user.last_access.fetch_max(now, Ordering::Relaxed);
        }
        if key.last_used.load(Ordering::Relaxed) < now {
            key.last_used.fetch_max(now, Ordering::Relaxed);
        }
        if !user.dirty.load(Ordering::Acquire) && !user.dirty.swap(true, Ordering::AcqRel) {
            let _ = self.activity.send(Touched::User(user.id));
        }
        if !key.dirty.load(Ordering::Acquire) && !key.dirty.swap(true, Ordering::AcqRel) {
            let _ = self.activity.send(Touched::Key(key.lookup));
        }
    }

    /// Reloads one user's entries (user, memberships, keys) from the store, in this process only.
    pub async fn refresh_user(&self, store: &Store, user: UserId) -> Result<(), AuthnError> {
        let mut index = self.writer.lock().await;
        let fresh = store.load_credentials(user).await?;
        let old_lookups = index.remove(&user).unwrap_or_default();
        // New entries replace old ones in place (a valid key is never missing in between), and
        // only the keys that are gone are removed; unflushed activity carries over.
        let entries = fresh.as_ref().map(key_entries).unwrap_or_default();
        let new_lookups: Vec<[u8; 16]> = entries.iter().map(|(l, _)| *l).collect();
        for (lookup, entry) in entries {
            if let Some(old) = self.keys.get(&lookup) {
                entry
                    .last_used
                    .store(old.last_used.load(Ordering::Relaxed), Ordering::Relaxed);
                entry
                    .dirty
                    .store(old.dirty.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            self.keys.change(&lookup, |m| {
                m.insert(lookup, Arc::new(entry));
            });
        }
        for lookup in old_lookups.iter().filter(|l| !new_lookups.contains(l)) {
            self.keys.change(lookup, |m| {
                m.remove(lookup);
            });
        }
        match fresh {
            None => self.users.change(&user, |m| {
                m.remove(&user);
            }),
            Some(c) => {
                index.insert(user, new_lookups);
                let carried = self.users.get(&user);
                let entry = Arc::new(user_entry(&c, carried.as_deref()));
                self.users.change(&user, |m| {
                    m.insert(user, entry);
                });
            }
        }
        Ok(())
    }

    /// A user's entry.
    pub fn user(&self, user: UserId) -> Option<Arc<UserEntry>> {
        self.users.get(&user)
    }

    /// Takes the activity of one user (clearing its mark), for the flusher.
    pub(crate) fn take_user_activity(&self, user: UserId) -> Option<i64> {
        let entry = self.users.get(&user)?;
        entry.dirty.store(false, Ordering::Release);
        Some(entry.last_access.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Takes the activity of one key (clearing its mark), for the flusher.
    pub(crate) fn take_key_activity(&self, lookup: &[u8; 16]) -> Option<(KeyId, i64)> {
        let entry = self.keys.get(lookup)?;
        entry.dirty.store(false, Ordering::Release);
        Some((entry.id, entry.last_used.load(Ordering::Relaxed))).filter(|&(_, t)| t > 0)
    }

    /// How many keys and users are loaded.
    pub fn sizes(&self) -> (usize, usize) {
        (self.keys.len(), self.users.len())
    }
}
