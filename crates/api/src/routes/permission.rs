//! The Backstage-compatible permission API (`/api/permission/…`, seed 002 chapter 4) and the
//! decision endpoints built on the RBAC engine. Errors here take the reference's shape
//! (`error::backstage_errors`).

pub(crate) mod conditions;
pub(crate) mod decisions;
pub(crate) mod policies;
pub(crate) mod roles;

use axum::Router;
use axum::routing::{get, post};
use portcullis_authz::rbac::Action;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::state::AppState;

/// The routes. Errors of the Backstage-compatible ones take the reference's shape through
/// `error::backstage_errors`, applied on the whole router so unmatched paths get it too.
pub fn router() -> Router<AppState> {
    let permission = Router::new()
        .route("/api/permission/", get(decisions::authorization_status))
        .route(
            "/api/permission/roles",
            get(roles::list).post(roles::create),
        )
        .route(
            "/api/permission/roles/conditions",
            get(conditions::list).post(conditions::create),
        )
        .route(
            "/api/permission/roles/conditions/{id}",
            get(conditions::get)
                .put(conditions::update)
                .delete(conditions::delete),
        )
        .route(
            "/api/permission/roles/{kind}/{namespace}/{name}",
            get(roles::get)
                .post(roles::create_at)
                .put(roles::update)
                .delete(roles::delete),
        )
        .route(
            "/api/permission/policies",
            get(policies::list).post(policies::create),
        )
        .route(
            "/api/permission/policies/{kind}/{namespace}/{name}",
            get(policies::get)
                .put(policies::update)
                .delete(policies::delete),
        )
        .route(
            "/api/permission/plugins/policies",
            get(decisions::plugin_policies),
        )
        .route(
            "/api/permission/plugins/condition-rules",
            get(decisions::condition_rules),
        )
        .route("/api/permission/authorize", post(decisions::authorize))
        .route(
            "/api/licensed-users-info/users/quantity",
            get(decisions::user_quantity),
        )
        .route("/api/licensed-users-info/users", get(decisions::users));
    Router::new()
        .merge(permission)
        .route("/api/v1/check", post(decisions::check))
        .route("/api/v1/me/permissions", get(decisions::my_permissions))
}

/// Only policy administrators use the RBAC API.
pub(crate) fn require_admin(
    state: &AppState,
    auth: &Authenticated,
    action: Action,
) -> Result<(), ApiError> {
    if state.rbac.is_policy_admin(&auth.principal, action) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this needs the policy.entity.{} permission (a policy administrator)",
            action.as_str()
        )))
    }
}

/// The entity reference named by a path, validated as the reference does (400 with its message);
/// user and group references are lower-cased, as they are stored.
pub(crate) fn path_ref(
    kind: &str,
    namespace: &str,
    name: &str,
    expect: portcullis_model::Expect,
) -> Result<String, ApiError> {
    let text = format!("{kind}:{namespace}/{name}");
    portcullis_model::EntityRef::parse(&text, expect)
        .map(|r| r.as_str().to_owned())
        .map_err(|e| ApiError::BadRequest(e.0))
}

/// Items may only be changed through the source that made them (`legacy` is open to all).
pub(crate) fn check_source(role: &str, source: &str, what: &str) -> Result<(), ApiError> {
    if source == "rest" || source == "legacy" {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "Unable to {what} {role}: source does not match originating role {role}, consider making changes to the '{}'",
        source.to_uppercase()
    )))
}

/// The caller as `modifiedBy` / `author`.
pub(crate) fn caller_name(auth: &Authenticated) -> String {
    crate::rbac::user_ref(&auth.principal).unwrap_or_else(|| auth.principal.user.email.clone())
}
