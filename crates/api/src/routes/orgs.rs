//! `/api/v1/orgs`: create, list, get, update settings.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use portcullis_authz::{OrgAction, PlatformAction};
use portcullis_model::names;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::Body;
use crate::state::AppState;
use crate::views::{CreateOrg, OrgView, UpdateOrg};

/// Creates an org; the caller (a platform admin) becomes its first admin.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgView), (status = 403), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<CreateOrg>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    auth.platform(PlatformAction::CreateOrg)?;
    names::validate_slug("slug", &body.slug)?;
    let name = body.name.unwrap_or_else(|| body.slug.clone());
    validate_org_name(&name)?;
    let org = state
        .store
        .create_org(
            &auth.actor(),
            &body.slug,
            &name,
            Some(auth.principal.user.id),
        )
        .await?;
    state
        .directory
        .user_changed(&state.store, auth.principal.user.id)
        .await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// Lists the caller's orgs (every org for platform admins).
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", responses((status = 200, body = [OrgView])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<OrgView>>, ApiError> {
    let all = auth.platform(PlatformAction::ListAllOrgs).is_ok();
    let mine: Vec<_> = auth
        .principal
        .user
        .memberships
        .values()
        .filter(|m| {
            auth.principal
                .credential_org
                .is_none_or(|bound| bound == m.org_id)
        })
        .map(|m| m.org_id)
        .collect();
    let orgs = state
        .store
        .list_orgs(if all { None } else { Some(&mine) })
        .await?;
    Ok(Json(orgs.into_iter().map(Into::into).collect()))
}

/// One org, for its members.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = OrgView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
) -> Result<Json<OrgView>, ApiError> {
    Ok(Json(auth.org(&state, &org, OrgAction::View).await?.into()))
}

/// Renames an org or changes its security settings (send only what changes).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}", tag = "orgs", request_body = UpdateOrg, params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = OrgView), (status = 400), (status = 403), (status = 404), (status = 422)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<UpdateOrg>,
) -> Result<Json<OrgView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    if let Some(name) = &body.name {
        validate_org_name(name)?;
    }
    let settings = body
        .settings
        .as_ref()
        .map(|patch| org.settings.merged(patch))
        .transpose()?;
    let updated = state
        .store
        .update_org(&auth.actor(), &org, body.name.as_deref(), settings.as_ref())
        .await?;
    Ok(Json(updated.into()))
}

/// An org's display name: a display name that says something (the console lists orgs by it).
fn validate_org_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(portcullis_model::ModelError::new("name", "must not be empty").into());
    }
    Ok(names::validate_display_name("name", name)?)
}
