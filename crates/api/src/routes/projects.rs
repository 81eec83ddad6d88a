//! `/api/v1/orgs/{org}/projects`: projects and who is assigned to them.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use portcullis_authz::OrgAction;
use portcullis_model::names;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::Body;
use crate::routes::user_id;
use crate::state::AppState;
use crate::views::{
    CreateProject, ProjectMemberView, ProjectView, SetProjectMember, UpdateProject,
};

/// Creates a project.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects", tag = "projects", request_body = CreateProject,
    params(("org" = String, Path, description = "org slug")),
    responses((status = 201, body = ProjectView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<CreateProject>,
) -> Result<(StatusCode, Json<ProjectView>), ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    names::validate_slug("name", &body.name)?;
    let description = body.description.unwrap_or_default();
    names::validate_display_name("description", &description)?;
    let project = state
        .store
        .create_project(&auth.actor(), &org, &body.name, &description)
        .await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

/// Lists the projects of an org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects", tag = "projects", params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = [ProjectView]), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
) -> Result<Json<Vec<ProjectView>>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::View).await?;
    Ok(Json(
        state
            .store
            .list_projects(&org)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// One project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project name")),
    responses((status = 200, body = ProjectView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, project)): Path<(String, String)>,
) -> Result<Json<ProjectView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::View).await?;
    Ok(Json(state.store.get_project(&org, &project).await?.into()))
}

/// Renames a project or changes its description.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects", request_body = UpdateProject,
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project name")),
    responses((status = 200, body = ProjectView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, project)): Path<(String, String)>,
    Body(body): Body<UpdateProject>,
) -> Result<Json<ProjectView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    if let Some(name) = &body.name {
        names::validate_slug("name", name)?;
    }
    if let Some(description) = &body.description {
        names::validate_display_name("description", description)?;
    }
    let updated = state
        .store
        .update_project(
            &auth.actor(),
            &org,
            &project,
            body.name.as_deref(),
            body.description.as_deref(),
        )
        .await?;
    Ok(Json(updated.into()))
}

/// Deletes a project.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project name")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, project)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    state
        .store
        .delete_project(&auth.actor(), &org, &project)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is assigned to a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/members", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project name")),
    responses((status = 200, body = [ProjectMemberView]), (status = 403), (status = 404)))]
pub async fn members(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, project)): Path<(String, String)>,
) -> Result<Json<Vec<ProjectMemberView>>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Inspect).await?;
    Ok(Json(
        state
            .store
            .project_members(&org, &project)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Assigns a member of the org to the project (or changes their role).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/projects/{project}/members/{userId}", tag = "projects", request_body = SetProjectMember,
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project name"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = [ProjectMemberView]), (status = 403), (status = 404)))]
pub async fn set_member(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, project, user)): Path<(String, String, String)>,
    Body(body): Body<SetProjectMember>,
) -> Result<Json<Vec<ProjectMemberView>>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    state
        .store
        .set_project_member(&auth.actor(), &org, &project, user_id(&user)?, body.role)
        .await?;
    Ok(Json(
        state
            .store
            .project_members(&org, &project)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Takes a user off the project.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/members/{userId}", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project name"), ("userId" = String, Path, description = "user id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, project, user)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    state
        .store
        .remove_project_member(&auth.actor(), &org, &project, user_id(&user)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
