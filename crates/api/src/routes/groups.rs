//! `/api/v1/orgs/{org}/groups`: groups and their (nested) members.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use portcullis_authz::OrgAction;
use portcullis_model::{ModelError, names};

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::Body;
use crate::routes::user_id;
use crate::state::AppState;
use crate::views::{AddGroupMember, CreateGroup, GroupMembersView, GroupView};

/// Creates a group.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/groups", tag = "groups", request_body = CreateGroup,
    params(("org" = String, Path, description = "org slug")),
    responses((status = 201, body = GroupView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<CreateGroup>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    names::validate_entity_name("name", &body.name)?;
    let description = body.description.unwrap_or_default();
    names::validate_display_name("description", &description)?;
    let group = state
        .store
        .create_group(&auth.actor(), &org, &body.name, &description)
        .await?;
    Ok((StatusCode::CREATED, Json(GroupView::of(&org.slug, group))))
}

/// Lists the groups of an org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/groups", tag = "groups", params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = [GroupView]), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
) -> Result<Json<Vec<GroupView>>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::View).await?;
    Ok(Json(
        state
            .store
            .list_groups(&org)
            .await?
            .into_iter()
            .map(|g| GroupView::of(&org.slug, g))
            .collect(),
    ))
}

/// One group.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/groups/{group}", tag = "groups",
    params(("org" = String, Path, description = "org slug"), ("group" = String, Path, description = "group name")),
    responses((status = 200, body = GroupView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, group)): Path<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::View).await?;
    Ok(Json(GroupView::of(
        &org.slug,
        state.store.get_group(&org, &group).await?,
    )))
}

/// Deletes a group.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/groups/{group}", tag = "groups",
    params(("org" = String, Path, description = "org slug"), ("group" = String, Path, description = "group name")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    state
        .store
        .delete_group(&auth.actor(), &org, &group)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The direct members of a group.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/groups/{group}/members", tag = "groups",
    params(("org" = String, Path, description = "org slug"), ("group" = String, Path, description = "group name")),
    responses((status = 200, body = GroupMembersView), (status = 404)))]
pub async fn members(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, group)): Path<(String, String)>,
) -> Result<Json<GroupMembersView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::View).await?;
    Ok(Json(state.store.group_members(&org, &group).await?.into()))
}

/// Adds a user (`userId`) or nests a group (`group`); a nesting that would close a cycle is refused with 409.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/groups/{group}/members", tag = "groups", request_body = AddGroupMember,
    params(("org" = String, Path, description = "org slug"), ("group" = String, Path, description = "group name")),
    responses((status = 200, body = GroupMembersView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn add_member(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, group)): Path<(String, String)>,
    Body(body): Body<AddGroupMember>,
) -> Result<Json<GroupMembersView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    match (body.user_id, body.group) {
        (Some(user), None) => {
            state
                .store
                .add_user_to_group(&auth.actor(), &org, &group, user_id(&user)?)
                .await?
        }
        (None, Some(child)) => {
            state
                .store
                .add_group_to_group(&auth.actor(), &org, &group, &child)
                .await?
        }
        _ => {
            return Err(
                ModelError::new("userId", "give exactly one of 'userId' and 'group'").into(),
            );
        }
    }
    state.rbac.changed(&state.store).await?;
    Ok(Json(state.store.group_members(&org, &group).await?.into()))
}

/// Takes a user out of a group.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/groups/{group}/members/users/{userId}", tag = "groups",
    params(("org" = String, Path, description = "org slug"), ("group" = String, Path, description = "group name"), ("userId" = String, Path, description = "user id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove_user(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, group, user)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    state
        .store
        .remove_user_from_group(&auth.actor(), &org, &group, user_id(&user)?)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a nested group out of a group.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/groups/{group}/members/groups/{child}", tag = "groups",
    params(("org" = String, Path, description = "org slug"), ("group" = String, Path, description = "group name"), ("child" = String, Path, description = "nested group name")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove_group(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, group, child)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    state
        .store
        .remove_group_from_group(&auth.actor(), &org, &group, &child)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}
