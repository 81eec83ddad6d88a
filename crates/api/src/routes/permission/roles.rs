//! `/api/permission/roles`: roles with their members and metadata.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_authz::rbac::Action;
use portcullis_model::{EntityRef, Expect, Timestamp};
use portcullis_store::RoleRecord;
use serde::{Deserialize, Serialize};

use super::{caller_name, check_source, path_ref, require_admin};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Params, Path};
use crate::state::AppState;

/// Role metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleMetadata {
    /// `configuration`, `rest`, `csv-file` or `legacy` (set by Portcullis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Owner (user or group reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Creator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Last modifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_by: Option<String>,
    /// Created.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub created_at: Option<Timestamp>,
    /// Last changed.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub last_modified: Option<Timestamp>,
}

/// A role on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBody {
    /// Users and groups holding the role.
    #[serde(default)]
    pub member_references: Vec<String>,
    /// `role:<namespace>/<name>`.
    #[serde(default)]
    pub name: String,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RoleMetadata>,
}

impl From<RoleRecord> for RoleBody {
    fn from(r: RoleRecord) -> Self {
        Self {
            member_references: r.members,
            name: r.name,
            metadata: Some(RoleMetadata {
                source: Some(r.source),
                description: r.description,
                owner: r.owner,
                author: r.author,
                modified_by: r.modified_by,
                created_at: Some(r.created_at),
                last_modified: Some(r.last_modified),
            }),
        }
    }
}

/// Body of `PUT /api/permission/roles/{kind}/{namespace}/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRole {
    /// The role as the client last saw it.
    pub old_role: RoleBody,
    /// The role as it should be.
    pub new_role: RoleBody,
}

/// Query of `DELETE /api/permission/roles/{kind}/{namespace}/{name}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    /// Remove only this member (the role goes with its last member).
    member_references: Option<String>,
}

/// Owners are stored as references are: user and group references lower-cased.
fn normalise_owner(owner: String) -> String {
    EntityRef::parse(&owner, Expect::Member)
        .map(|e| e.as_str().to_owned())
        .unwrap_or(owner)
}

/// Validates a role body as the reference does; returns the normalised name and members.
fn validate(role: &RoleBody) -> Result<(String, Vec<String>), ApiError> {
    if role.name.is_empty() {
        return Err(ApiError::BadRequest(
            "'name' field must not be empty".into(),
        ));
    }
    let name = EntityRef::parse(&role.name, Expect::Role).map_err(|e| ApiError::BadRequest(e.0))?;
    if role.member_references.is_empty() {
        return Err(ApiError::BadRequest(
            "'memberReferences' field must not be empty".into(),
        ));
    }
    let mut members = Vec::with_capacity(role.member_references.len());
    for m in &role.member_references {
        members.push(
            EntityRef::parse(m, Expect::Member)
                .map_err(|e| ApiError::BadRequest(e.0))?
                .as_str()
                .to_owned(),
        );
    }
    if role
        .metadata
        .as_ref()
        .and_then(|m| m.description.as_deref())
        .is_some_and(|d| d.chars().any(char::is_control))
    {
        return Err(ApiError::BadRequest(
            "'metadata.description' must not contain control characters".into(),
        ));
    }
    if let Some(owner) = role.metadata.as_ref().and_then(|m| m.owner.as_deref()) {
        EntityRef::parse(owner, Expect::Member).map_err(|e| ApiError::BadRequest(e.0))?;
    }

    members.sort();
    members.dedup();
    Ok((name.as_str().to_owned(), members))
}

/// All roles.
#[utoipa::path(get, path = "/api/permission/roles", tag = "permission", responses((status = 200, body = [RoleBody]), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<RoleBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    Ok(Json(
        state
            .store
            .list_roles()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// One role (as a one-element array, as the reference answers).
#[utoipa::path(get, path = "/api/permission/roles/{kind}/{namespace}/{name}", tag = "permission", params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)), responses((status = 200, body = [RoleBody]), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Result<Json<Vec<RoleBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let name = path_ref(&kind, &namespace, &name, Expect::Role)?;
    let role = state
        .store
        .get_role(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{name} was not found")))?;
    Ok(Json(vec![role.into()]))
}

async fn create_role(
    state: &AppState,
    auth: &Authenticated,
    body: RoleBody,
) -> Result<StatusCode, ApiError> {
    require_admin(state, auth, Action::Create)?;
    let (name, members) = validate(&body)?;
    let caller = caller_name(auth);
    if let Some(existing) = state.store.get_role(&name).await? {
        // As the reference: another source's role is refused; a REST role gains the members it
        // did not have yet.
        check_source(&name, &existing.source, "add role")?;
        let added: Vec<String> = members
            .iter()
            .filter(|m| !existing.members.contains(m))
            .cloned()
            .collect();
        if added.is_empty() {
            return Err(ApiError::Conflict(format!(
                "role {name} already exists with these members"
            )));
        }
        let mut all = existing.members.clone();
        all.extend(added);
        let record = RoleRecord {
            modified_by: Some(caller),
            members: all,
            ..existing
        };
        state
            .store
            .update_role(&auth.actor(), &name, &record)
            .await?;
        state.rbac.changed(&state.store).await?;
        return Ok(StatusCode::CREATED);
    }
    // The policy administrators' role belongs to the configuration, even before it has members.
    if name == crate::rbac::RBAC_ADMIN_ROLE {
        check_source(&name, "configuration", "add role")?;
    }
    let meta = body.metadata.unwrap_or_default();
    let record = RoleRecord {
        name,
        source: "rest".into(),
        description: meta.description,
        owner: meta.owner.map(normalise_owner),
        author: Some(caller.clone()),
        modified_by: Some(caller),
        created_at: Timestamp(0),
        last_modified: Timestamp(0),
        members,
    };
    state.store.create_role(&auth.actor(), &record).await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::CREATED)
}

/// Creates a role.
#[utoipa::path(post, path = "/api/permission/roles", tag = "permission", request_body = RoleBody, responses((status = 201), (status = 400), (status = 403), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<RoleBody>,
) -> Result<StatusCode, ApiError> {
    create_role(&state, &auth, body).await
}

/// Creates a role (the name in the path must match the body's, when the body has one).
#[utoipa::path(post, path = "/api/permission/roles/{kind}/{namespace}/{name}", tag = "permission", request_body = RoleBody, params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)), responses((status = 201), (status = 400), (status = 403), (status = 409)))]
pub async fn create_at(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Body(mut body): Body<RoleBody>,
) -> Result<StatusCode, ApiError> {
    let name = path_ref(&kind, &namespace, &name, Expect::Role)?;
    if body.name.is_empty() {
        body.name = name;
    } else if body.name != name {
        return Err(ApiError::BadRequest(format!(
            "the role in the path ({name}) and in the body ({}) differ",
            body.name
        )));
    }
    create_role(&state, &auth, body).await
}

/// Replaces a role's name, members and metadata.
#[utoipa::path(put, path = "/api/permission/roles/{kind}/{namespace}/{name}", tag = "permission", request_body = UpdateRole, params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)), responses((status = 200), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Body(mut body): Body<UpdateRole>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Update)?;
    let name = path_ref(&kind, &namespace, &name, Expect::Role)?;
    // The path names the old role; its body may leave the name out.
    if body.old_role.name.is_empty() {
        body.old_role.name = name.clone();
    }
    let (_, old_members) = validate(&body.old_role)?;
    let (new_name, new_members) = validate(&body.new_role)?;
    let current = state
        .store
        .get_role(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{name} was not found")))?;
    check_source(&name, &current.source, "edit role")?;
    if new_name != name {
        if new_name == crate::rbac::RBAC_ADMIN_ROLE {
            check_source(&new_name, "configuration", "edit role")?;
        }
        if state.store.get_role(&new_name).await?.is_some() {
            return Err(ApiError::Conflict(format!(
                "role {new_name} already exists"
            )));
        }
        // Policies left by a role that lost its last member would silently pass to this one.
        if !state.store.list_policies(Some(&new_name)).await?.is_empty() {
            return Err(ApiError::Conflict(format!(
                "{new_name} still holds permission policies; delete them before renaming onto it"
            )));
        }
    }
    // As the reference: the old members named are replaced by the new ones; members the request
    // does not name stay, so concurrent edits of different members do not undo each other.
    for m in &old_members {
        if !current.members.contains(m) {
            return Err(ApiError::NotFound(format!(
                "Member reference: {m} was not found for role {name}"
            )));
        }
    }
    let mut members: Vec<String> = current
        .members
        .iter()
        .filter(|m| !old_members.contains(m))
        .cloned()
        .collect();
    for m in new_members {
        if members.contains(&m) {
            return Err(ApiError::Conflict(format!(
                "Member reference: {m} already exists for role {new_name}"
            )));
        }
        members.push(m);
    }
    members.sort();
    let meta = body.new_role.metadata.unwrap_or_default();
    let description = meta.description.or(current.description.clone());
    let owner = meta.owner.map(normalise_owner).or(current.owner.clone());
    if new_name == name
        && members == current.members
        && description == current.description
        && owner == current.owner
    {
        return Ok(StatusCode::NO_CONTENT);
    }
    let record = RoleRecord {
        name: new_name,
        description,
        owner,
        modified_by: Some(caller_name(&auth)),
        members,
        ..current
    };
    state
        .store
        .update_role(&auth.actor(), &name, &record)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::OK)
}

/// Deletes a role, or only the members named in `memberReferences`.
#[utoipa::path(delete, path = "/api/permission/roles/{kind}/{namespace}/{name}", tag = "permission", params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path), DeleteQuery), responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Params(q): Params<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Delete)?;
    let name = path_ref(&kind, &namespace, &name, Expect::Role)?;
    let current = state
        .store
        .get_role(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{name} was not found")))?;
    check_source(&name, &current.source, "delete role")?;
    match q.member_references {
        Some(member) => {
            let member =
                EntityRef::parse(&member, Expect::Member).map_err(|e| ApiError::BadRequest(e.0))?;
            state
                .store
                .remove_role_members(&auth.actor(), &name, &[member.as_str().to_owned()])
                .await?;
        }
        None => state.store.delete_role(&auth.actor(), &name).await?,
    }
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}
