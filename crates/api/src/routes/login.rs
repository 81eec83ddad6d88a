//! The authentication endpoints (seed 003's authentication service shape): `/oauth/token`,
//! `/refreshtoken`, `/userinfo`, `/logout`, `/apps`, `/.well-known/jwks.json`; the HTML login
//! pages under `/web-login`; the self-service account endpoints (password, MFA, sessions,
//! reset); and the admin's unlock, session and temporary-password endpoints.

pub(crate) mod account;
pub(crate) mod tokens;
pub(crate) mod web;

use std::net::IpAddr;

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use portcullis_authn::login::Issued;

use crate::ApiError;
use crate::state::AppState;

/// Name of the session cookie (seed 003).
pub(crate) const SID_COOKIE: &str = portcullis_gateway::credentials::SESSION_COOKIE;
/// Name of the refresh-token cookie.
pub(crate) const REFRESH_COOKIE: &str = portcullis_gateway::credentials::REFRESH_COOKIE;

/// The client address of a request (for rate limits and the audit trail).
pub(crate) fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    crate::client_ip::client_ip(parts, &state.web.trusted_proxies)
}

/// Counts one login attempt from `ip`; refuses when the address tried too often.
pub(crate) fn rate_limit(state: &AppState, ip: Option<IpAddr>) -> Result<(), ApiError> {
    let Some(ip) = ip else { return Ok(()) };
    state.web.login_limiter.check_key(&ip).map_err(|_| {
        metrics::counter!("portcullis_login_rate_limited_total").increment(1);
        ApiError::TooManyRequests {
            message: "too many login attempts from this address; wait a minute".into(),
            retry_after: 60,
        }
    })
}

/// The user agent, for the session list.
pub(crate) fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure behind TLS.
pub(crate) fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
) -> HeaderValue {
    let secure = if state.web.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age_secs.max(0)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The cookies of a browser session.
pub(crate) fn session_cookies(state: &AppState, issued: &Issued) -> [HeaderValue; 2] {
    let now = state.clock.now_millis();
    let max_age = (issued.session.expires_at - now) / 1000;
    [
        set_cookie(state, SID_COOKIE, &issued.access_token, "/", max_age),
        set_cookie(
            state,
            REFRESH_COOKIE,
            &issued.refresh_token,
            "/refreshtoken",
            max_age,
        ),
    ]
}

/// Cookies that end a browser session.
pub(crate) fn clearing_cookies(state: &AppState) -> [HeaderValue; 2] {
    [
        set_cookie(state, SID_COOKIE, "", "/", 0),
        set_cookie(state, REFRESH_COOKIE, "", "/refreshtoken", 0),
    ]
}

/// A `redirect` parameter, accepted only as a path on this origin: it starts with one `/`,
/// has no backslash, no control character, and no scheme or host hidden behind escapes
/// (`//evil`, `/\evil`, `%2F%2Fevil`, `https://evil` all fall back to `fallback`).
pub(crate) fn checked_redirect(raw: Option<&str>, fallback: &str) -> String {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return fallback.to_owned();
    };
    let decoded = portcullis_authz::route_match::percent_decode(raw);
    let safe = |p: &str| {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.contains('\\')
            && !p.chars().any(char::is_control)
    };
    if safe(raw) && safe(&decoded) && !decoded.starts_with("/%") {
        raw.to_owned()
    } else {
        fallback.to_owned()
    }
}

/// Percent-encodes a path for a query parameter.
pub(crate) fn encode_param(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// For a browser's GET (or HEAD) that accepts HTML: the same-origin target to come back to
/// after signing in.
pub(crate) fn wants_login_page<B>(req: &http::Request<B>) -> Option<String> {
    wants_login_page_of(req.method(), req.uri(), req.headers())
}

/// [`wants_login_page`] from a request's parts.
pub(crate) fn wants_login_page_of(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<String> {
    let wants_html = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let is_get = method == http::Method::GET || method == http::Method::HEAD;
    (wants_html && is_get).then(|| {
        uri.path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
    })
}

/// The 302 to the login page (clearing a stale `sid`) that replaces a 401 for a browser.
pub(crate) fn login_page_redirect(target: &str) -> axum::response::Response {
    let location = format!(
        "/web-login?redirect={}",
        encode_param(&checked_redirect(Some(target), "/"))
    );
    let mut out = axum::response::Response::new(axum::body::Body::empty());
    *out.status_mut() = http::StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&location) {
        out.headers_mut().insert(http::header::LOCATION, v);
    }
    out.headers_mut().insert(
        http::header::SET_COOKIE,
        HeaderValue::from_static("sid=; Max-Age=0; Path=/"),
    );
    out
}

/// Browsers meeting a 401 on a GET are sent to the login page instead (API clients, which do
/// not ask for HTML, keep the 401); forward-auth answers are left alone.
pub async fn login_redirect(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let target = wants_login_page(&req);
    let response = next.run(req).await;
    match target {
        Some(target)
            if response.status() == http::StatusCode::UNAUTHORIZED
                && response
                    .extensions()
                    .get::<crate::gateway::KeepStatus>()
                    .is_none() =>
        {
            login_page_redirect(&target)
        }
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_this_origin() {
        for (raw, expected) in [
            (Some("/projects/staging?tab=1"), "/projects/staging?tab=1"),
            (Some("/"), "/"),
            (None, "/"),
            (Some(""), "/"),
            (Some("//evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("%2F%2Fevil.example"), "/"),
            (Some("/%2F%2Fevil.example"), "/"),
            (Some("/%5Cevil.example"), "/"),
            (Some("/%2fevil.example"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/ok\r\nSet-Cookie: x=1"), "/"),
            (Some("evil.example"), "/"),
        ] {
            assert_eq!(checked_redirect(raw, "/"), expected, "{raw:?}");
        }
    }
}
