//! Authentication of API requests, and the access checks handlers call. Both read memory only.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use portcullis_authn::{Principal, SessionCheck, TokenError};
use portcullis_authz::{Access, OrgAction, PlatformAction, check_org, check_platform};
use portcullis_store::SessionStage;
use portcullis_store::{Actor, OrgRecord};
use tower_http::request_id::RequestId;

use crate::ApiError;
use crate::state::AppState;

/// An authenticated caller of the API.
pub struct Authenticated {
    /// Who is calling.
    pub principal: Principal,
    /// The request id, for the audit trail.
    pub request_id: Option<String>,
}

/// A credential as presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// An API key (`Bearer pcl_…` or `X-API-KEY`).
    ApiKey(&'a str),
    /// A session token in `Authorization: Bearer`.
    Token(&'a str),
    /// A session token in the `sid` cookie.
    Cookie(&'a str),
    /// The named credential header more than once: which one counts would be a guess, and a
    /// proxy in front may have read the other (RFC 6750 section 3.1, `invalid_request`).
    Repeated(&'static str),
}

/// Whether a bearer value is a JWT (three base64url parts, a JSON header) rather than a key.
fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ") && value.matches('.').count() == 2
}

/// The value of cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The credential of a request, in the order DESIGN §3 gives: `Authorization: Bearer`,
/// `X-API-KEY`, the `sid` cookie. An `Authorization` header of another scheme (Basic, say) is
/// a backend's business, not a credential: the others are read as if it were absent.
pub(crate) fn presented(headers: &HeaderMap) -> Option<Presented<'_>> {
    let authorization = headers.get_all(http::header::AUTHORIZATION);
    if let Some((_, token)) = authorization.iter().find_map(bearer_of) {
        // Counted before any is used, whatever order they come in: a bearer beside another
        // `Authorization` (another bearer, or a scheme of the backend's) leaves it unclear
        // which one the client meant, and a proxy in front may have read the other.
        if authorization.iter().nth(1).is_some() {
            return Some(Presented::Repeated("Authorization"));
        }
        let token = token.trim();
        return Some(if looks_like_jwt(token) {
            Presented::Token(token)
        } else {
            Presented::ApiKey(token)
        });
    }
    // A named constant, not a string: a string would be parsed into a name on every lookup.
    let keys = headers.get_all(portcullis_gateway::credentials::API_KEY);
    if keys.iter().nth(1).is_some() {
        return Some(Presented::Repeated("X-API-Key"));
    }
    if let Some(key) = keys.iter().next().and_then(|v| v.to_str().ok()) {
        return Some(Presented::ApiKey(key.trim()));
    }
    cookie(headers, crate::routes::login::SID_COOKIE).map(Presented::Cookie)
}

/// The scheme and token of an `Authorization: Bearer` value; none for another scheme.
fn bearer_of(value: &http::HeaderValue) -> Option<(&str, &str)> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
}

/// Whether a request comes from a page of this origin: its `Origin` names this host (or the
/// configured public URL), or, without `Origin`, `Sec-Fetch-Site` says same-origin. Requests
/// that carry a cookie credential and change something must pass this (CSRF).
pub(crate) fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    same_origin_at(headers, None, public_url)
}

/// What a request authenticated by cookie does that only a page of this site may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieUse {
    /// A change (an unsafe method): cross-site request forgery otherwise.
    Change,
    /// Opening a websocket, whose handshake is a GET: cross-site websocket hijacking otherwise.
    Websocket,
}

/// Refuses a request authenticated by cookie that does `what` unless it comes from a page of
/// this site ([`same_origin_at`], at `host` when given).
pub(crate) fn require_same_site(
    headers: &HeaderMap,
    host: Option<&str>,
    public_url: &str,
    what: CookieUse,
) -> Result<(), ApiError> {
    if same_origin_at(headers, host, public_url) {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        match what {
            CookieUse::Change => {
                "cross-site request refused: a request authenticated by cookie must come from this site"
            }
            CookieUse::Websocket => {
                "cross-site websocket refused: a connection authenticated by cookie must be opened from this site"
            }
        }
        .into(),
    ))
}

/// [`same_origin`] for a request whose host is `host` when given (forward-auth: the host the
/// proxy says the client asked for) rather than the `Host` header.
///
/// Where the public URL is `https://` (session cookies are then `Secure`), a page of the same
/// host over plain `http://` is another origin: whoever can answer for that host on the
/// network (a forged or downgraded page) must not act with the session. An `https://` origin
/// of this host always passes, as Portcullis may not see that TLS ended in front of it.
pub(crate) fn same_origin_at(headers: &HeaderMap, host: Option<&str>, public_url: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("origin") {
        Some(origin) => {
            let public = public_url.trim_end_matches('/');
            let https_site = public
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
            let authority = strip_scheme(origin, "https://").or_else(|| {
                (!https_site)
                    .then(|| strip_scheme(origin, "http://"))
                    .flatten()
            });
            let host = host.or_else(|| header("host"));
            authority.is_some_and(|a| host.is_some_and(|h| h.eq_ignore_ascii_case(a)))
                || (!public.is_empty() && origin.eq_ignore_ascii_case(public))
        }
        None => matches!(header("sec-fetch-site"), Some("same-origin" | "none")),
    }
}

/// `text` without its leading `scheme` (in any case).
fn strip_scheme<'t>(text: &'t str, scheme: &str) -> Option<&'t str> {
    text.get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .map(|_| &text[scheme.len()..])
}

/// An authenticated caller whose session may still be waiting for a forced step (a password
/// change, MFA enrollment): only the endpoints of those steps take it.
pub struct AnyStage(pub Authenticated);

impl FromRequestParts<AppState> for AnyStage {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(AnyStage)
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = authenticate(parts, state).await?;
        if let Some(session) = auth.principal.session() {
            match session.stage {
                SessionStage::Active => {}
                SessionStage::PasswordChange => {
                    return Err(ApiError::StepRequired {
                        code: "password_change_required",
                        message: "you signed in with a temporary password: choose a new one first (POST /api/v1/me/password or /web-login/password)".into(),
                    });
                }
                SessionStage::MfaEnrollment => {
                    return Err(ApiError::StepRequired {
                        code: "mfa_enrollment_required",
                        message: "your org requires MFA: enroll a TOTP authenticator first (POST /api/v1/me/mfa/totp or /web-login/mfa)".into(),
                    });
                }
            }
        }
        Ok(auth)
    }
}

/// The counter of successful authentications, looked up once (every authenticated request
/// counts; a lookup hashes the name and labels under the registry's lock).
fn authenticated_counter() -> &'static metrics::Counter {
    static OK: std::sync::LazyLock<metrics::Counter> = std::sync::LazyLock::new(|| {
        // The recorder is in place before the first request; this makes sure of it.
        let _ = crate::observability::recorder();
        metrics::counter!("portcullis_authentications_total", "result" => "ok")
    });
    &OK
}

fn refused(result: &'static str, message: &str) -> ApiError {
    metrics::counter!("portcullis_authentications_total", "result" => result).increment(1);
    ApiError::Unauthenticated(message.to_owned())
}

/// Checks the request's credential, in memory (a session opened on another replica is read
/// from the store once).
pub(crate) async fn authenticate(
    parts: &Parts,
    state: &AppState,
) -> Result<Authenticated, ApiError> {
    authenticate_presented(parts, state, presented(&parts.headers)).await
}

/// [`authenticate`] with the credential already read from `parts` ([`presented`]), for a
/// caller that looked for one first (the gateway): it is not searched for twice.
pub(crate) async fn authenticate_presented(
    parts: &Parts,
    state: &AppState,
    credential: Option<Presented<'_>>,
) -> Result<Authenticated, ApiError> {
    let Some(credential) = credential.filter(|c| match c {
        Presented::ApiKey(k) | Presented::Token(k) | Presented::Cookie(k) => !k.is_empty(),
        Presented::Repeated(_) => true,
    }) else {
        return Err(refused(
            "missing",
            "missing credentials: send 'Authorization: Bearer <token or API key>', 'X-API-KEY: <API key>' or sign in at /web-login",
        ));
    };
    let principal = match credential {
        Presented::Repeated(name) => {
            metrics::counter!("portcullis_authentications_total", "result" => "invalid")
                .increment(1);
            return Err(ApiError::BadRequest(format!(
                "send one credential: the request carries more than one {name} header"
            )));
        }
        Presented::ApiKey(key) => state
            .directory
            .authenticate_api_key(key, state.clock.now_millis())
            .ok_or_else(|| refused("invalid", "invalid, expired or revoked API key"))?,
        Presented::Token(token) | Presented::Cookie(token) => {
            let sid = state
                .keys
                .session_of(token, state.clock.now_secs())
                .map_err(|e| match e {
                    TokenError::Expired => refused(
                        "expired",
                        "the access token has expired; refresh it or sign in again",
                    ),
                    _ => refused("invalid", "invalid session token"),
                })?;
            let sid = sid
                .parse()
                .map_err(|_| refused("invalid", "invalid session token"))?;
            let now = state.clock.now_millis();
            let check = match state.directory.authenticate_session_cached(sid, now) {
                Some(check) => check,
                // A session this replica has not seen (or about to end as idle) is read from
                // the store, on the runtime that owns the pool.
                None => {
                    let (directory, store) = (state.directory.clone(), state.store.clone());
                    state
                        .control
                        .spawn(
                            async move { directory.authenticate_session(&store, sid, now).await },
                        )
                        .await
                        .map_err(|e| ApiError::Internal(format!("session check: {e}")))??
                }
            };
            match check {
                SessionCheck::Live(principal) => principal,
                SessionCheck::Refused(why) => {
                    return Err(refused("session_ended", &format!("{why}; sign in again")));
                }
            }
        }
    };
    if matches!(credential, Presented::Cookie(_)) && !parts.method.is_safe() {
        require_same_site(
            &parts.headers,
            None,
            &state.web.public_url,
            CookieUse::Change,
        )?;
    }
    authenticated_counter().increment(1);
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .filter(|id| usable_request_id(id))
        .map(str::to_owned);
    Ok(Authenticated {
        principal,
        request_id,
    })
}

/// A client-sent request id goes into the audit trail only when it is short printable text.
fn usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Authenticated {
    /// The caller as the audit trail names them.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.principal.user.id),
            name: self.principal.user.email.clone(),
            impersonator: None,
            request_id: self.request_id.clone(),
        }
    }

    /// Checks `action` in the org `slug` and loads it. Non-members learn nothing about the org.
    pub async fn org(
        &self,
        state: &AppState,
        slug: &str,
        action: OrgAction,
    ) -> Result<OrgRecord, ApiError> {
        match check_org(self.principal.caller_in(slug), action) {
            Access::Allow => Ok(state.store.get_org(slug).await?),
            Access::Hidden => Err(ApiError::NotFound(format!("no org '{slug}'"))),
            Access::Deactivated => Err(ApiError::Forbidden(format!(
                "your membership in org '{slug}' is deactivated"
            ))),
            Access::Forbidden => Err(ApiError::Forbidden(match action {
                OrgAction::Manage => format!("this needs the admin role in org '{slug}'"),
                _ => format!("this needs the admin or auditor role in org '{slug}'"),
            })),
        }
    }

    /// Checks a platform-wide action.
    pub fn platform(&self, action: PlatformAction) -> Result<(), ApiError> {
        match check_platform(self.principal.caller(), action) {
            Access::Allow => Ok(()),
            _ => Err(ApiError::Forbidden(
                "this needs a platform administrator".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_headers_in_order() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("cookie", "theme=dark; sid=eyJa.b.c".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::Cookie("eyJa.b.c")));
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::ApiKey("k1")));
        h.insert("authorization", "bearer k2".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::ApiKey("k2")));
        h.insert(
            "authorization",
            "Bearer eyJhbGciOi.eyJzdWIi.sig".parse().unwrap(),
        );
        assert_eq!(
            presented(&h),
            Some(Presented::Token("eyJhbGciOi.eyJzdWIi.sig"))
        );
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(
            presented(&h),
            Some(Presented::ApiKey("k1")),
            "a non-bearer Authorization header is no credential"
        );
        h.remove("x-api-key");
        h.remove("cookie");
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn a_credential_header_sent_twice_is_no_credential_to_pick_from() {
        let mut h = HeaderMap::new();
        h.append("x-api-key", "k1".parse().unwrap());
        h.append("x-api-key", "k2".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::Repeated("X-API-Key")));
        h.append("authorization", "Bearer k3".parse().unwrap());
        h.append("authorization", "Bearer k4".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::Repeated("Authorization")));
        // In either order, and a bearer beside a backend's own scheme alike.
        h.clear();
        h.append("authorization", "Basic abc".parse().unwrap());
        h.append("authorization", "Bearer k5".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::Repeated("Authorization")));
        // A key that is not text does not hide a second one.
        h.clear();
        h.append(
            "x-api-key",
            http::HeaderValue::from_bytes(b"k\xff").unwrap(),
        );
        h.append("x-api-key", "k6".parse().unwrap());
        assert_eq!(presented(&h), Some(Presented::Repeated("X-API-Key")));
        // A backend's own scheme beside nothing else is no credential, as when it comes once.
        h.clear();
        h.append("authorization", "Basic abc".parse().unwrap());
        h.append("authorization", "Basic def".parse().unwrap());
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn same_origin_needs_a_matching_origin_or_fetch_metadata() {
        let mut h = HeaderMap::new();
        h.insert("host", "portal.example:8443".parse().unwrap());
        assert!(!same_origin(&h, "https://portal.example:8443"));
        h.insert("origin", "https://portal.example:8443".parse().unwrap());
        assert!(same_origin(&h, ""));
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, "https://portal.example:8443"));
        h.remove("origin");
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h, ""));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h, ""));
    }

    #[test]
    fn a_plain_http_page_of_an_https_site_is_another_origin() {
        // (origin, public URL, same origin?) for a request to Host portal.example
        let table = [
            ("https://portal.example", "https://portal.example", true),
            ("HTTPS://Portal.Example", "https://portal.example", true),
            ("http://portal.example", "https://portal.example", false),
            ("http://portal.example", "HTTPS://portal.example/", false),
            // Without an https public URL, Portcullis cannot tell which scheme the site has.
            ("http://portal.example", "", true),
            ("http://portal.example", "http://portal.example", true),
            // TLS may end before Portcullis: an https origin of this host passes anyway.
            ("https://portal.example", "http://portal.example", true),
            ("https://portal.example", "", true),
            (
                "https://portal.example.evil",
                "https://portal.example",
                false,
            ),
            ("null", "https://portal.example", false),
            ("portal.example", "", false),
        ];
        for (origin, public, expected) in table {
            let mut h = HeaderMap::new();
            h.insert("host", "portal.example".parse().unwrap());
            h.insert("origin", origin.parse().unwrap());
            assert_eq!(same_origin(&h, public), expected, "{origin} on {public:?}");
        }
    }
}
