//! `/oauth/token`, `/refreshtoken`, `/userinfo`, `/logout`, `/apps` and the JWKS.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_authn::login::{Issued, LoginOutcome, PasswordLogin};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    REFRESH_COOKIE, checked_redirect, clearing_cookies, rate_limit, session_cookies, user_agent,
};
use crate::ApiError;
use crate::auth::{AnyStage, cookie};
use crate::extract::Body;
use crate::state::AppState;

/// Body of `POST /oauth/token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// `password` (default), `mfa` (the second step) or `refresh_token`.
    #[serde(alias = "grant_type")]
    pub grant_type: Option<String>,
    /// Email of a local user.
    #[serde(alias = "username")]
    pub email: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// A TOTP code (with the password, or with `mfaToken`).
    pub totp_code: Option<String>,
    /// A recovery code instead of a TOTP code.
    pub recovery_code: Option<String>,
    /// The token of a login waiting for its second factor.
    pub mfa_token: Option<String>,
    /// For `refresh_token`.
    #[serde(alias = "refresh_token")]
    pub refresh_token: Option<String>,
    /// The org (slug) to open the session for.
    pub org: Option<String>,
    /// Also set the `sid` and `refresh_token` cookies (a login page of this origin).
    pub set_cookies: Option<bool>,
}

/// Tokens of a session (seed 003's shape, plus the token type and stage).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// The signed access token (JWT).
    pub access_token: String,
    /// The refresh token: single use, rotated by `/refreshtoken`.
    pub refresh_token: String,
    /// When the access token expires (seconds since the epoch).
    pub expire_at: i64,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// `active`, or the step due first: `password_change`, `mfa_enrollment`.
    pub stage: &'static str,
}

fn token_response(state: &AppState, issued: &Issued, cookies: bool) -> Response {
    let body = TokenResponse {
        access_token: issued.access_token.clone(),
        refresh_token: issued.refresh_token.clone(),
        expire_at: issued.access_expires_at / 1000,
        token_type: "Bearer",
        stage: issued.session.stage.as_str(),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    if cookies {
        for c in session_cookies(state, issued) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    response
}

fn refused(refusal: portcullis_authn::login::Refusal) -> ApiError {
    ApiError::LoginRefused {
        code: refusal.code(),
        message: refusal.message().to_owned(),
    }
}

/// Signs a local user in (password grant, then `mfa` when a second factor is needed), or
/// rotates a refresh token.
#[utoipa::path(post, path = "/oauth/token", tag = "authentication", request_body = TokenRequest,
    security(()),
    responses((status = 200, body = TokenResponse), (status = 400), (status = 401), (status = 429)))]
pub async fn token(
    State(state): State<AppState>,
    parts: Parts,
    Body(body): Body<TokenRequest>,
) -> Result<Response, ApiError> {
    let cookies = body.set_cookies.unwrap_or(false);
    let client = user_agent(&parts.headers);
    let grant = body.grant_type.as_deref().unwrap_or("password");
    let outcome = match grant {
        "password" => {
            rate_limit(&state, super::client_ip(&parts, &state))?;
            let (Some(email), Some(password)) = (body.email.as_deref(), body.password.as_deref())
            else {
                return Err(ApiError::BadRequest(
                    "the password grant needs 'email' and 'password'".into(),
                ));
            };
            state
                .auth
                .login(PasswordLogin {
                    email,
                    password,
                    totp_code: body.totp_code.as_deref(),
                    recovery_code: body.recovery_code.as_deref(),
                    org: body.org.as_deref(),
                    browser: cookies,
                    client: &client,
                })
                .await?
        }
        "mfa" => {
            rate_limit(&state, super::client_ip(&parts, &state))?;
            let Some(challenge) = body.mfa_token.as_deref() else {
                return Err(ApiError::BadRequest(
                    "the mfa grant needs 'mfaToken' and 'totpCode' or 'recoveryCode'".into(),
                ));
            };
            state
                .auth
                .second_factor(
                    challenge,
                    body.totp_code.as_deref(),
                    body.recovery_code.as_deref(),
                    &client,
                )
                .await?
        }
        "refresh_token" => {
            let Some(refresh) = body.refresh_token.as_deref() else {
                return Err(ApiError::BadRequest(
                    "the refresh_token grant needs 'refreshToken'".into(),
                ));
            };
            return match state.auth.refresh(refresh, cookies).await? {
                Ok(issued) => Ok(token_response(&state, &issued, cookies)),
                Err(r) => Err(refused(r)),
            };
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unsupported grantType '{other}': use password, mfa or refresh_token"
            )));
        }
    };
    match outcome {
        LoginOutcome::Issued(issued) => Ok(token_response(&state, &issued, cookies)),
        LoginOutcome::SecondFactor { challenge } => {
            let body = serde_json::json!({
                "error": {
                    "code": "mfa_required",
                    "message": "a TOTP code is required: send grantType 'mfa' with this mfaToken and a totpCode (or a recoveryCode)",
                },
                "mfaToken": challenge,
            });
            Ok((StatusCode::UNAUTHORIZED, Json(body)).into_response())
        }
        LoginOutcome::Refused(r) => Err(refused(r)),
    }
}

/// Body of `POST /refreshtoken`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token (or send the `refresh_token` cookie).
    #[serde(alias = "refresh_token")]
    pub refresh_token: Option<String>,
}

/// Rotates a refresh token: the presented one is spent, a new pair is issued. A token
/// presented twice revokes its session.
#[utoipa::path(post, path = "/refreshtoken", tag = "authentication", request_body = RefreshRequest,
    security(()),
    responses((status = 200, body = TokenResponse), (status = 401)))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<crate::extract::Body<RefreshRequest>>,
) -> Result<Response, ApiError> {
    let from_body = body.and_then(|crate::extract::Body(b)| b.refresh_token);
    let (token, cookies) = match from_body {
        Some(t) => (t, false),
        None => match cookie(&headers, REFRESH_COOKIE) {
            Some(t) => {
                crate::auth::require_same_site(
                    &headers,
                    None,
                    &state.web.public_url,
                    crate::auth::CookieUse::Change,
                )?;
                (t.to_owned(), true)
            }
            None => {
                return Err(ApiError::Unauthenticated(
                    "send 'refreshToken' in the body or the refresh_token cookie".into(),
                ));
            }
        },
    };
    match state.auth.refresh(&token, cookies).await? {
        Ok(issued) => Ok(token_response(&state, &issued, cookies)),
        Err(r) => Err(refused(r)),
    }
}

/// Who the session or key belongs to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Display name (the username when none is set).
    pub name: String,
    /// Username.
    pub username: String,
    /// Groups in the session's org.
    pub groups: Vec<String>,
    /// The session's org, if any.
    pub org: Option<String>,
    /// `local`, `sso` or `machine`.
    pub kind: String,
    /// `active`, or the step due first (sessions only).
    pub stage: Option<&'static str>,
}

/// The caller's identity (seed 003's user object).
#[utoipa::path(get, path = "/userinfo", tag = "authentication",
    responses((status = 200, body = UserInfo), (status = 401)))]
pub async fn userinfo(
    State(state): State<AppState>,
    AnyStage(auth): AnyStage,
) -> Result<Json<UserInfo>, ApiError> {
    let user = state.store.get_user(auth.principal.user.id).await?;
    let org = match auth.principal.session().and_then(|s| s.org_id) {
        Some(id) => Some(state.store.get_org_by_id(id).await?.slug),
        None => crate::rbac::user_ref(&auth.principal).and_then(|r| {
            r.strip_prefix("user:")
                .and_then(|r| r.split('/').next())
                .map(str::to_owned)
        }),
    };
    let groups = org
        .as_deref()
        .map(|o| {
            let prefix = format!("group:{o}/");
            state
                .rbac
                .snapshot()
                .groups_of_user(&format!("user:{o}/{}", user.username.to_lowercase()))
                .into_iter()
                .filter_map(|g| g.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(UserInfo {
        user_id: user.id.to_string(),
        name: if user.display_name.is_empty() {
            user.username.clone()
        } else {
            user.display_name.clone()
        },
        email: user.email,
        username: user.username,
        groups,
        org,
        kind: user.kind.as_str().to_owned(),
        stage: auth.principal.session().map(|s| s.stage.as_str()),
    }))
}

/// Query of `/logout`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogoutQuery {
    /// Where to go afterwards: a path on this site.
    pub redirect: Option<String>,
}

/// Ends the session (revoked at once, everywhere), clears the cookies, and redirects when
/// asked to (same-origin paths only).
#[utoipa::path(get, path = "/logout", tag = "authentication", params(LogoutQuery),
    responses((status = 204), (status = 302)))]
pub async fn logout(
    State(state): State<AppState>,
    parts: Parts,
    Query(q): Query<LogoutQuery>,
) -> Result<Response, ApiError> {
    let auth = crate::auth::authenticate(&parts, &state).await.ok();
    if let Some(session) = auth.as_ref().and_then(|a| a.principal.session()) {
        state.auth.logout(session.id).await?;
    }
    let mut response = match q.redirect.as_deref() {
        Some(r) => {
            let mut res = StatusCode::FOUND.into_response();
            if let Ok(v) = checked_redirect(Some(r), "/web-login").parse() {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
        None => StatusCode::NO_CONTENT.into_response(),
    };
    for c in clearing_cookies(&state) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// `POST /logout`: as `GET`.
#[utoipa::path(post, path = "/logout", tag = "authentication", params(LogoutQuery),
    responses((status = 204), (status = 302)))]
pub async fn logout_post(
    state: State<AppState>,
    parts: Parts,
    q: Query<LogoutQuery>,
) -> Result<Response, ApiError> {
    logout(state, parts, q).await
}

/// The apps and their login providers, for the login page (seed 003's `apps` shape).
#[utoipa::path(get, path = "/apps", tag = "authentication", security(()),
    responses((status = 200, body = Object)))]
pub async fn apps(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "apps": {
            "portcullis": {
                "providers": {
                    "local": {
                        "order": 0,
                        "type": "local",
                        "label": "Sign in with email and password",
                        "authUrl": format!("{}/web-login", state.web.public_url),
                    }
                },
                "redirectUrl": format!("{}/web-login", state.web.public_url),
                "defaultRedirectUrlOnSuccessfulLogin": "/",
                "isWebsiteApp": true,
                "issuer": state.keys.issuer(),
            }
        }
    }))
}

/// The public keys that verify Portcullis's tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "authentication", security(()),
    responses((status = 200, body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "public, max-age=60".parse().expect("static header"),
    );
    response
}
