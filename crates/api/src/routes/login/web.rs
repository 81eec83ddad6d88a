//! The login pages: plain HTML forms, no script. Sign in (email and password), the TOTP step,
//! then what is due first (a new password, MFA enrollment); forgotten password and reset.
//! Every form carries a CSRF token that must match the `pcl_csrf` cookie, and every redirect
//! target is checked to stay on this site.

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use portcullis_authn::login::{Issued, LoginOutcome, PasswordLogin};
use portcullis_store::SessionStage;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{checked_redirect, encode_param, rate_limit, session_cookies, set_cookie, user_agent};
use crate::ApiError;
use crate::auth::{AnyStage, cookie};
use crate::extract::Form;
use crate::state::AppState;

const CSRF_COOKIE: &str = portcullis_gateway::credentials::CSRF_COOKIE;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A CSRF token for a form: the one in the request's cookie, or a new one (then also set).
fn csrf(parts: &Parts) -> (String, Option<String>) {
    match cookie(&parts.headers, CSRF_COOKIE).filter(|c| c.len() >= 32) {
        Some(c) => (c.to_owned(), None),
        None => {
            let fresh = portcullis_authn::random::token("").unwrap_or_default();
            (fresh.clone(), Some(fresh))
        }
    }
}

/// Refuses a form post whose CSRF field does not match its cookie, or that comes from
/// another site.
fn check_csrf(state: &AppState, parts: &Parts, field: &str) -> Result<(), ApiError> {
    let cookie = cookie(&parts.headers, CSRF_COOKIE).unwrap_or("");
    let matches = !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(field.as_bytes()));
    let origin_ok = parts.headers.get("origin").is_none()
        || crate::auth::same_origin(&parts.headers, &state.web.public_url);
    if matches && origin_ok {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the form expired or came from another site; reload the page and try again".into(),
        ))
    }
}

fn page(
    state: &AppState,
    status: StatusCode,
    title: &str,
    body: &str,
    new_csrf: Option<String>,
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · Portcullis</title><style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}}\
         label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.4rem;box-sizing:border-box}}button{{margin-top:1rem;padding:.5rem 1rem}}\
         .error{{color:#a00}}code{{font-size:1.1rem}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"),
    );
    if let Some(token) = new_csrf {
        headers.append(
            header::SET_COOKIE,
            set_cookie(state, CSRF_COOKIE, &token, "/web-login", 3600),
        );
    }
    response
}

fn error_line(error: Option<&str>) -> String {
    error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))
    })
}

fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Query of the login pages.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RedirectQuery {
    /// Where to go after signing in: a path on this site.
    pub redirect: Option<String>,
}

fn login_form(
    state: &AppState,
    parts: &Parts,
    redirect: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, fresh) = csrf(parts);
    let body = format!(
        "{err}<form method=\"post\" action=\"/web-login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"redirect\" value=\"{r}\">\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form><p><a href=\"/web-login/forgot\">Forgot your password?</a></p>",
        err = error_line(error),
        r = esc(redirect)
    );
    page(state, status, "Sign in", &body, fresh)
}

/// The sign-in page.
#[utoipa::path(get, path = "/web-login", tag = "login pages", security(()), params(RedirectQuery),
    responses((status = 200, content_type = "text/html")))]
pub async fn login_page(
    State(state): State<AppState>,
    parts: Parts,
    Query(q): Query<RedirectQuery>,
) -> Response {
    let redirect = checked_redirect(q.redirect.as_deref(), "/");
    login_form(&state, &parts, &redirect, None, StatusCode::OK)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// After a session is opened: cookies, then the step due first or the page asked for.
fn signed_in(state: &AppState, issued: &Issued, redirect: &str) -> Response {
    let next = match issued.session.stage {
        SessionStage::Active => redirect.to_owned(),
        SessionStage::PasswordChange => {
            format!("/web-login/password?redirect={}", encode_param(redirect))
        }
        SessionStage::MfaEnrollment => {
            format!("/web-login/mfa?redirect={}", encode_param(redirect))
        }
    };
    let mut res = see_other(&next);
    for c in session_cookies(state, issued) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

fn totp_form(
    state: &AppState,
    parts: &Parts,
    challenge: &str,
    redirect: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, fresh) = csrf(parts);
    let body = format!(
        "{err}<p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>\
         <form method=\"post\" action=\"/web-login/totp\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <input type=\"hidden\" name=\"challenge\" value=\"{c}\"><input type=\"hidden\" name=\"redirect\" value=\"{r}\">\
         <label for=\"code\">Code</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" autofocus>\
         <label for=\"recovery\">or a recovery code</label><input id=\"recovery\" name=\"recovery\" autocomplete=\"off\">\
         <button type=\"submit\">Verify</button></form>",
        err = error_line(error),
        c = esc(challenge),
        r = esc(redirect)
    );
    page(state, status, "Two-step verification", &body, fresh)
}

/// Signs in with email and password.
#[utoipa::path(post, path = "/web-login", tag = "login pages", security(()),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 303), (status = 200, content_type = "text/html"), (status = 401, content_type = "text/html")))]
pub async fn login_submit(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    check_csrf(&state, &parts, &form.csrf)?;
    let redirect = checked_redirect(form.redirect.as_deref(), "/");
    if let Err(e) = rate_limit(&state, super::client_ip(&parts, &state)) {
        let mut res = login_form(
            &state,
            &parts,
            &redirect,
            Some(&e.to_string()),
            StatusCode::TOO_MANY_REQUESTS,
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(60));
        return Ok(res);
    }
    let client = user_agent(&parts.headers);
    let outcome = state
        .auth
        .login(PasswordLogin {
            email: &form.email,
            password: &form.password,
            totp_code: None,
            recovery_code: None,
            org: None,
            browser: true,
            client: &client,
        })
        .await?;
    Ok(match outcome {
        LoginOutcome::Issued(issued) => signed_in(&state, &issued, &redirect),
        LoginOutcome::SecondFactor { challenge } => {
            totp_form(&state, &parts, &challenge, &redirect, None, StatusCode::OK)
        }
        LoginOutcome::Refused(r) => login_form(
            &state,
            &parts,
            &redirect,
            Some(r.message()),
            StatusCode::UNAUTHORIZED,
        ),
    })
}

/// The second-step form.
#[derive(Debug, Deserialize)]
pub struct TotpForm {
    challenge: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    recovery: String,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// Completes a sign-in with a TOTP or recovery code.
#[utoipa::path(post, path = "/web-login/totp", tag = "login pages", security(()),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 303), (status = 401, content_type = "text/html")))]
pub async fn totp_submit(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<TotpForm>,
) -> Result<Response, ApiError> {
    check_csrf(&state, &parts, &form.csrf)?;
    let redirect = checked_redirect(form.redirect.as_deref(), "/");
    rate_limit(&state, super::client_ip(&parts, &state))?;
    let client = user_agent(&parts.headers);
    let (code, recovery) = (
        Some(form.code.as_str()).filter(|c| !c.trim().is_empty()),
        Some(form.recovery.as_str()).filter(|c| !c.trim().is_empty()),
    );
    let outcome = state
        .auth
        .second_factor(&form.challenge, code, recovery, &client)
        .await?;
    Ok(match outcome {
        LoginOutcome::Issued(issued) => signed_in(&state, &issued, &redirect),
        LoginOutcome::Refused(portcullis_authn::login::Refusal::ChallengeExpired)
        | LoginOutcome::SecondFactor { .. } => login_form(
            &state,
            &parts,
            &redirect,
            Some("this sign-in has expired; start again"),
            StatusCode::UNAUTHORIZED,
        ),
        LoginOutcome::Refused(r) => totp_form(
            &state,
            &parts,
            &form.challenge,
            &redirect,
            Some(r.message()),
            StatusCode::UNAUTHORIZED,
        ),
    })
}

fn password_form(
    state: &AppState,
    parts: &Parts,
    redirect: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, fresh) = csrf(parts);
    let body = format!(
        "{err}<p>Choose a new password.</p><form method=\"post\" action=\"/web-login/password\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"redirect\" value=\"{r}\">\
         <label for=\"current\">Current (or temporary) password</label><input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password</label><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"confirm\">New password again</label><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Change password</button></form>",
        err = error_line(error),
        r = esc(redirect)
    );
    page(state, status, "New password", &body, fresh)
}

/// The password-change page (also the forced change after a temporary password).
#[utoipa::path(get, path = "/web-login/password", tag = "login pages", params(RedirectQuery),
    responses((status = 200, content_type = "text/html"), (status = 302)))]
pub async fn password_page(
    State(state): State<AppState>,
    parts: Parts,
    _auth: AnyStage,
    Query(q): Query<RedirectQuery>,
) -> Response {
    password_form(
        &state,
        &parts,
        &checked_redirect(q.redirect.as_deref(), "/"),
        None,
        StatusCode::OK,
    )
}

/// The password-change form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// Changes the password, then goes on to the next step or the page asked for.
#[utoipa::path(post, path = "/web-login/password", tag = "login pages",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 303), (status = 422, content_type = "text/html")))]
pub async fn password_submit(
    State(state): State<AppState>,
    parts: Parts,
    AnyStage(auth): AnyStage,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    check_csrf(&state, &parts, &form.csrf)?;
    let redirect = checked_redirect(form.redirect.as_deref(), "/");
    if form.new != form.confirm {
        return Ok(password_form(
            &state,
            &parts,
            &redirect,
            Some("the two new passwords differ"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let user = state.store.get_user(auth.principal.user.id).await?;
    let session = auth.principal.session().map(|s| s.id);
    match state
        .auth
        .change_password(&user, session, &form.current, &form.new)
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(r)) => {
            return Ok(password_form(
                &state,
                &parts,
                &redirect,
                Some(r.message()),
                StatusCode::UNAUTHORIZED,
            ));
        }
        Err(portcullis_authn::AuthnError::WeakPassword(m)) => {
            return Ok(password_form(
                &state,
                &parts,
                &redirect,
                Some(&m),
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
        }
        Err(e) => return Err(e.into()),
    }
    next_step(&state, session, &redirect).await
}

async fn next_step(
    state: &AppState,
    session: Option<portcullis_model::SessionId>,
    redirect: &str,
) -> Result<Response, ApiError> {
    let stage = match session {
        Some(id) => state.store.get_session(id).await?.map(|s| s.stage),
        None => None,
    };
    Ok(match stage {
        Some(SessionStage::MfaEnrollment) => see_other(&format!(
            "/web-login/mfa?redirect={}",
            encode_param(redirect)
        )),
        Some(SessionStage::PasswordChange) => see_other(&format!(
            "/web-login/password?redirect={}",
            encode_param(redirect)
        )),
        _ => see_other(redirect),
    })
}

/// MFA enrollment: a new secret and its QR code, and a form for the first code.
#[utoipa::path(get, path = "/web-login/mfa", tag = "login pages", params(RedirectQuery),
    responses((status = 200, content_type = "text/html"), (status = 302)))]
pub async fn mfa_page(
    State(state): State<AppState>,
    parts: Parts,
    AnyStage(auth): AnyStage,
    Query(q): Query<RedirectQuery>,
) -> Result<Response, ApiError> {
    let redirect = checked_redirect(q.redirect.as_deref(), "/");
    let user = state.store.get_user(auth.principal.user.id).await?;
    let enrollment = state.auth.begin_totp(&user).await?;
    Ok(mfa_form(
        &state,
        &parts,
        &enrollment.qr_svg,
        &enrollment.secret,
        &redirect,
        None,
        StatusCode::OK,
    ))
}

fn mfa_form(
    state: &AppState,
    parts: &Parts,
    svg: &str,
    secret: &str,
    redirect: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, fresh) = csrf(parts);
    use base64::Engine;
    let img = base64::engine::general_purpose::STANDARD.encode(svg);
    let body = format!(
        "{err}<p>Scan this code with an authenticator app (or type the key), then enter the code it shows.</p>\
         <p><img alt=\"QR code\" width=\"200\" height=\"200\" src=\"data:image/svg+xml;base64,{img}\"></p><p>Key: <code>{s}</code></p>\
         <form method=\"post\" action=\"/web-login/mfa\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"redirect\" value=\"{r}\">\
         <label for=\"code\">Code</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\
         <button type=\"submit\">Turn on two-step verification</button></form>",
        err = error_line(error),
        s = esc(secret),
        r = esc(redirect)
    );
    page(state, status, "Two-step verification", &body, fresh)
}

/// The enrollment form.
#[derive(Debug, Deserialize)]
pub struct MfaForm {
    code: String,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// Confirms the enrollment and shows the recovery codes once.
#[utoipa::path(post, path = "/web-login/mfa", tag = "login pages",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 200, content_type = "text/html"), (status = 401, content_type = "text/html")))]
pub async fn mfa_submit(
    State(state): State<AppState>,
    parts: Parts,
    AnyStage(auth): AnyStage,
    Form(form): Form<MfaForm>,
) -> Result<Response, ApiError> {
    check_csrf(&state, &parts, &form.csrf)?;
    let redirect = checked_redirect(form.redirect.as_deref(), "/");
    let user = state.store.get_user(auth.principal.user.id).await?;
    let session = auth.principal.session().map(|s| s.id);
    match state.auth.confirm_totp(&user, session, &form.code).await? {
        Ok(codes) => {
            let list: String = codes
                .iter()
                .map(|c| format!("<li><code>{}</code></li>", esc(c)))
                .collect();
            let body = format!(
                "<p>Two-step verification is on. Keep these recovery codes somewhere safe: each works once, and they are shown only now.</p><ul>{list}</ul><p><a href=\"{r}\">Continue</a></p>",
                r = esc(&redirect)
            );
            Ok(page(&state, StatusCode::OK, "Recovery codes", &body, None))
        }
        Err(r) => {
            // Start over with a fresh secret: the one shown before is not kept on the page.
            let enrollment = state.auth.begin_totp(&user).await?;
            Ok(mfa_form(
                &state,
                &parts,
                &enrollment.qr_svg,
                &enrollment.secret,
                &redirect,
                Some(r.message()),
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

/// The forgotten-password page.
#[utoipa::path(get, path = "/web-login/forgot", tag = "login pages", security(()),
    responses((status = 200, content_type = "text/html")))]
pub async fn forgot_page(State(state): State<AppState>, parts: Parts) -> Response {
    let (token, fresh) = csrf(&parts);
    let body = format!(
        "<form method=\"post\" action=\"/web-login/forgot\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" required autofocus>\
         <button type=\"submit\">Send a reset link</button></form>"
    );
    page(&state, StatusCode::OK, "Reset your password", &body, fresh)
}

/// The forgotten-password form.
#[derive(Debug, Deserialize)]
pub struct ForgotForm {
    email: String,
    #[serde(default)]
    csrf: String,
}

/// Mails a reset link when the address belongs to a local user; the answer is the same either
/// way.
#[utoipa::path(post, path = "/web-login/forgot", tag = "login pages", security(()),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 200, content_type = "text/html")))]
pub async fn forgot_submit(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<ForgotForm>,
) -> Result<Response, ApiError> {
    check_csrf(&state, &parts, &form.csrf)?;
    rate_limit(&state, super::client_ip(&parts, &state))?;
    state.auth.request_reset(&form.email).await?;
    Ok(page(
        &state,
        StatusCode::OK,
        "Check your mail",
        "<p>If this address belongs to an account, a reset link is on its way. It works once, for a limited time.</p>",
        None,
    ))
}

/// Query of the reset page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ResetQuery {
    /// The token from the mailed link.
    pub token: Option<String>,
}

/// The reset page (from the mailed link).
#[utoipa::path(get, path = "/web-login/reset", tag = "login pages", security(()), params(ResetQuery),
    responses((status = 200, content_type = "text/html")))]
pub async fn reset_page(
    State(state): State<AppState>,
    parts: Parts,
    Query(q): Query<ResetQuery>,
) -> Response {
    reset_form(
        &state,
        &parts,
        q.token.as_deref().unwrap_or(""),
        None,
        StatusCode::OK,
    )
}

fn reset_form(
    state: &AppState,
    parts: &Parts,
    link: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, fresh) = csrf(parts);
    let body = format!(
        "{err}<form method=\"post\" action=\"/web-login/reset\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <input type=\"hidden\" name=\"token\" value=\"{l}\">\
         <label for=\"new\">New password</label><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required autofocus>\
         <label for=\"confirm\">New password again</label><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Set password</button></form>",
        err = error_line(error),
        l = esc(link)
    );
    page(state, status, "Choose a new password", &body, fresh)
}

/// The reset form.
#[derive(Debug, Deserialize)]
pub struct ResetForm {
    token: String,
    new: String,
    confirm: String,
    #[serde(default)]
    csrf: String,
}

/// Sets the new password (the link works once) and ends every session of the account.
#[utoipa::path(post, path = "/web-login/reset", tag = "login pages", security(()),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 200, content_type = "text/html"), (status = 400, content_type = "text/html")))]
pub async fn reset_submit(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<ResetForm>,
) -> Result<Response, ApiError> {
    check_csrf(&state, &parts, &form.csrf)?;
    if form.new != form.confirm {
        return Ok(reset_form(
            &state,
            &parts,
            &form.token,
            Some("the two passwords differ"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    match state.auth.complete_reset(&form.token, &form.new).await {
        Ok(Ok(())) => Ok(page(
            &state,
            StatusCode::OK,
            "Password changed",
            "<p>Your password is changed and every session of your account has ended. <a href=\"/web-login\">Sign in</a>.</p>",
            None,
        )),
        Ok(Err(m)) => Ok(reset_form(
            &state,
            &parts,
            &form.token,
            Some(m),
            StatusCode::BAD_REQUEST,
        )),
        Err(portcullis_authn::AuthnError::WeakPassword(m)) => Ok(reset_form(
            &state,
            &parts,
            &form.token,
            Some(&m),
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
        Err(e) => Err(e.into()),
    }
}
