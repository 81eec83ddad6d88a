//! Login sessions in memory. A request with a session token is checked here without the
//! database: revoked, past its absolute end, or idle too long means refused. Only a session this
//! replica has not seen yet (opened on another replica) is read from the store, once; and a
//! session that looks idle is re-read before it is refused, because another replica may have
//! served its user in the meantime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use portcullis_model::{OrgId, SessionId, UserId};
use portcullis_store::{SessionRecord, SessionStage, Store};

use super::{Credential, Directory, Principal};
use crate::AuthnError;
use crate::activity::Touched;

/// What a connection that outlives its request learns of its session ([`Directory::session_watch`]).
pub enum SessionWatch {
    /// Good: the caller, for the route decision made again.
    Live(Principal),
    /// Idle past its limit as this replica knows it: the store may know of later requests.
    IdleHere,
    /// Over: revoked, expired, back to a forced step, unknown, or its user inactive.
    Ended,
}

/// A session as the directory knows it.
#[derive(Debug)]
pub struct SessionEntry {
    /// Id.
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// The org it was opened for.
    pub org_id: Option<OrgId>,
    /// What it may do yet.
    pub stage: SessionStage,
    /// Absolute end (ms).
    pub expires_at: i64,
    /// Idle limit (ms).
    pub idle_ms: Option<i64>,
    pub(crate) last_seen: AtomicI64,
    pub(crate) dirty: AtomicBool,
    revoked: AtomicBool,
}

impl SessionEntry {
    fn from_record(r: &SessionRecord) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            org_id: r.org_id,
            stage: r.stage,
            expires_at: r.expires_at,
            idle_ms: r.idle_ms,
            last_seen: AtomicI64::new(r.last_seen_at),
            dirty: AtomicBool::new(false),
            revoked: AtomicBool::new(r.revoked_at.is_some()),
        }
    }

    /// The last request seen (ms).
    pub fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    fn idle_at(&self, now: i64) -> bool {
        self.idle_ms
            .is_some_and(|idle| now - self.last_seen.load(Ordering::Relaxed) > idle)
    }
}

/// The answer for a presented session.
#[derive(Debug)]
pub enum SessionCheck {
    /// Live: the caller.
    Live(Principal),
    /// Revoked, expired, idle too long, unknown, or its user can no longer sign in.
    Refused(&'static str),
}

impl Directory {
    /// Checks session `id` at `now` (ms) and counts the request as activity. Reads the store
    /// only for a session not in memory, or one about to be refused as idle.
    pub async fn authenticate_session(
        &self,
        store: &Store,
        id: SessionId,
        now: i64,
    ) -> Result<SessionCheck, AuthnError> {
        let entry = match self.sessions.get(&id) {
            Some(entry) if !entry.idle_at(now) => entry,
            _ => match self.load_session(store, id).await? {
                Some(entry) => entry,
                None => return Ok(SessionCheck::Refused("unknown session")),
            },
        };
        Ok(self.check_entry(entry, now))
    }

    /// The in-memory part of [`Directory::authenticate_session`]: `None` when the store would
    /// have to be read. For benchmarks and the request path's fast case.
    pub fn authenticate_session_cached(&self, id: SessionId, now: i64) -> Option<SessionCheck> {
        let entry = self.sessions.get(&id)?;
        if entry.idle_at(now) {
            return None;
        }
        Some(self.check_entry(entry, now))
    }

    fn check_entry(&self, entry: Arc<SessionEntry>, now: i64) -> SessionCheck {
        if entry.revoked.load(Ordering::Acquire) {
            return SessionCheck::Refused("the session was revoked");
        }
        if now >= entry.expires_at {
            return SessionCheck::Refused("the session has expired");
        }
        if entry.idle_at(now) {
            return SessionCheck::Refused("the session ended after a period of inactivity");
        }
        let Some(user) = self.users.get(&entry.user_id) else {
            return SessionCheck::Refused("the user no longer exists");
        };
        if !user
            .memberships
            .values()
            .any(|m| m.status == portcullis_model::MembershipStatus::Active)
        {
            return SessionCheck::Refused("the user is deactivated");
        }
        user.last_access.fetch_max(now, Ordering::Relaxed);
        if !user.dirty.swap(true, Ordering::AcqRel) {
            let _ = self.activity.send(Touched::User(user.id));
        }
        entry.last_seen.fetch_max(now, Ordering::Relaxed);
        if !entry.dirty.swap(true, Ordering::AcqRel) {
            let _ = self.activity.send(Touched::Session(entry.id));
        }
        SessionCheck::Live(Principal {
            user,
            credential: Credential::Session(entry),
            credential_org: None,
        })
    }

    /// Reads one session from the store into memory (`None` when it does not exist).
    pub async fn load_session(
        &self,
        store: &Store,
        id: SessionId,
    ) -> Result<Option<Arc<SessionEntry>>, AuthnError> {
        let _guard = self.session_writer.lock().await;
        let Some(record) = store.get_session(id).await? else {
            self.sessions.change(&id, |m| {
                m.remove(&id);
            });
            return Ok(None);
        };
        let fresh = Arc::new(SessionEntry::from_record(&record));
        if let Some(old) = self.sessions.get(&id) {
            // Keep activity seen here that the store has not received yet.
            fresh
                .last_seen
                .fetch_max(old.last_seen.load(Ordering::Relaxed), Ordering::Relaxed);
            fresh
                .dirty
                .store(old.dirty.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let entry = fresh.clone();
        self.sessions.change(&id, |m| {
            m.insert(id, entry);
        });
        Ok(Some(fresh))
    }

    /// Puts a session just opened here into memory.
    pub async fn session_opened(&self, record: &SessionRecord) {
        let _guard = self.session_writer.lock().await;
        let entry = Arc::new(SessionEntry::from_record(record));
        self.sessions.change(&record.id, |m| {
            m.insert(record.id, entry);
        });
    }

    /// Call after a session was revoked or changed in the store, before answering: it is
    /// refused here at once and re-read by the other replicas.
    pub async fn session_changed(&self, store: &Store, id: SessionId) {
        if let Some(entry) = self.sessions.get(&id) {
            // Refused at once, even if the re-read below fails.
            entry.revoked.store(true, Ordering::Release);
        }
        if let Err(e) = self.load_session(store, id).await {
            tracing::warn!(error = %e, session = %id, "could not re-read a changed session; it stays refused here");
        }
        if let Err(e) = store.announce_session(&self.origin, id).await {
            tracing::warn!(error = %e, "could not announce a session change to other replicas");
        }
    }

    /// Another replica changed this session: forget it, so the next request reads it again.
    pub(crate) async fn forget_session(&self, id: SessionId) {
        let _guard = self.session_writer.lock().await;
        self.sessions.change(&id, |m| {
            m.remove(&id);
        });
    }

    /// Drops sessions that are over (revoked or past their end) from memory.
    pub async fn prune_sessions(&self, now: i64) {
        let _guard = self.session_writer.lock().await;
        self.sessions
            .retain(|s| !s.revoked.load(Ordering::Relaxed) && s.expires_at > now);
    }

    /// Takes the activity of one session (clearing its mark), for the flusher.
    pub(crate) fn take_session_activity(&self, id: SessionId) -> Option<i64> {
        let entry = self.sessions.get(&id)?;
        entry.dirty.store(false, Ordering::Release);
        Some(entry.last_seen.load(Ordering::Relaxed))
    }

    /// Whether session `id` is still good at `now` as this replica knows it right now: in
    /// memory, not revoked, before its end, not idle past its limit, past its forced steps
    /// (a password change, MFA enrollment), its user active somewhere: what a request would
    /// need. For connections that outlive their request (websockets), checked periodically
    /// without the store. Traffic on such a connection is not a request: an org's idle logout
    /// ends it as it ends the session (an open terminal left alone keeps pinging).
    pub fn session_still_live(&self, id: SessionId, now: i64) -> bool {
        matches!(self.session_watch(id, now), SessionWatch::Live(_))
    }

    /// [`Directory::session_still_live`], telling apart a session that only looks idle here:
    /// another replica may have served its requests since (its activity reaches this one
    /// through the store), so the watcher reads the store ([`Directory::load_session`]) before
    /// it ends a connection for that.
    pub fn session_watch(&self, id: SessionId, now: i64) -> SessionWatch {
        let Some(entry) = self.sessions.get(&id) else {
            return SessionWatch::Ended;
        };
        let Some(user) = self.users.get(&entry.user_id) else {
            return SessionWatch::Ended;
        };
        let user_active = user
            .memberships
            .values()
            .any(|m| m.status == portcullis_model::MembershipStatus::Active);
        if entry.revoked.load(Ordering::Acquire)
            || now >= entry.expires_at
            || entry.stage != SessionStage::Active
            || !user_active
        {
            return SessionWatch::Ended;
        }
        if entry.idle_at(now) {
            return SessionWatch::IdleHere;
        }
        SessionWatch::Live(Principal {
            user,
            credential: Credential::Session(entry),
            credential_org: None,
        })
    }

    /// The caller behind session `id` as this replica knows them right now, when
    /// [`Directory::session_still_live`] holds: for connections that outlive their request,
    /// whose route decision is made again with the caller's current groups.
    pub fn session_principal(&self, id: SessionId, now: i64) -> Option<Principal> {
        match self.session_watch(id, now) {
            SessionWatch::Live(principal) => Some(principal),
            SessionWatch::IdleHere | SessionWatch::Ended => None,
        }
    }

    /// Sessions in memory.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}
