//! Authentication of API requests, and the access checks handlers call. Both read memory only.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use portcullis_authn::Principal;
use portcullis_authz::{Access, OrgAction, PlatformAction, check_org, check_platform};
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

/// The API key of a request: `Authorization: Bearer <key>` or `X-API-KEY: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(key) = presented_key(&parts.headers).filter(|k| !k.is_empty()) else {
            metrics::counter!("portcullis_authentications_total", "result" => "missing")
                .increment(1);
            return Err(ApiError::Unauthenticated(
                "missing credentials: send 'Authorization: Bearer <API key>' or 'X-API-KEY: <API key>'".into(),
            ));
        };
        let Some(principal) = state.directory.authenticate_api_key(key) else {
            metrics::counter!("portcullis_authentications_total", "result" => "invalid")
                .increment(1);
            return Err(ApiError::Unauthenticated(
                "invalid, expired or revoked API key".into(),
            ));
        };
        metrics::counter!("portcullis_authentications_total", "result" => "ok").increment(1);
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .filter(|id| usable_request_id(id))
            .map(str::to_owned);
        Ok(Self {
            principal,
            request_id,
        })
    }
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
    fn keys_come_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert("authorization", "bearer k2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(
            presented_key(&h),
            None,
            "a non-bearer Authorization header is not a key"
        );
    }
}
