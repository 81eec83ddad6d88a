//! The router: every path of the control plane, and helpers the handlers share.

pub(crate) mod audit;
pub(crate) mod groups;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod me;
pub(crate) mod orgs;
pub(crate) mod permission;
pub(crate) mod projects;
pub(crate) mod rond;
pub(crate) mod users;

use axum::Router;
use axum::routing::{delete, get, post, put};
use portcullis_model::UserId;
use portcullis_store::Page;

use crate::ApiError;
use crate::state::AppState;

/// Every route of the control plane.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(crate::openapi::document))
        .route("/api/v1/me", get(me::me))
        .route(
            "/api/v1/me/keys",
            get(keys::list_mine).post(keys::create_mine),
        )
        .route("/api/v1/me/keys/{key_id}", delete(keys::delete_mine))
        .route("/api/v1/orgs", get(orgs::list).post(orgs::create))
        .route("/api/v1/orgs/{org}", get(orgs::get).patch(orgs::update))
        .route(
            "/api/v1/orgs/{org}/projects",
            get(projects::list).post(projects::create),
        )
        .route(
            "/api/v1/orgs/{org}/projects/{project}",
            get(projects::get)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/api/v1/orgs/{org}/projects/{project}/members",
            get(projects::members),
        )
        .route(
            "/api/v1/orgs/{org}/projects/{project}/members/{user_id}",
            put(projects::set_member).delete(projects::remove_member),
        )
        .route("/api/v1/orgs/{org}/members", post(users::add_member))
        .route(
            "/api/v1/orgs/{org}/users",
            get(users::list).post(users::create),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}",
            get(users::get).patch(users::update).delete(users::remove),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/deactivate",
            post(users::deactivate),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/reactivate",
            post(users::reactivate),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/keys",
            get(keys::list_for_user).post(keys::create_for_user),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/keys/{key_id}",
            delete(keys::delete_for_user),
        )
        .route(
            "/api/v1/orgs/{org}/groups",
            get(groups::list).post(groups::create),
        )
        .route(
            "/api/v1/orgs/{org}/groups/{group}",
            get(groups::get).delete(groups::delete),
        )
        .route(
            "/api/v1/orgs/{org}/groups/{group}/members",
            get(groups::members).post(groups::add_member),
        )
        .route(
            "/api/v1/orgs/{org}/groups/{group}/members/users/{user_id}",
            delete(groups::remove_user),
        )
        .route(
            "/api/v1/orgs/{org}/groups/{group}/members/groups/{child}",
            delete(groups::remove_group),
        )
        .route("/api/v1/audit", get(audit::list))
        .route(
            "/api/v1/orgs/{org}/roles",
            get(rond::list_roles).post(rond::create_roles),
        )
        .route(
            "/api/v1/orgs/{org}/roles/{role_id}",
            get(rond::get_role)
                .put(rond::replace_role)
                .delete(rond::delete_role),
        )
        .route(
            "/api/v1/orgs/{org}/bindings",
            get(rond::list_bindings).post(rond::create_bindings),
        )
        .route(
            "/api/v1/orgs/{org}/bindings/{binding_id}",
            get(rond::get_binding)
                .put(rond::replace_binding)
                .delete(rond::delete_binding),
        )
        .route("/grant/bindings", post(rond::grant_bindings))
        .route(
            "/grant/bindings/resource/{resource_type}",
            post(rond::grant_bindings_on),
        )
        .route("/revoke/bindings", post(rond::revoke_bindings))
        .route(
            "/revoke/bindings/resource/{resource_type}",
            post(rond::revoke_bindings_on),
        )
        .route("/oauth/token", post(login::tokens::token))
        .route("/refreshtoken", post(login::tokens::refresh))
        .route("/userinfo", get(login::tokens::userinfo))
        .route(
            "/logout",
            get(login::tokens::logout).post(login::tokens::logout_post),
        )
        .route("/apps", get(login::tokens::apps))
        .route("/.well-known/jwks.json", get(login::tokens::jwks))
        .route(
            "/web-login",
            get(login::web::login_page).post(login::web::login_submit),
        )
        .route("/web-login/totp", post(login::web::totp_submit))
        .route(
            "/web-login/password",
            get(login::web::password_page).post(login::web::password_submit),
        )
        .route(
            "/web-login/mfa",
            get(login::web::mfa_page).post(login::web::mfa_submit),
        )
        .route(
            "/web-login/forgot",
            get(login::web::forgot_page).post(login::web::forgot_submit),
        )
        .route(
            "/web-login/reset",
            get(login::web::reset_page).post(login::web::reset_submit),
        )
        .route("/api/v1/me/password", post(login::account::change_password))
        .route("/api/v1/me/mfa", get(login::account::mfa_status))
        .route(
            "/api/v1/me/mfa/totp",
            post(login::account::begin_totp).delete(login::account::remove_totp),
        )
        .route(
            "/api/v1/me/mfa/totp/confirm",
            post(login::account::confirm_totp),
        )
        .route("/api/v1/me/sessions", get(login::account::my_sessions))
        .route(
            "/api/v1/me/sessions/{session_id}",
            delete(login::account::revoke_my_session),
        )
        .route(
            "/api/v1/password-reset",
            post(login::account::request_reset),
        )
        .route(
            "/api/v1/password-reset/confirm",
            post(login::account::confirm_reset),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/unlock",
            post(login::account::unlock),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/sessions",
            get(login::account::user_sessions).delete(login::account::revoke_user_sessions),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/sessions/{session_id}",
            delete(login::account::revoke_user_session),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/temporary-password",
            post(login::account::temporary_password),
        )
        .route(
            "/api/v1/orgs/{org}/users/{user_id}/mfa",
            delete(login::account::remove_user_mfa),
        )
        .route("/auth", axum::routing::any(crate::gateway::forward_auth))
        .route(
            "/auth/{*rest}",
            axum::routing::any(crate::gateway::forward_auth),
        )
        .merge(permission::router())
        .fallback(crate::gateway::proxy)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(crate::error::backstage_errors))
        .layer(axum::middleware::from_fn(login::login_redirect))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this method is not allowed on this path".into())
}

/// A user id from a path: anything that is not an id names no user.
pub(crate) fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no user '{raw}'")))
}

/// Paging from query parameters, with bounds.
pub(crate) fn page(limit: Option<u32>, offset: Option<u32>) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 500, got {limit}"
        )));
    }
    Ok(Page {
        limit,
        offset: offset.unwrap_or(0),
    })
}
