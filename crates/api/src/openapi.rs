//! The OpenAPI 3.1 document of the admin API, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::login::{account, tokens, web};
use crate::routes::permission::{conditions, decisions, policies, roles};
use crate::routes::{audit, groups, health, keys, me, orgs, projects, rond, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "Portcullis admin API", description = "Orgs, projects, users, groups, API keys, logins and sessions, the audit trail, and the Backstage-compatible permission API."),
    paths(
        health::healthz, health::readyz, health::metrics,
        me::me,
        keys::list_mine, keys::create_mine, keys::delete_mine,
        keys::list_for_user, keys::create_for_user, keys::delete_for_user,
        orgs::create, orgs::list, orgs::get, orgs::update,
        projects::create, projects::list, projects::get, projects::update, projects::delete,
        projects::members, projects::set_member, projects::remove_member,
        users::create, users::add_member, users::list, users::get, users::update,
        users::deactivate, users::reactivate, users::remove,
        groups::create, groups::list, groups::get, groups::delete,
        groups::members, groups::add_member, groups::remove_user, groups::remove_group,
        audit::list,
        rond::list_roles, rond::create_roles, rond::get_role, rond::replace_role, rond::delete_role,
        rond::list_bindings, rond::create_bindings, rond::get_binding, rond::replace_binding, rond::delete_binding,
        rond::grant_bindings, rond::grant_bindings_on, rond::revoke_bindings, rond::revoke_bindings_on,
        roles::list, roles::get, roles::create, roles::create_at, roles::update, roles::delete,
        policies::list, policies::get, policies::create, policies::update, policies::delete,
        conditions::list, conditions::get, conditions::create, conditions::update, conditions::delete,
        decisions::authorize, decisions::authorization_status, decisions::check, decisions::my_permissions, decisions::plugin_policies, decisions::condition_rules,
        decisions::user_quantity, decisions::users,
        tokens::token, tokens::refresh, tokens::userinfo, tokens::logout, tokens::logout_post, tokens::apps, tokens::jwks,
        web::login_page, web::login_submit, web::totp_submit, web::password_page, web::password_submit,
        web::mfa_page, web::mfa_submit, web::forgot_page, web::forgot_submit, web::reset_page, web::reset_submit,
        account::change_password, account::mfa_status, account::begin_totp, account::confirm_totp, account::remove_totp,
        account::my_sessions, account::revoke_my_session, account::request_reset, account::confirm_reset,
        account::unlock, account::user_sessions, account::revoke_user_sessions, account::revoke_user_session,
        account::temporary_password, account::remove_user_mfa,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("apiKey" = [])),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-KEY"))),
        );
    }
}

/// The document, built once per call (it is small and rarely fetched).
pub fn build() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(build())
}
