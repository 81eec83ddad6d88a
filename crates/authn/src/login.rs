//! Local logins: password, then the second factor, then what is due before anything else
//! (a forced password change, MFA enrollment); sessions with rotating refresh tokens; password
//! changes and resets; TOTP enrollment; temporary passwords.
//!
//! A wrong password, an unknown email, a machine or SSO account and a locked account all get
//! the same answer and take the same time (an argon2 verification is always made), so the
//! answer says nothing about which accounts exist. Only once the password is proven does the
//! answer say more (temporary password expired, deactivated everywhere).

use std::sync::Arc;
use std::time::Duration;

use portcullis_model::{Clock, OrgSettings, SessionId, UserId, UserKind};
use portcullis_store::{
    Actor, LoginCandidate, OrgRecord, PasswordChange, RefreshOutcome, SessionRecord, SessionStage,
    Store, UserRecord,
};

use crate::mail::Mailer;
use crate::random::{digest, token};
use crate::tokens::{SessionClaims, TokenUser};
use crate::totp::{self, TotpSecret};
use crate::{AuthnError, Directory, KeyRing, SecretBox, password};

const TOTP_SEAL: &str = "totp";
/// A login waiting for its second factor lasts this long.
const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// Codes tried against one challenge before it is gone.
const CHALLENGE_ATTEMPTS: i64 = 5;

/// Settings of local logins that are not per org.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Lifetime of an API access token (a browser's `sid` lives as long as its session).
    pub access_token_ttl: Duration,
    /// The public base URL, for links in mail (reset links, the login page).
    pub public_url: String,
    /// The name authenticator apps show.
    pub totp_issuer: String,
}

/// Names of a user's groups in an org, for the token's `user.groups`.
pub type GroupsOf = Arc<dyn Fn(UserId, &str) -> Vec<String> + Send + Sync>;

/// A session just opened or refreshed, with its tokens.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The session.
    pub session: SessionRecord,
    /// The org (slug) it is for.
    pub org: Option<String>,
    /// The signed access token.
    pub access_token: String,
    /// When the access token expires (ms).
    pub access_expires_at: i64,
    /// The refresh token (shown once; stored as a digest).
    pub refresh_token: String,
}

/// Why a login step was refused; the message is safe to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown email, wrong password, locked, or an account that has no password.
    InvalidCredentials,
    /// The right temporary password, but too old.
    TemporaryPasswordExpired,
    /// The right password, but no active membership anywhere.
    Deactivated,
    /// A wrong, reused or missing TOTP / recovery code.
    InvalidCode,
    /// The second step came too late or too often.
    ChallengeExpired,
    /// A refresh token that is unknown, spent, or whose session is over.
    InvalidRefreshToken,
}

impl Refusal {
    /// What the user is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid email or password",
            Self::TemporaryPasswordExpired => {
                "the temporary password has expired; ask an org admin for a new one or reset your password"
            }
            Self::Deactivated => "your account is deactivated; ask an org admin to reactivate it",
            Self::InvalidCode => "invalid or already used verification code",
            Self::ChallengeExpired => "this login has expired; start again",
            Self::InvalidRefreshToken => "invalid, spent or expired refresh token",
        }
    }

    /// A stable code for API clients.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::TemporaryPasswordExpired => "temporary_password_expired",
            Self::Deactivated => "account_deactivated",
            Self::InvalidCode => "invalid_code",
            Self::ChallengeExpired => "login_expired",
            Self::InvalidRefreshToken => "invalid_refresh_token",
        }
    }
}

/// What a login step led to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// A session (possibly in a stage that must be completed first).
    Issued(Box<Issued>),
    /// The password was right; a TOTP or recovery code is needed. Present it with this token.
    SecondFactor {
        /// The single-use token of this login.
        challenge: String,
    },
    /// Refused.
    Refused(Refusal),
}

/// A password login.
#[derive(Debug, Clone, Copy)]
pub struct PasswordLogin<'a> {
    /// Email (case does not matter).
    pub email: &'a str,
    /// Password.
    pub password: &'a str,
    /// A TOTP code, to do both steps at once.
    pub totp_code: Option<&'a str>,
    /// Or a recovery code.
    pub recovery_code: Option<&'a str>,
    /// The org to open the session for (default: `default`, else the first).
    pub org: Option<&'a str>,
    /// A browser login (cookies) rather than an API client.
    pub browser: bool,
    /// The client (user agent), for the session list and the audit trail.
    pub client: &'a str,
}

/// A TOTP enrollment in progress.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The secret, base32.
    pub secret: String,
    /// The `otpauth://` URI.
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG).
    pub qr_svg: String,
}

/// The local login service.
pub struct LocalAuth {
    store: Store,
    directory: Arc<Directory>,
    keys: Arc<KeyRing>,
    secret_box: SecretBox,
    mailer: Arc<Mailer>,
    clock: Clock,
    settings: LoginSettings,
    groups_of: GroupsOf,
}

impl std::fmt::Debug for LocalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAuth").finish_non_exhaustive()
    }
}

impl LocalAuth {
    /// The service.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        directory: Arc<Directory>,
        keys: Arc<KeyRing>,
        secret_box: SecretBox,
        mailer: Arc<Mailer>,
        clock: Clock,
        settings: LoginSettings,
        groups_of: GroupsOf,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            directory,
            keys,
            secret_box,
            mailer,
            clock,
            settings,
            groups_of,
        })
    }

    /// The settings binding `user`: the strictest of their active orgs, and those orgs.
    async fn binding_settings(
        &self,
        user: UserId,
    ) -> Result<(OrgSettings, Vec<OrgRecord>), AuthnError> {
        let orgs = self.store.active_orgs_of(user).await?;
        let settings = OrgSettings::strictest(orgs.iter().map(|o| &o.settings)).unwrap_or_default();
        Ok((settings, orgs))
    }

    /// The shortest password `user` may choose.
    pub async fn min_password_len(&self, user: UserId) -> Result<usize, AuthnError> {
        Ok(self.binding_settings(user).await?.0.password_min_length as usize)
    }

    /// Step one of a login.
    pub async fn login(&self, req: PasswordLogin<'_>) -> Result<LoginOutcome, AuthnError> {
        let now = self.clock.now_millis();
        let refuse = |r| Ok(LoginOutcome::Refused(r));
        // An address without a local account, a locked account and a wrong password get the
        // same answer after the same work: the same reads, one argon2 verification, and one
        // write of the same statements (the audit record and the failure count), so that
        // neither the answer nor its timing tells which accounts exist. (The failure that
        // places a lock writes the lock too: once per lockout window.)
        let (candidate, orgs) = self.store.login_context(req.email.trim(), now).await?;
        let settings = OrgSettings::strictest(orgs.iter().map(|o| &o.settings)).unwrap_or_default();
        let audit_org = orgs.first();
        let Some(candidate) = candidate.filter(|c| c.user.kind == UserKind::Local) else {
            // Unknown, machine or SSO.
            password::verify_off_thread(None, req.password).await;
            self.store
                .record_unknown_login(Some(req.client), now)
                .await?;
            return refuse(Refusal::InvalidCredentials);
        };
        let LoginCandidate {
            user,
            password: stored,
            locked_until,
        } = candidate;
        if locked_until.is_some() {
            password::verify_off_thread(None, req.password).await;
            self.store
                .record_locked_login(audit_org, &user, Some(req.client), now)
                .await?;
            return refuse(Refusal::InvalidCredentials);
        }
        let verified =
            password::verify_off_thread(stored.as_ref().map(|p| p.phc.clone()), req.password).await;
        if !verified {
            self.count_failure(audit_org, &user, &settings, "password", req.client, now)
                .await?;
            return refuse(Refusal::InvalidCredentials);
        }
        let Some(stored) = stored else {
            return refuse(Refusal::InvalidCredentials);
        };
        if stored.temporary && stored.expires_at.is_some_and(|at| at <= now) {
            self.store
                .record_login_failure(
                    audit_org,
                    &user,
                    "temporary password expired",
                    None,
                    Some(req.client),
                    now,
                )
                .await?;
            return refuse(Refusal::TemporaryPasswordExpired);
        }
        if orgs.is_empty() {
            self.store
                .record_login_failure(None, &user, "deactivated", None, Some(req.client), now)
                .await?;
            return refuse(Refusal::Deactivated);
        }
        let org = pick_org(&orgs, req.org);
        let totp = self.store.totp_of(user.id).await?.filter(|t| t.confirmed);
        if totp.is_some() {
            if req.totp_code.is_none() && req.recovery_code.is_none() {
                let challenge = token("pcc_")?;
                self.store
                    .create_login_challenge(
                        &digest("challenge", &challenge),
                        user.id,
                        org.map(|o| o.id),
                        req.browser,
                        now + CHALLENGE_TTL_MS,
                    )
                    .await?;
                return Ok(LoginOutcome::SecondFactor { challenge });
            }
            let Some(method) = self
                .check_second_factor(&user, req.totp_code, req.recovery_code, now)
                .await?
            else {
                self.count_failure(audit_org, &user, &settings, "code", req.client, now)
                    .await?;
                return refuse(Refusal::InvalidCode);
            };
            let issued = self
                .open_session(
                    &user,
                    org,
                    &settings,
                    stored.temporary,
                    true,
                    req.browser,
                    req.client,
                    method,
                )
                .await?;
            return Ok(LoginOutcome::Issued(Box::new(issued)));
        }
        let issued = self
            .open_session(
                &user,
                org,
                &settings,
                stored.temporary,
                false,
                req.browser,
                req.client,
                "password",
            )
            .await?;
        Ok(LoginOutcome::Issued(Box::new(issued)))
    }

    /// Step two of a login: the code for a challenge.
    pub async fn second_factor(
        &self,
        challenge: &str,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
        client: &str,
    ) -> Result<LoginOutcome, AuthnError> {
        let now = self.clock.now_millis();
        let hash = digest("challenge", challenge);
        let Some((user_id, org_id, browser)) = self
            .store
            .attempt_login_challenge(&hash, CHALLENGE_ATTEMPTS, now)
            .await?
        else {
            return Ok(LoginOutcome::Refused(Refusal::ChallengeExpired));
        };
        let user = self.store.get_user(user_id).await?;
        let (settings, orgs) = self.binding_settings(user.id).await?;
        if self.store.locked_until(user.id, now).await?.is_some() || orgs.is_empty() {
            self.store.end_login_challenge(&hash, now).await?;
            return Ok(LoginOutcome::Refused(Refusal::ChallengeExpired));
        }
        let Some(method) = self
            .check_second_factor(&user, totp_code, recovery_code, now)
            .await?
        else {
            self.count_failure(orgs.first(), &user, &settings, "code", client, now)
                .await?;
            return Ok(LoginOutcome::Refused(Refusal::InvalidCode));
        };
        self.store.end_login_challenge(&hash, now).await?;
        let temporary = self
            .store
            .password_of(user.id)
            .await?
            .is_some_and(|p| p.temporary);
        let org = orgs
            .iter()
            .find(|o| Some(o.id) == org_id)
            .or_else(|| pick_org(&orgs, None));
        let issued = self
            .open_session(
                &user, org, &settings, temporary, true, browser, client, method,
            )
            .await?;
        Ok(LoginOutcome::Issued(Box::new(issued)))
    }

    async fn count_failure(
        &self,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        settings: &OrgSettings,
        reason: &str,
        client: &str,
        now: i64,
    ) -> Result<(), AuthnError> {
        let lockout = settings.lockout.enabled.then(|| {
            (
                settings.lockout.max_attempts,
                i64::from(settings.lockout.window_minutes) * 60_000,
            )
        });
        if let Some(until) = self
            .store
            .record_login_failure(org, user, reason, lockout, Some(client), now)
            .await?
        {
            tracing::warn!(user = %user.email, until, "account locked after repeated failed logins");
        }
        Ok(())
    }

    /// Checks a TOTP code (once per time step) or a recovery code (once); returns the method.
    async fn check_second_factor(
        &self,
        user: &UserRecord,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
        now: i64,
    ) -> Result<Option<&'static str>, AuthnError> {
        if let Some(code) = totp_code.filter(|c| !c.trim().is_empty()) {
            let Some(factor) = self.store.totp_of(user.id).await?.filter(|t| t.confirmed) else {
                return Ok(None);
            };
            let secret =
                TotpSecret::from_bytes(self.secret_box.open(TOTP_SEAL, &factor.secret_sealed)?);
            let Some(step) = secret.matching_step(code, (now / 1000).max(0) as u64) else {
                return Ok(None);
            };
            let fresh = self.store.use_totp_step(user.id, step as i64).await?;
            return Ok(fresh.then_some("totp"));
        }
        if let Some(code) = recovery_code.filter(|c| !c.trim().is_empty()) {
            let used = self
                .store
                .use_recovery_code(user.id, &totp::recovery_digest(code), now)
                .await?;
            return Ok(used.then_some("recovery_code"));
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_session(
        &self,
        user: &UserRecord,
        org: Option<&OrgRecord>,
        settings: &OrgSettings,
        temporary: bool,
        has_mfa: bool,
        browser: bool,
        client: &str,
        method: &str,
    ) -> Result<Issued, AuthnError> {
        let now = self.clock.now_millis();
        let stage = if temporary {
            SessionStage::PasswordChange
        } else if settings.mfa_required && !has_mfa {
            SessionStage::MfaEnrollment
        } else {
            SessionStage::Active
        };
        let session = SessionRecord {
            id: SessionId::new(),
            user_id: user.id,
            org_id: org.map(|o| o.id),
            stage,
            created_at: now,
            expires_at: now + i64::from(settings.session_lifetime_hours) * 3_600_000,
            idle_ms: settings
                .idle_logout
                .enabled
                .then(|| i64::from(settings.idle_logout.minutes) * 60_000),
            last_seen_at: now,
            revoked_at: None,
            client: client.chars().take(200).collect(),
        };
        let refresh_token = token("pcr_")?;
        self.store
            .create_session(
                org,
                user,
                &session,
                &digest("refresh", &refresh_token),
                method,
            )
            .await?;
        self.directory.session_opened(&session).await;
        let org_slug = org.map(|o| o.slug.clone());
        let (access_token, access_expires_at) =
            self.access_token(user, &session, org_slug.as_deref(), browser)?;
        Ok(Issued {
            session,
            org: org_slug,
            access_token,
            access_expires_at,
            refresh_token,
        })
    }

    /// Signs an access token for a session: a browser's lives as long as the session (the
    /// server-side checks end it sooner); an API client's for the access-token lifetime.
    fn access_token(
        &self,
        user: &UserRecord,
        session: &SessionRecord,
        org: Option<&str>,
        browser: bool,
    ) -> Result<(String, i64), AuthnError> {
        let now = self.clock.now_millis();
        let exp_ms = if browser {
            session.expires_at
        } else {
            session
                .expires_at
                .min(now + self.settings.access_token_ttl.as_millis() as i64)
        };
        let groups = org
            .map(|o| (self.groups_of)(user.id, o))
            .unwrap_or_default();
        let claims = SessionClaims {
            sub: user.id.to_string(),
            iss: self.keys.issuer().to_owned(),
            aud: self.keys.audience().to_owned(),
            exp: (exp_ms / 1000).max(0) as u64,
            iat: (now / 1000).max(0) as u64,
            jti: token("")?,
            sid: session.id.to_string(),
            org: org.map(str::to_owned),
            user: TokenUser {
                user_id: user.id.to_string(),
                groups,
                email: user.email.clone(),
                name: if user.display_name.is_empty() {
                    user.username.clone()
                } else {
                    user.display_name.clone()
                },
            },
        };
        Ok((self.keys.sign(&claims, now)?, exp_ms))
    }

    /// Rotates a refresh token: the presented one is spent and a new pair is issued. A token
    /// presented a second time revokes its whole session.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        browser: bool,
    ) -> Result<Result<Issued, Refusal>, AuthnError> {
        let now = self.clock.now_millis();
        let new_token = token("pcr_")?;
        let outcome = self
            .store
            .rotate_refresh_token(
                &digest("refresh", refresh_token),
                &digest("refresh", &new_token),
                now,
            )
            .await?;
        let session_id = match outcome {
            RefreshOutcome::Unknown => return Ok(Err(Refusal::InvalidRefreshToken)),
            RefreshOutcome::Reused(id) => {
                tracing::warn!(session = %id, "a spent refresh token was presented again: session revoked");
                self.directory.session_changed(&self.store, id).await;
                return Ok(Err(Refusal::InvalidRefreshToken));
            }
            RefreshOutcome::Rotated(id) => id,
        };
        // The session as this replica knows it (activity seen here but not yet flushed
        // counts), then the same checks as any request: revoked, past its end, idle, user
        // gone or deactivated. A refresh is activity.
        let Some(entry) = self.directory.load_session(&self.store, session_id).await? else {
            return Ok(Err(Refusal::InvalidRefreshToken));
        };
        if let crate::SessionCheck::Refused(_) = self
            .directory
            .authenticate_session(&self.store, entry.id, now)
            .await?
        {
            return Ok(Err(Refusal::InvalidRefreshToken));
        }
        let Some(session) = self.store.get_session(session_id).await? else {
            return Ok(Err(Refusal::InvalidRefreshToken));
        };
        let user = self.store.get_user(session.user_id).await?;
        let org = match session.org_id {
            Some(id) => Some(self.store.get_org_by_id(id).await?.slug),
            None => None,
        };
        let (access_token, access_expires_at) =
            self.access_token(&user, &session, org.as_deref(), browser)?;
        Ok(Ok(Issued {
            session,
            org,
            access_token,
            access_expires_at,
            refresh_token: new_token,
        }))
    }

    /// Ends a session (logout).
    pub async fn logout(&self, session: SessionId) -> Result<(), AuthnError> {
        let now = self.clock.now_millis();
        let Some(record) = self.store.get_session(session).await? else {
            return Ok(());
        };
        let user = self.store.get_user(record.user_id).await?;
        self.store
            .revoke_session(&Actor::user(&user), None, &user, session, "logout", now)
            .await?;
        self.directory.session_changed(&self.store, session).await;
        Ok(())
    }

    /// Revokes one session of `user` (an admin's or the user's action). Returns whether it was
    /// live.
    pub async fn revoke_session(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        session: SessionId,
    ) -> Result<bool, AuthnError> {
        let now = self.clock.now_millis();
        let done = self
            .store
            .revoke_session(actor, org, user, session, "revoked", now)
            .await?;
        self.directory.session_changed(&self.store, session).await;
        Ok(done)
    }

    /// Revokes every session of `user`; returns how many.
    pub async fn revoke_all_sessions(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
        reason: &str,
    ) -> Result<usize, AuthnError> {
        let now = self.clock.now_millis();
        let ids = self
            .store
            .revoke_user_sessions(actor, org, user, reason, now)
            .await?;
        for id in &ids {
            self.directory.session_changed(&self.store, *id).await;
        }
        Ok(ids.len())
    }

    /// The live sessions of `user`.
    pub async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>, AuthnError> {
        let now = self.clock.now_millis();
        Ok(self
            .store
            .list_sessions(user, now)
            .await?
            .into_iter()
            .filter(|s| s.idle_ms.is_none_or(|idle| now - s.last_seen_at <= idle))
            .collect())
    }

    /// The user changes their password from within session `session`. The current password is
    /// required; the other sessions end; a session waiting for this change moves on.
    pub async fn change_password(
        &self,
        user: &UserRecord,
        session: Option<SessionId>,
        current: &str,
        new: &str,
    ) -> Result<Result<(), Refusal>, AuthnError> {
        let now = self.clock.now_millis();
        let (settings, orgs) = self.binding_settings(user.id).await?;
        // A locked account takes no guess here either (a session holder could otherwise try
        // passwords while sign-in is refused), after the same work as a wrong one.
        if self.store.locked_until(user.id, now).await?.is_some() {
            password::verify_off_thread(None, current).await;
            self.store
                .record_locked_login(orgs.first(), user, None, now)
                .await?;
            return Ok(Err(Refusal::InvalidCredentials));
        }
        let stored = self.store.password_of(user.id).await?;
        let ok = match &stored {
            Some(p) => password::verify_off_thread(Some(p.phc.clone()), current).await,
            None => false,
        };
        if !ok {
            self.count_failure(orgs.first(), user, &settings, "password change", "", now)
                .await?;
            return Ok(Err(Refusal::InvalidCredentials));
        }
        password::check_rules(new, settings.password_min_length as usize)?;
        if password::verify_off_thread(stored.as_ref().map(|p| p.phc.clone()), new).await {
            return Err(AuthnError::WeakPassword(
                "the new password must differ from the current one".into(),
            ));
        }
        let phc = password::hash_off_thread(new).await?;
        self.store
            .set_password(
                &Actor::user(user),
                orgs.first(),
                user,
                &phc,
                PasswordChange::ByUser,
                session,
                now,
            )
            .await?;
        // Sessions the store just revoked are refused here at once.
        self.refresh_user_sessions(user.id, session).await?;
        if let Some(id) = session {
            self.advance_stage(user, id, &settings).await?;
        }
        Ok(Ok(()))
    }

    /// Re-reads every session of `user` here after the store revoked some (except `keep`).
    async fn refresh_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> Result<(), AuthnError> {
        let revoked = self
            .store
            .sessions_revoked_since(user, self.clock.now_millis() - 60_000)
            .await?;
        for id in revoked.into_iter().filter(|id| Some(*id) != keep) {
            self.directory.session_changed(&self.store, id).await;
        }
        Ok(())
    }

    /// Moves a session past the step it was waiting for, if nothing else is due.
    async fn advance_stage(
        &self,
        user: &UserRecord,
        session: SessionId,
        settings: &OrgSettings,
    ) -> Result<(), AuthnError> {
        let has_mfa = self
            .store
            .totp_of(user.id)
            .await?
            .is_some_and(|t| t.confirmed);
        let temporary = self
            .store
            .password_of(user.id)
            .await?
            .is_some_and(|p| p.temporary);
        let stage = if temporary {
            SessionStage::PasswordChange
        } else if settings.mfa_required && !has_mfa {
            SessionStage::MfaEnrollment
        } else {
            SessionStage::Active
        };
        self.store.set_session_stage(session, stage).await?;
        self.directory.session_changed(&self.store, session).await;
        Ok(())
    }

    /// Starts a TOTP enrollment for `user`.
    pub async fn begin_totp(&self, user: &UserRecord) -> Result<Enrollment, AuthnError> {
        let secret = TotpSecret::generate()?;
        let sealed = self.secret_box.seal(TOTP_SEAL, secret.as_bytes())?;
        self.store
            .begin_totp(user.id, &sealed, self.clock.now_millis())
            .await?;
        let otpauth_uri = secret.otpauth_uri(&self.settings.totp_issuer, &user.email);
        Ok(Enrollment {
            secret: secret.base32(),
            qr_svg: totp::qr_svg(&otpauth_uri)?,
            otpauth_uri,
        })
    }

    /// Finishes an enrollment with a code from the app; returns the recovery codes (shown once).
    pub async fn confirm_totp(
        &self,
        user: &UserRecord,
        session: Option<SessionId>,
        code: &str,
    ) -> Result<Result<Vec<String>, Refusal>, AuthnError> {
        let now = self.clock.now_millis();
        let Some(factor) = self.store.totp_of(user.id).await?.filter(|t| !t.confirmed) else {
            return Err(AuthnError::Store(portcullis_store::StoreError::Conflict(
                "no TOTP enrollment is in progress; start one first".into(),
            )));
        };
        let secret =
            TotpSecret::from_bytes(self.secret_box.open(TOTP_SEAL, &factor.secret_sealed)?);
        let Some(step) = secret.matching_step(code, (now / 1000).max(0) as u64) else {
            return Ok(Err(Refusal::InvalidCode));
        };
        if !self.store.use_totp_step(user.id, step as i64).await? {
            return Ok(Err(Refusal::InvalidCode));
        }
        let codes = totp::recovery_codes()?;
        let hashes: Vec<String> = codes.iter().map(|c| totp::recovery_digest(c)).collect();
        let (settings, orgs) = self.binding_settings(user.id).await?;
        self.store
            .confirm_totp(&Actor::user(user), orgs.first(), user, &hashes)
            .await?;
        if let Some(id) = session {
            self.advance_stage(user, id, &settings).await?;
        }
        Ok(Ok(codes))
    }

    /// Removes a user's TOTP factor (the user with a current code, or an admin).
    pub async fn remove_totp(
        &self,
        actor: &Actor,
        org: Option<&OrgRecord>,
        user: &UserRecord,
    ) -> Result<bool, AuthnError> {
        Ok(self.store.remove_totp(actor, org, user).await?)
    }

    /// Checks a current TOTP code of `user` (for removing MFA oneself).
    pub async fn verify_code(&self, user: &UserRecord, code: &str) -> Result<bool, AuthnError> {
        let now = self.clock.now_millis();
        Ok(self
            .check_second_factor(user, Some(code), None, now)
            .await?
            .is_some())
    }

    /// Whether `user` has a confirmed TOTP factor, and how many recovery codes are left.
    pub async fn mfa_status(&self, user: UserId) -> Result<(bool, i64), AuthnError> {
        let enrolled = self.store.totp_of(user).await?.is_some_and(|t| t.confirmed);
        Ok((enrolled, self.store.recovery_codes_left(user).await?))
    }

    /// Sets a temporary password for a local user (an admin's action): it must be changed at
    /// the next login and stops working after the org's time limit. Mailed when `mail` is set.
    /// Returns the password (to show once).
    pub async fn issue_temporary_password(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        user: &UserRecord,
        mail: bool,
    ) -> Result<String, AuthnError> {
        let now = self.clock.now_millis();
        let min = self.min_password_len(user.id).await?;
        let temporary = password::temporary(min)?;
        let phc = password::hash_off_thread(&temporary).await?;
        let ttl_hours = org.settings.temp_password_ttl_hours;
        let expires_at = now + i64::from(ttl_hours) * 3_600_000;
        self.store
            .set_password(
                actor,
                Some(org),
                user,
                &phc,
                PasswordChange::Temporary { expires_at },
                None,
                now,
            )
            .await?;
        self.refresh_user_sessions(user.id, None).await?;
        if mail {
            self.mail_temporary(org, user, &temporary).await?;
        }
        Ok(temporary)
    }

    /// Creates a local user in `org` with a temporary password (one transaction), mailing it
    /// when `mail` is set. Returns the member, the password (to show once unless mailed) and
    /// when it expires.
    pub async fn create_local_user(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        new: &portcullis_store::NewUser,
        mail: bool,
    ) -> Result<(portcullis_store::MemberRecord, String, i64), AuthnError> {
        let now = self.clock.now_millis();
        let min = org.settings.password_min_length as usize;
        let temporary = password::temporary(min)?;
        let phc = password::hash_off_thread(&temporary).await?;
        let expires_at = now + i64::from(org.settings.temp_password_ttl_hours) * 3_600_000;
        let member = self
            .store
            .create_user_with_password(actor, org, new, &phc, expires_at, now)
            .await?;
        if mail {
            self.mail_temporary(org, &member.user, &temporary).await?;
        }
        Ok((member, temporary, expires_at))
    }

    async fn mail_temporary(
        &self,
        org: &OrgRecord,
        user: &UserRecord,
        temporary: &str,
    ) -> Result<(), AuthnError> {
        let body = format!(
            "Hello,\n\nan administrator of the org '{org}' set up a Portcullis account for {email}.\n\n\
             Temporary password: {temporary}\n\n\
             Sign in at {url}/web-login within {ttl_hours} hours; you will be asked to choose a new password.\n",
            org = org.name,
            email = user.email,
            url = self.settings.public_url.trim_end_matches('/'),
            ttl_hours = org.settings.temp_password_ttl_hours,
        );
        self.mailer
            .send(&user.email, "Your Portcullis account", &body)
            .await
    }

    /// Starts a self-service reset: when `email` belongs to an active local user, mails a
    /// single-use link. Always succeeds from the caller's point of view.
    pub async fn request_reset(&self, email: &str) -> Result<(), AuthnError> {
        let now = self.clock.now_millis();
        let Some(user) = self
            .store
            .find_user_by_email(email.trim())
            .await?
            .filter(|u| u.kind == UserKind::Local)
        else {
            return Ok(());
        };
        let (settings, orgs) = self.binding_settings(user.id).await?;
        if orgs.is_empty() {
            return Ok(());
        }
        let link_token = token("")?;
        let ttl_hours = settings.reset_link_ttl_hours;
        self.store
            .create_password_reset(
                orgs.first(),
                &user,
                &digest("reset", &link_token),
                now,
                now + i64::from(ttl_hours) * 3_600_000,
            )
            .await?;
        let body = format!(
            "Hello,\n\nsomeone asked to reset the Portcullis password of {email}.\n\n\
             Choose a new password here (valid for {ttl_hours} hours, once):\n{url}/web-login/reset?token={link_token}\n\n\
             If it was not you, ignore this message: your password stays as it is.\n",
            email = user.email,
            url = self.settings.public_url.trim_end_matches('/'),
        );
        self.mailer
            .send(&user.email, "Reset your Portcullis password", &body)
            .await?;
        Ok(())
    }

    /// Completes a reset: the link works once, within its lifetime; every session of the user
    /// ends.
    pub async fn complete_reset(
        &self,
        link_token: &str,
        new: &str,
    ) -> Result<Result<(), &'static str>, AuthnError> {
        let now = self.clock.now_millis();
        let hash = digest("reset", link_token);
        let Some(user) = self.store.reset_token_user(&hash, now).await? else {
            return Ok(Err("this reset link is invalid, used or expired"));
        };
        password::check_rules(new, self.min_password_len(user).await?)?;
        let phc = password::hash_off_thread(new).await?;
        match self.store.reset_password(&hash, &phc, now).await {
            Ok(user) => {
                self.refresh_user_sessions(user.id, None).await?;
                Ok(Ok(()))
            }
            Err(portcullis_store::StoreError::NotFound(_)) => {
                Ok(Err("this reset link is invalid, used or expired"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lifts a lock (an admin's action).
    pub async fn unlock(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        user: &UserRecord,
    ) -> Result<bool, AuthnError> {
        Ok(self.store.unlock_user(actor, org, user).await?)
    }
}

/// The org a login opens its session for: the one asked for if the user is active there, else
/// `default`, else the first.
fn pick_org<'a>(orgs: &'a [OrgRecord], wanted: Option<&str>) -> Option<&'a OrgRecord> {
    wanted
        .and_then(|w| orgs.iter().find(|o| o.slug.eq_ignore_ascii_case(w)))
        .or_else(|| orgs.iter().find(|o| o.slug == "default"))
        .or_else(|| orgs.first())
}
