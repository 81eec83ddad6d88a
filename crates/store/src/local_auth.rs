//! Local users' credentials and login sessions: password hashes, reset tokens, TOTP factors and
//! recovery codes, failed-login counting and locks, login challenges, sessions with their refresh
//! tokens, token signing keys and the mail outbox.
//!
//! Time rules read the caller's clock: every function that compares with "now" takes it. Checks
//! that must hold across replicas (a TOTP step used once, a recovery code or reset link used once,
//! a refresh token spent once) are single conditional `UPDATE`s, so two replicas racing on the
//! same secret cannot both win.

use portcullis_model::{OrgId, SessionId, Timestamp, UserId};
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::users::user_row;
use crate::{OrgRecord, Store, StoreError, UserRecord, rows};

/// A stored password.
#[derive(Debug, Clone)]
pub struct PasswordRecord {
    /// argon2id PHC string.
    pub phc: String,
    /// Set by an admin: must be changed at the next login.
    pub temporary: bool,
    /// A temporary password stops working at this time.
    pub expires_at: Option<i64>,
}

/// What a password login reads of the account an address names, in one query.
#[derive(Debug, Clone)]
pub struct LoginCandidate {
    /// The user with that address (of any kind).
    pub user: UserRecord,
    /// Their password, if they have one.
    pub password: Option<PasswordRecord>,
    /// The end of a lock in force, if the account is locked.
    pub locked_until: Option<i64>,
}

/// Stands for "no user" where a login for an address without an account must run the same
/// statements as one with an account (the statements then match no row).
const NO_USER: &str = "00000000-0000-0000-0000-000000000000";

/// How a password is being set, for the audit trail and the rules that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// An admin set a temporary password (at creation or later).
    Temporary {
        /// When it stops working.
        expires_at: i64,
    },
    /// The user changed their own password.
    ByUser,
}

/// A TOTP factor as stored.
#[derive(Debug, Clone)]
pub struct TotpRecord {
    /// The secret, sealed with the server key.
    pub secret_sealed: String,
    /// Confirmed with a code (enrollment finished).
    pub confirmed: bool,
    /// The last time step accepted, so no code is accepted twice.
    pub last_step: i64,
}

/// The stage of a session: only `Active` sessions reach anything but the login steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Fully logged in.
    Active,
    /// Logged in with a temporary password: must change it first.
    PasswordChange,
    /// The org requires MFA and the user has none: must enroll first.
    MfaEnrollment,
}

impl SessionStage {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::PasswordChange => "password_change",
            Self::MfaEnrollment => "mfa_enrollment",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "password_change" => Self::PasswordChange,
            "mfa_enrollment" => Self::MfaEnrollment,
            _ => return None,
        })
    }
}

/// A login session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Id (the `sid` claim).
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// The org it was opened for.
    pub org_id: Option<OrgId>,
    /// What the session may do yet.
    pub stage: SessionStage,
    /// Opened.
    pub created_at: i64,
    /// Absolute end.
    pub expires_at: i64,
    /// Idle logout after this many milliseconds without a request (none: no idle logout).
    pub idle_ms: Option<i64>,
    /// Last request seen (batched).
    pub last_seen_at: i64,
    /// Revoked at.
    pub revoked_at: Option<i64>,
    /// The client that opened it (user agent), for the session list.
    pub client: String,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is spent now and the new one replaces it.
    Rotated(SessionId),
    /// The token was already spent: someone replayed it, so its session is revoked.
    Reused(SessionId),
    /// No such token.
    Unknown,
}

/// A token signing key.
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// JWS algorithm (`EdDSA`).
    pub alg: String,
    /// The private key, sealed with the server key.
    pub private_sealed: String,
    /// The public key (base64url, raw).
    pub public_key: String,
    /// Created.
    pub created_at: i64,
    /// Signs from this time on (published before, so verifiers know it in advance).
    pub active_from: i64,
}

/// A mail waiting in the outbox.
#[derive(Debug, Clone)]
pub struct MailRecord {
    /// Id.
    pub id: String,
    /// To.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// The body, sealed (it may hold a temporary password or a reset link).
    pub body_sealed: String,
    /// Attempts so far.
    pub attempts: i64,
}

fn session_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: rows::id(row, "id")?,
        user_id: rows::id(row, "user_id")?,
        org_id: rows::opt_id(row, "org_id")?,
        stage: rows::parsed(row, "stage", SessionStage::parse)?,
        created_at: rows::int(row, "created_at")?,
        expires_at: rows::int(row, "expires_at")?,
        idle_ms: rows::opt_time(row, "idle_ms")?.map(|t| t.0),
        last_seen_at: rows::int(row, "last_seen_at")?,
        revoked_at: rows::opt_time(row, "revoked_at")?.map(|t| t.0),
        client: rows::text(row, "client")?,
    })
}

fn signing_key_row(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: rows::text(row, "kid")?,
        alg: rows::text(row, "alg")?,
        private_sealed: rows::text(row, "private_sealed")?,
        public_key: rows::text(row, "public_key")?,
        created_at: rows::int(row, "created_at")?,
        active_from: rows::int(row, "active_from")?,
    })
}

/// Where an authentication event about `user` is filed: the org the login was for.
type OrgRef<'a> = Option<(&'a OrgId, &'a str)>;

fn org_ref(org: Option<&OrgRecord>) -> OrgRef<'_> {
    org.map(|o| (&o.id, o.slug.as_str()))
}

fn target(org: Option<&OrgRecord>, user: &UserRecord) -> String {
    audit::user_target(org.map_or("default", |o| o.slug.as_str()), &user.username)
}

/// One refused password login, as [`Store::record_refused_login`] writes it.
struct RefusedLogin<'a> {
    org: Option<&'a OrgRecord>,
    /// The local account the address names (`None`: no local account).
    account: Option<&'a UserRecord>,
    outcome: &'static str,
    details: serde_json::Value,
    /// For a failure that counts towards a lock: the failures that lock the account and the
    /// window they are counted in (and the lock lasts).
    lockout: Option<(u32, i64)>,
    now: i64,
}

fn login_candidate_row(row: &AnyRow) -> Result<LoginCandidate, StoreError> {
    let user = user_row(row)?;
    let password = rows::opt_text(row, "password_phc")?
        .map(|phc| -> Result<PasswordRecord, StoreError> {
            Ok(PasswordRecord {
                phc,
                temporary: rows::flag(row, "password_temporary")?,
                expires_at: rows::opt_time(row, "password_expires_at")?.map(|t| t.0),
            })
        })
        .transpose()?;
    Ok(LoginCandidate {
        user,
        password,
        locked_until: rows::opt_time(row, "lock_until")?.map(|t| t.0),
    })
}

impl Store {
    /// A user by email, case-insensitively.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE email_lower = $1")
            .bind(email.to_lowercase())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    /// Everything a password login reads before checking the password: the account `email`
    /// names (case-insensitively), its password and lock at `now`, and its active orgs. The
    /// same two queries run whether or not the address has an account, so that the time taken
    /// does not tell.
    pub async fn login_context(
        &self,
        email: &str,
        now: i64,
    ) -> Result<(Option<LoginCandidate>, Vec<OrgRecord>), StoreError> {
        let row = sqlx::query(
            "SELECT u.*, p.phc AS password_phc, p.temporary AS password_temporary, \
             p.expires_at AS password_expires_at, l.locked_until AS lock_until \
             FROM users u \
             LEFT JOIN local_passwords p ON p.user_id = u.id \
             LEFT JOIN account_locks l ON l.user_id = u.id AND l.locked_until > $2 \
             WHERE u.email_lower = $1",
        )
        .bind(email.to_lowercase())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let candidate = row.as_ref().map(login_candidate_row).transpose()?;
        let id = candidate
            .as_ref()
            .map_or_else(|| NO_USER.to_owned(), |c| c.user.id.to_string());
        let orgs = self.active_orgs_by_id(id).await?;
        Ok((candidate, orgs))
    }

    /// The orgs where `user` is an active member (for the settings that bind them).
    pub async fn active_orgs_of(&self, user: UserId) -> Result<Vec<OrgRecord>, StoreError> {
        self.active_orgs_by_id(user.to_string()).await
    }

    async fn active_orgs_by_id(&self, user_id: String) -> Result<Vec<OrgRecord>, StoreError> {
        let found = sqlx::query(
            "SELECT o.* FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE m.user_id = $1 AND m.status = 'active' ORDER BY o.slug",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(crate::orgs::org_row).collect()
    }

    /// The user's password, if they have one.
    pub async fn password_of(&self, user: UserId) -> Result<Option<PasswordRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM local_passwords WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(PasswordRecord {
                phc: rows::text(&r, "phc")?,
                temporary: rows::flag(&r, "temporary")?,
                expires_at: rows::opt_time(&r, "expires_at")?.map(|t| t.0),
            })
        })
        .transpose()
    }

    /// Sets a user's password. A password the user chose also ends every other session of the
    /// user except `keep`; a temporary one ends all of them.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_password(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        phc: &str,
        change: PasswordChange,
        keep: Option<SessionId>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let (temporary, expires_at) = match change {
            PasswordChange::Temporary { expires_at } => (1_i64, Some(expires_at)),
            PasswordChange::ByUser => (0, None),
        };
        sqlx::query("DELETE FROM local_passwords WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO local_passwords (user_id, phc, temporary, expires_at, changed_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(user.id.to_string())
            .bind(phc)
            .bind(temporary)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        revoke_sessions_in(&mut tx, user.id, keep, now).await?;
        let action = match change {
            PasswordChange::Temporary { .. } => "password.temporary_set",
            PasswordChange::ByUser => "password.change",
        };
        audit::record(
            &mut tx,
            actor,
            org_ref(org),
            action,
            &target(org, user),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a password-reset token (its digest) for `user`.
    pub async fn create_password_reset(
        &self,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user.id.to_string())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        let actor = Actor::system();
        audit::record(
            &mut tx,
            &actor,
            org_ref(org),
            "password.reset_requested",
            &target(org, user),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses a reset token once: sets the new password, ends every session of the user and the
    /// lock of the account. `NotFound` when the token is unknown, used or expired.
    pub async fn reset_password(
        &self,
        token_hash: &str,
        phc: &str,
        now: i64,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.write().await?;
        let invalid = || StoreError::NotFound("this reset link is invalid, used or expired".into());
        let row = sqlx::query("SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(invalid)?;
        let user_id: UserId = rows::id(&row, "user_id")?;
        let used = sqlx::query(
            "UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Err(invalid());
        }
        let user = user_row(
            &sqlx::query("SELECT * FROM users WHERE id = $1")
                .bind(user_id.to_string())
                .fetch_one(&mut *tx)
                .await?,
        )?;
        sqlx::query("DELETE FROM local_passwords WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO local_passwords (user_id, phc, temporary, expires_at, changed_at) VALUES ($1, $2, 0, NULL, $3)")
            .bind(user_id.to_string())
            .bind(phc)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        revoke_sessions_in(&mut tx, user_id, None, now).await?;
        for cleanup in [
            "DELETE FROM login_failures WHERE user_id = $1",
            "DELETE FROM account_locks WHERE user_id = $1",
        ] {
            sqlx::query(cleanup)
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let actor = Actor::user(&user);
        audit::record(
            &mut tx,
            &actor,
            None,
            "password.reset",
            &target(None, &user),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The user a live (unused, unexpired) reset token belongs to.
    pub async fn reset_token_user(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        let row = sqlx::query("SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::id(&r, "user_id")).transpose()
    }

    /// The sessions of `user` revoked at or after `since` (to refuse them in memory at once).
    pub async fn sessions_revoked_since(
        &self,
        user: UserId,
        since: i64,
    ) -> Result<Vec<SessionId>, StoreError> {
        let found = sqlx::query("SELECT id FROM sessions WHERE user_id = $1 AND revoked_at >= $2")
            .bind(user.to_string())
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(|r| rows::id(r, "id")).collect()
    }

    /// Until when the account is locked, if it is.
    pub async fn locked_until(&self, user: UserId, now: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT locked_until FROM account_locks WHERE user_id = $1 AND locked_until > $2",
        )
        .bind(user.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| rows::int(&r, "locked_until")).transpose()
    }

    /// Records one refused login of `user` (`reason`). When `lockout` is `Some((max,
    /// window_ms))` it counts as a failure, and when the failures within the window reach `max`
    /// the account is locked for the window; returns the end of the lock when this failure
    /// locked it. With `None` (lockout off, or a refusal after a right password) nothing is
    /// counted.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_login_failure(
        &self,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        reason: &str,
        lockout: Option<(u32, i64)>,
        client: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.record_refused_login(RefusedLogin {
            org,
            account: Some(user),
            outcome: "failure",
            details: serde_json::json!({ "reason": reason, "client": client }),
            lockout,
            now,
        })
        .await
    }

    /// Records a login refused because the account is locked (not counted as a failure). The
    /// statements are those of a counted failure, so that the time taken does not tell.
    pub async fn record_locked_login(
        &self,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        client: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.record_refused_login(RefusedLogin {
            org,
            account: Some(user),
            outcome: "denied",
            details: serde_json::json!({ "reason": "locked", "client": client }),
            lockout: None,
            now,
        })
        .await
        .map(|_| ())
    }

    /// Records a login for an address that names no local account (none, or an SSO or machine
    /// user's) in the platform's audit trail, with the statements of a counted failure, so that
    /// the time taken does not tell whether the account exists. The address is not recorded:
    /// what was typed may be a password, or an address with the password run into it.
    pub async fn record_unknown_login(
        &self,
        client: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.record_refused_login(RefusedLogin {
            org: None,
            account: None,
            outcome: "failure",
            details: serde_json::json!({ "reason": "no local account", "client": client }),
            lockout: None,
            now,
        })
        .await
        .map(|_| ())
    }

    /// The one transaction of every refused password login: the audit record, the failed
    /// logins outside the window forgotten and this one counted (for a counted failure), and
    /// the lock placed when the count reaches the maximum. The statements are the same for every
    /// kind of refusal (they match no row where they do not apply), but for the lock itself:
    /// four statements more, once per window, on the failure that places it.
    async fn record_refused_login(&self, r: RefusedLogin<'_>) -> Result<Option<i64>, StoreError> {
        let (actor, audit_target, failures_of) = match r.account {
            Some(user) => (Actor::user(user), target(r.org, user), user.id.to_string()),
            None => (
                Actor {
                    user_id: None,
                    name: "anonymous".into(),
                    impersonator: None,
                    request_id: None,
                },
                "email:(no local account)".to_owned(),
                NO_USER.to_owned(),
            ),
        };
        let counted = r.account.zip(r.lockout);
        let mut tx = self.write().await?;
        audit::record_outcome(
            &mut tx,
            &actor,
            org_ref(r.org),
            "login",
            &audit_target,
            r.outcome,
            Some(r.details),
        )
        .await?;
        sqlx::query("DELETE FROM login_failures WHERE user_id = $1 AND at <= $2")
            .bind(failures_of.as_str())
            // Nothing is pruned for an uncounted refusal (its window is not known here).
            .bind(counted.map_or(i64::MIN, |(_, (_, window_ms))| r.now - window_ms))
            .execute(&mut *tx)
            .await?;
        // One statement whether or not it counts: it inserts a row only for a counted failure
        // of an account that exists.
        sqlx::query(
            "INSERT INTO login_failures (user_id, at) SELECT id, $2 FROM users WHERE id = $1 AND $3 = 1",
        )
        .bind(failures_of.as_str())
        .bind(r.now)
        .bind(i64::from(counted.is_some()))
        .execute(&mut *tx)
        .await?;
        let count = rows::int(
            &sqlx::query("SELECT COUNT(*) AS n FROM login_failures WHERE user_id = $1")
                .bind(failures_of.as_str())
                .fetch_one(&mut *tx)
                .await?,
            "n",
        )?;
        let mut locked = None;
        if let Some((_, (max, window_ms))) = counted
            && count >= i64::from(max)
        {
            let until = r.now + window_ms;
            sqlx::query("DELETE FROM account_locks WHERE user_id = $1")
                .bind(failures_of.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO account_locks (user_id, locked_until) VALUES ($1, $2)")
                .bind(failures_of.as_str())
                .bind(until)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM login_failures WHERE user_id = $1")
                .bind(failures_of.as_str())
                .execute(&mut *tx)
                .await?;
            audit::record(
                &mut tx,
                &Actor::system(),
                org_ref(r.org),
                "user.lock",
                &audit_target,
                Some(serde_json::json!({ "failures": count, "lockedUntil": Timestamp(until) })),
            )
            .await?;
            locked = Some(until);
        }
        tx.commit().await?;
        Ok(locked)
    }

    /// Forgets failed logins after a successful one.
    pub async fn clear_login_failures(&self, user: UserId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lifts a lock (an admin's action). Returns whether the account was locked.
    pub async fn unlock_user(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        user: &UserRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let lifted = sqlx::query("DELETE FROM account_locks WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM login_failures WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "user.unlock",
            &target(Some(org), user),
            Some(serde_json::json!({ "wasLocked": lifted })),
        )
        .await?;
        tx.commit().await?;
        Ok(lifted)
    }

    /// Stores the second-step token of a login (its digest).
    pub async fn create_login_challenge(
        &self,
        token_hash: &str,
        user: UserId,
        org: Option<OrgId>,
        browser: bool,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO login_challenges (token_hash, user_id, org_id, browser, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash)
            .bind(user.to_string())
            .bind(org.map(|o| o.to_string()))
            .bind(i64::from(browser))
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads a live challenge and counts one attempt at it; a challenge allows `max_attempts`
    /// codes, then it is gone. Returns the user, the org and whether it is a browser login.
    pub async fn attempt_login_challenge(
        &self,
        token_hash: &str,
        max_attempts: i64,
        now: i64,
    ) -> Result<Option<(UserId, Option<OrgId>, bool)>, StoreError> {
        let counted = sqlx::query("UPDATE login_challenges SET attempts = attempts + 1 WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3")
            .bind(token_hash)
            .bind(now)
            .bind(max_attempts)
            .execute(&self.pool)
            .await?;
        if counted.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM login_challenges WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                rows::id(&r, "user_id")?,
                rows::opt_id(&r, "org_id")?,
                rows::flag(&r, "browser")?,
            ))
        })
        .transpose()
    }

    /// Ends a challenge (used, or the login failed for good); also drops expired ones.
    pub async fn end_login_challenge(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_challenges WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user's TOTP factor, if any.
    pub async fn totp_of(&self, user: UserId) -> Result<Option<TotpRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM totp_factors WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TotpRecord {
                secret_sealed: rows::text(&r, "secret_sealed")?,
                confirmed: rows::flag(&r, "confirmed")?,
                last_step: rows::int(&r, "last_step")?,
            })
        })
        .transpose()
    }

    /// Starts (or restarts) a TOTP enrollment. `Conflict` when a confirmed factor exists.
    pub async fn begin_totp(
        &self,
        user: UserId,
        secret_sealed: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let confirmed =
            sqlx::query("SELECT 1 AS x FROM totp_factors WHERE user_id = $1 AND confirmed = 1")
                .bind(user.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if confirmed.is_some() {
            return Err(StoreError::Conflict(
                "TOTP is already enrolled; remove it before enrolling again".into(),
            ));
        }
        sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO totp_factors (user_id, secret_sealed, confirmed, last_step, created_at) VALUES ($1, $2, 0, 0, $3)")
            .bind(user.to_string())
            .bind(secret_sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Accepts the TOTP time step `step` for `user` once: false when this step (or a later one)
    /// was already used.
    pub async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE totp_factors SET last_step = $2 WHERE user_id = $1 AND last_step < $2",
        )
        .bind(user.to_string())
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Finishes an enrollment: the factor is confirmed and the recovery codes (digests) replace
    /// any earlier ones.
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        recovery_hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE totp_factors SET confirmed = 1 WHERE user_id = $1 AND confirmed = 0",
        )
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "no TOTP enrollment is in progress; start one first".into(),
            ));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user.id.to_string())
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        audit::record(
            &mut tx,
            actor,
            org_ref(org),
            "mfa.enroll",
            &target(org, user),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user's TOTP factor and recovery codes. Returns whether there was one.
    pub async fn remove_totp(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let removed = sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        if removed {
            audit::record(
                &mut tx,
                actor,
                org_ref(org),
                "mfa.remove",
                &target(org, user),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Uses a recovery code (its digest) once.
    pub async fn use_recovery_code(
        &self,
        user: UserId,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL")
            .bind(user.to_string())
            .bind(code_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Recovery codes not used yet.
    pub async fn recovery_codes_left(&self, user: UserId) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user.to_string())
        .fetch_one(&self.pool)
        .await?;
        rows::int(&row, "n")
    }

    /// Opens a session with its first refresh token (digest) and records the login.
    pub async fn create_session(
        &self,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        session: &SessionRecord,
        refresh_hash: &str,
        method: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO sessions (id, user_id, org_id, stage, created_at, expires_at, idle_ms, last_seen_at, client) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(session.id.to_string())
            .bind(session.user_id.to_string())
            .bind(session.org_id.map(|o| o.to_string()))
            .bind(session.stage.as_str())
            .bind(session.created_at)
            .bind(session.expires_at)
            .bind(session.idle_ms)
            .bind(session.last_seen_at)
            .bind(session.client.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(refresh_hash)
        .bind(session.id.to_string())
        .bind(session.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM login_failures WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        let actor = Actor::user(user);
        let details = serde_json::json!({
            "method": method,
            "session": session.id,
            "stage": session.stage.as_str(),
            "client": session.client,
        });
        audit::record(
            &mut tx,
            &actor,
            org_ref(org),
            "login",
            &target(org, user),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One session.
    pub async fn get_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(session_row)
            .transpose()
    }

    /// A user's sessions that are neither revoked nor past their absolute end.
    pub async fn list_sessions(
        &self,
        user: UserId,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let found = sqlx::query("SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC")
            .bind(user.to_string())
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(session_row).collect()
    }

    /// Moves a session to another stage (after a forced password change or MFA enrollment).
    pub async fn set_session_stage(
        &self,
        id: SessionId,
        stage: SessionStage,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET stage = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(stage.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes batched last-seen times (never moving one backwards).
    pub async fn touch_sessions(&self, seen: &[(SessionId, i64)]) -> Result<(), StoreError> {
        for (id, at) in seen {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
            )
            .bind(id.to_string())
            .bind(*at)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Revokes one session. Returns whether it was live.
    pub async fn revoke_session(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        id: SessionId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND user_id = $3 AND revoked_at IS NULL")
            .bind(id.to_string())
            .bind(now)
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if done {
            audit::record(
                &mut tx,
                actor,
                org_ref(org),
                "session.revoke",
                &target(org, user),
                Some(serde_json::json!({ "session": id, "reason": reason })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Revokes every live session of a user; returns their ids.
    pub async fn revoke_user_sessions(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        reason: &str,
        now: i64,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut tx = self.write().await?;
        let ids = revoke_sessions_in(&mut tx, user.id, None, now).await?;
        if !ids.is_empty() {
            audit::record(
                &mut tx,
                actor,
                org_ref(org),
                "session.revoke",
                &target(org, user),
                Some(serde_json::json!({ "sessions": ids, "reason": reason })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Presents a refresh token (digest): a current one is spent and replaced by `new_hash`; a
    /// spent one revokes its session (the token was stolen or replayed).
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut tx = self.write().await?;
        let Some(row) =
            sqlx::query("SELECT session_id, spent_at FROM refresh_tokens WHERE token_hash = $1")
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(RefreshOutcome::Unknown);
        };
        let session: SessionId = rows::id(&row, "session_id")?;
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL",
        )
        .bind(old_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 0;
        if spent {
            let revoked = sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(session.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if revoked {
                let owner = sqlx::query(
                    "SELECT u.* FROM users u JOIN sessions s ON s.user_id = u.id WHERE s.id = $1",
                )
                .bind(session.to_string())
                .fetch_one(&mut *tx)
                .await?;
                let user = user_row(&owner)?;
                audit::record(
                    &mut tx,
                    &Actor::system(),
                    None,
                    "session.revoke",
                    &target(None, &user),
                    Some(
                        serde_json::json!({ "session": session, "reason": "refresh token reused" }),
                    ),
                )
                .await?;
            }
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused(session));
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(new_hash)
        .bind(session.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated(session))
    }

    /// The signing keys not retired, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let found = sqlx::query(
            "SELECT * FROM signing_keys WHERE retired_at IS NULL ORDER BY active_from, created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(signing_key_row).collect()
    }

    /// Adds a signing key and retires all but the `keep` newest earlier ones (so the JWKS holds
    /// the new key, the current one and the previous ones still verifying tokens).
    pub async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        keep: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let live = sqlx::query("SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY active_from DESC, created_at DESC")
            .fetch_all(&mut *tx)
            .await?;
        for row in live.iter().skip(keep) {
            sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1")
                .bind(rows::text(row, "kid")?)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO signing_keys (kid, alg, private_sealed, public_key, created_at, active_from) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(key.kid.as_str())
            .bind(key.alg.as_str())
            .bind(key.private_sealed.as_str())
            .bind(key.public_key.as_str())
            .bind(key.created_at)
            .bind(key.active_from)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &Actor::system(),
            None,
            "signing_key.add",
            &format!("kid:{}", key.kid),
            Some(serde_json::json!({ "activeFrom": Timestamp(key.active_from) })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts a mail into the outbox.
    pub async fn enqueue_mail(
        &self,
        id: &str,
        recipient: &str,
        subject: &str,
        body_sealed: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO mail_outbox (id, recipient, subject, body_sealed, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(recipient)
            .bind(subject)
            .bind(body_sealed)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Mail not sent yet, oldest first, at most `limit`, skipping those tried `max_attempts`
    /// times.
    pub async fn pending_mail(
        &self,
        limit: i64,
        max_attempts: i64,
    ) -> Result<Vec<MailRecord>, StoreError> {
        let found = sqlx::query("SELECT * FROM mail_outbox WHERE sent_at IS NULL AND attempts < $2 ORDER BY created_at LIMIT $1")
            .bind(limit)
            .bind(max_attempts)
            .fetch_all(&self.pool)
            .await?;
        found
            .iter()
            .map(|r| {
                Ok(MailRecord {
                    id: rows::text(r, "id")?,
                    recipient: rows::text(r, "recipient")?,
                    subject: rows::text(r, "subject")?,
                    body_sealed: rows::text(r, "body_sealed")?,
                    attempts: rows::int(r, "attempts")?,
                })
            })
            .collect()
    }

    /// Marks a mail sent and drops its body (it may hold a secret).
    pub async fn mail_sent(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE mail_outbox SET sent_at = $2, body_sealed = '', attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts a failed delivery attempt.
    pub async fn mail_failed(&self, id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Revokes the live sessions of `user` inside `tx`, except `keep`; returns their ids.
async fn revoke_sessions_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: UserId,
    keep: Option<SessionId>,
    now: i64,
) -> Result<Vec<SessionId>, StoreError> {
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    let found = sqlx::query(
        "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2",
    )
    .bind(user.to_string())
    .bind(keep.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let ids = found
        .iter()
        .map(|r| rows::id(r, "id"))
        .collect::<Result<Vec<SessionId>, _>>()?;
    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL AND id <> $3")
        .bind(user.to_string())
        .bind(now)
        .bind(keep.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(ids)
}
