//! `GET /api/v1/audit`: the audit trail, for org admins and auditors.

use axum::Json;
use axum::extract::State;
use portcullis_authz::{Access, OrgAction, PlatformAction, check_org};
use portcullis_model::Timestamp;
use portcullis_store::AuditFilter;
use serde::Deserialize;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::Params;
use crate::routes::page;
use crate::state::AppState;
use crate::views::AuditList;

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this org (slug); default: every org where the caller is admin or auditor.
    org: Option<String>,
    /// Acting user id.
    actor: Option<String>,
    /// Exact action (`user.create`) or a prefix ending in `.` (`user.`).
    action: Option<String>,
    /// Target contains.
    target: Option<String>,
    /// At or after (RFC 3339).
    since: Option<Timestamp>,
    /// Before (RFC 3339).
    until: Option<Timestamp>,
    /// Page size, 1..=500 (default 50).
    limit: Option<u32>,
    /// Items to skip.
    offset: Option<u32>,
}

/// Reads the audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(q): Params<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let page = page(q.limit, q.offset)?;
    let orgs = match &q.org {
        Some(slug) => vec![auth.org(&state, slug, OrgAction::Inspect).await?.id],
        None => {
            let user = &auth.principal.user;
            user.memberships
                .keys()
                .filter(|slug| {
                    check_org(auth.principal.caller_in(slug), OrgAction::Inspect) == Access::Allow
                })
                .filter_map(|slug| user.memberships.get(slug).map(|m| m.org_id))
                .collect()
        }
    };
    let include_platform = q.org.is_none() && auth.platform(PlatformAction::ListAllOrgs).is_ok();
    if orgs.is_empty() && !include_platform {
        return Err(ApiError::Forbidden(
            "reading the audit trail needs the admin or auditor role in an org".into(),
        ));
    }
    let filter = AuditFilter {
        orgs,
        include_platform,
        actor_id: q
            .actor
            .as_deref()
            .map(|a| {
                a.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "invalid query parameter: actor: '{a}' is not a user id"
                    ))
                })
            })
            .transpose()?,
        action: q.action,
        target: q.target,
        since: q.since,
        until: q.until,
    };
    let found = state.store.list_audit(&filter, page).await?;
    Ok(Json(AuditList {
        items: found.items.into_iter().map(Into::into).collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}
