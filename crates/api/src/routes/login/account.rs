//! Account endpoints: the caller's password, MFA and sessions; self-service reset; and the
//! admin's unlock, session revocation, temporary password and MFA removal.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use portcullis_authz::OrgAction;
use portcullis_model::{SessionId, Timestamp, UserId, UserKind};
use portcullis_store::{OrgRecord, SessionRecord, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiError;
use crate::auth::{AnyStage, Authenticated};
use crate::extract::Body;
use crate::routes::user_id;
use crate::state::AppState;

/// Body of `POST /api/v1/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePassword {
    /// The current (or temporary) password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

/// Changes the caller's password; every other session of the account ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "account", request_body = ChangePassword,
    responses((status = 204), (status = 401), (status = 422), (status = 429)))]
pub async fn change_password(
    State(state): State<AppState>,
    AnyStage(auth): AnyStage,
    parts: axum::http::request::Parts,
    Body(body): Body<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    // Each try checks a password: counted with sign-ins from the same address.
    super::rate_limit(&state, super::client_ip(&parts, &state))?;
    let user = state.store.get_user(auth.principal.user.id).await?;
    if user.kind != UserKind::Local {
        return Err(ApiError::Conflict(
            "only local users have a password here; SSO users change it at their identity provider"
                .into(),
        ));
    }
    let session = auth.principal.session().map(|s| s.id);
    match state
        .auth
        .change_password(&user, session, &body.current_password, &body.new_password)
        .await?
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(_) => Err(ApiError::LoginRefused {
            code: "invalid_credentials",
            message: "the current password is wrong".into(),
        }),
    }
}

/// The caller's MFA state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    /// A TOTP authenticator is enrolled.
    pub totp: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: i64,
}

/// The caller's MFA state.
#[utoipa::path(get, path = "/api/v1/me/mfa", tag = "account",
    responses((status = 200, body = MfaStatus), (status = 401)))]
pub async fn mfa_status(
    State(state): State<AppState>,
    AnyStage(auth): AnyStage,
) -> Result<Json<MfaStatus>, ApiError> {
    let (totp, recovery_codes_left) = state.auth.mfa_status(auth.principal.user.id).await?;
    Ok(Json(MfaStatus {
        totp,
        recovery_codes_left,
    }))
}

/// A TOTP enrollment started.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotpEnrollment {
    /// The secret (base32), to type into an app.
    pub secret: String,
    /// The `otpauth://` URI.
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG).
    pub qr_svg: String,
}

async fn local_user(state: &AppState, auth: &Authenticated) -> Result<UserRecord, ApiError> {
    let user = state.store.get_user(auth.principal.user.id).await?;
    if user.kind != UserKind::Local {
        return Err(ApiError::Conflict(
            "TOTP here is for local users; SSO users use their identity provider's MFA".into(),
        ));
    }
    Ok(user)
}

/// Starts a TOTP enrollment (replacing one not yet confirmed).
#[utoipa::path(post, path = "/api/v1/me/mfa/totp", tag = "account",
    responses((status = 201, body = TotpEnrollment), (status = 401), (status = 409)))]
pub async fn begin_totp(
    State(state): State<AppState>,
    AnyStage(auth): AnyStage,
) -> Result<(StatusCode, Json<TotpEnrollment>), ApiError> {
    let user = local_user(&state, &auth).await?;
    let e = state.auth.begin_totp(&user).await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrollment {
            secret: e.secret,
            otpauth_uri: e.otpauth_uri,
            qr_svg: e.qr_svg,
        }),
    ))
}

/// A TOTP code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TotpCode {
    /// Six digits from the app.
    pub code: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodes {
    /// Ten single-use codes.
    pub recovery_codes: Vec<String>,
}

/// Confirms the enrollment with a first code; answers the recovery codes (shown only now).
#[utoipa::path(post, path = "/api/v1/me/mfa/totp/confirm", tag = "account", request_body = TotpCode,
    responses((status = 200, body = RecoveryCodes), (status = 401), (status = 409)))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    AnyStage(auth): AnyStage,
    Body(body): Body<TotpCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let user = local_user(&state, &auth).await?;
    let session = auth.principal.session().map(|s| s.id);
    match state.auth.confirm_totp(&user, session, &body.code).await? {
        Ok(recovery_codes) => Ok(Json(RecoveryCodes { recovery_codes })),
        Err(r) => Err(ApiError::LoginRefused {
            code: r.code(),
            message: r.message().into(),
        }),
    }
}

/// Removes the caller's TOTP authenticator (a current code proves it is theirs).
#[utoipa::path(delete, path = "/api/v1/me/mfa/totp", tag = "account", request_body = TotpCode,
    responses((status = 204), (status = 401), (status = 404)))]
pub async fn remove_totp(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<TotpCode>,
) -> Result<StatusCode, ApiError> {
    let user = local_user(&state, &auth).await?;
    if !state.auth.verify_code(&user, &body.code).await? {
        return Err(ApiError::LoginRefused {
            code: "invalid_code",
            message: "invalid or already used verification code".into(),
        });
    }
    state.auth.remove_totp(&auth.actor(), None, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A login session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Id (`sid`).
    pub id: String,
    /// Opened.
    pub created_at: Timestamp,
    /// Last request (batched).
    pub last_seen_at: Timestamp,
    /// Ends at the latest.
    pub expires_at: Timestamp,
    /// `active`, `password_change` or `mfa_enrollment`.
    pub stage: &'static str,
    /// The client that opened it.
    pub client: String,
    /// The session of this request.
    pub current: bool,
}

fn session_views(list: Vec<SessionRecord>, current: Option<SessionId>) -> Vec<SessionView> {
    list.into_iter()
        .map(|s| SessionView {
            id: s.id.to_string(),
            created_at: Timestamp(s.created_at),
            last_seen_at: Timestamp(s.last_seen_at),
            expires_at: Timestamp(s.expires_at),
            stage: s.stage.as_str(),
            client: s.client,
            current: Some(s.id) == current,
        })
        .collect()
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "account",
    responses((status = 200, body = [SessionView]), (status = 401)))]
pub async fn my_sessions(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let current = auth.principal.session().map(|s| s.id);
    let list = state.auth.sessions_of(auth.principal.user.id).await?;
    Ok(Json(session_views(list, current)))
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no session '{raw}'")))
}

/// Ends one of the caller's sessions.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{sessionId}", tag = "account",
    params(("sessionId" = String, Path, description = "session id")),
    responses((status = 204), (status = 404)))]
pub async fn revoke_my_session(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(session): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = state.store.get_user(auth.principal.user.id).await?;
    let id = session_id(&session)?;
    if !state
        .auth
        .revoke_session(&auth.actor(), None, &user, id)
        .await?
    {
        return Err(ApiError::NotFound(format!("no live session '{session}'")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's email.
    pub email: String,
}

/// Mails a single-use reset link when the address belongs to a local user. Always 202, at
/// once, so the answer says nothing about which addresses have accounts, by content or time.
#[utoipa::path(post, path = "/api/v1/password-reset", tag = "account", request_body = ResetRequest,
    security(()),
    responses((status = 202), (status = 429)))]
pub async fn request_reset(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    Body(body): Body<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    super::rate_limit(&state, super::client_ip(&parts, &state))?;
    // The lookup, the link and the mail happen after the answer: an answer that waited for
    // them would take longer for an address that has an account, and say so by its timing.
    let email = body.email;
    tokio::spawn(async move {
        if let Err(e) = state.auth.request_reset(&email).await {
            tracing::warn!(error = %e, "a password reset could not be prepared or mailed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// Body of `POST /api/v1/password-reset/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the link.
    pub token: String,
    /// The new password.
    pub new_password: String,
}

/// Sets a new password with a reset token (once, within its lifetime); every session of the
/// account ends.
#[utoipa::path(post, path = "/api/v1/password-reset/confirm", tag = "account", request_body = ResetConfirm,
    security(()),
    responses((status = 204), (status = 400), (status = 422)))]
pub async fn confirm_reset(
    State(state): State<AppState>,
    Body(body): Body<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    match state
        .auth
        .complete_reset(&body.token, &body.new_password)
        .await?
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(m) => Err(ApiError::BadRequest(m.into())),
    }
}

/// A member of the org, for an admin's account action.
async fn member(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    user: &str,
) -> Result<(OrgRecord, UserRecord), ApiError> {
    let org = auth.org(state, org, OrgAction::Manage).await?;
    let member = state.store.get_member(&org, user_id(user)?).await?;
    Ok((org, member.user))
}

/// Password and MFA belong to the account in every org: only an admin of every org of the
/// user may reset them (else an admin of one org could take over an admin of another).
fn may_manage_credentials(
    state: &AppState,
    auth: &Authenticated,
    user: UserId,
) -> Result<(), ApiError> {
    let Some(target) = state.directory.user(user) else {
        return Ok(());
    };
    if let Some(slug) = target.memberships.keys().find(|slug| {
        portcullis_authz::check_org(auth.principal.caller_in(slug), OrgAction::Manage)
            != portcullis_authz::Access::Allow
    }) {
        return Err(ApiError::Forbidden(format!(
            "this user also belongs to org '{slug}', which you do not administer: their password and MFA can only be reset by an admin of every org they belong to"
        )));
    }
    Ok(())
}

/// Answer of an unlock.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unlocked {
    /// The account was locked before.
    pub was_locked: bool,
}

/// Lifts a lockout (and forgets the failed logins).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/users/{userId}/unlock", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = Unlocked), (status = 403), (status = 404)))]
pub async fn unlock(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Unlocked>, ApiError> {
    let (org, user) = member(&state, &auth, &org, &user).await?;
    let was_locked = state.auth.unlock(&auth.actor(), &org, &user).await?;
    Ok(Json(Unlocked { was_locked }))
}

/// A user's live sessions.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/users/{userId}/sessions", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = [SessionView]), (status = 403), (status = 404)))]
pub async fn user_sessions(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let (_, user) = member(&state, &auth, &org, &user).await?;
    let current = auth.principal.session().map(|s| s.id);
    Ok(Json(session_views(
        state.auth.sessions_of(user.id).await?,
        current,
    )))
}

/// Answer of revoking every session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    /// How many sessions ended.
    pub revoked: usize,
}

/// Ends every session of a user, at once on every replica.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/users/{userId}/sessions", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = Revoked), (status = 403), (status = 404)))]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Revoked>, ApiError> {
    let (org, user) = member(&state, &auth, &org, &user).await?;
    let revoked = state
        .auth
        .revoke_all_sessions(&auth.actor(), Some(&org), &user, "revoked by an admin")
        .await?;
    Ok(Json(Revoked { revoked }))
}

/// Ends one session of a user.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/users/{userId}/sessions/{sessionId}", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id"), ("sessionId" = String, Path, description = "session id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_user_session(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user, session)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (org, user) = member(&state, &auth, &org, &user).await?;
    let id = session_id(&session)?;
    if !state
        .auth
        .revoke_session(&auth.actor(), Some(&org), &user, id)
        .await?
    {
        return Err(ApiError::NotFound(format!("no live session '{session}'")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST …/temporary-password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemporaryPasswordRequest {
    /// Mail it to the user instead of answering it.
    pub send_email: Option<bool>,
}

/// A temporary password, shown once (absent when mailed).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemporaryPassword {
    /// The password; must be changed at the next login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
    /// It stops working at.
    pub expires_at: Timestamp,
    /// It was mailed.
    pub emailed: bool,
}

/// Gives a local user a new temporary password (their sessions end); it must be changed at
/// the next login and stops working after the org's limit (72 h by default).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/users/{userId}/temporary-password", tag = "users",
    request_body = TemporaryPasswordRequest,
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = TemporaryPassword), (status = 403), (status = 404), (status = 409)))]
pub async fn temporary_password(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
    Body(body): Body<TemporaryPasswordRequest>,
) -> Result<Json<TemporaryPassword>, ApiError> {
    let (org, user) = member(&state, &auth, &org, &user).await?;
    may_manage_credentials(&state, &auth, user.id)?;
    Ok(Json(
        issue_temporary(&state, &auth, &org, &user, body.send_email.unwrap_or(false)).await?,
    ))
}

/// Issues a temporary password for a local user (also used at user creation).
pub(crate) async fn issue_temporary(
    state: &AppState,
    auth: &Authenticated,
    org: &OrgRecord,
    user: &UserRecord,
    mail: bool,
) -> Result<TemporaryPassword, ApiError> {
    if user.kind != UserKind::Local {
        return Err(ApiError::Conflict(format!(
            "'{}' is a {} user: only local users have a password here",
            user.email,
            user.kind.as_str()
        )));
    }
    let password = state
        .auth
        .issue_temporary_password(&auth.actor(), org, user, mail)
        .await?;
    let expires_at =
        state.clock.now_millis() + i64::from(org.settings.temp_password_ttl_hours) * 3_600_000;
    Ok(TemporaryPassword {
        temporary_password: (!mail).then_some(password),
        expires_at: Timestamp(expires_at),
        emailed: mail,
    })
}

/// Removes a user's TOTP authenticator (they enroll again at the next login when the org
/// requires MFA).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/users/{userId}/mfa", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove_user_mfa(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (org, user) = member(&state, &auth, &org, &user).await?;
    may_manage_credentials(&state, &auth, user.id)?;
    if !state
        .auth
        .remove_totp(&auth.actor(), Some(&org), &user)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "'{}' has no TOTP authenticator",
            user.email
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}
