//! `/api/v1/orgs/{org}/roles` and `/api/v1/orgs/{org}/bindings`: Rönd-style roles and bindings
//! in Rönd's document shapes. POST takes one document or an array of them (the seed's JSON arrays
//! import as they are: fields Portcullis does not use, like `__STATE__`, are ignored).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_authz::OrgAction;
use portcullis_model::ModelError;
use portcullis_store::{RondDocument, RondKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Path};
use crate::state::AppState;

/// A role: a named set of permissions.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RondRole {
    /// Id, unique in the org.
    #[serde(default)]
    pub role_id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Permission strings, e.g. `console.data-fabric.control-plane.view`.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// The resource a binding is scoped to.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RondResource {
    /// E.g. `project`.
    pub resource_type: String,
    /// E.g. `staging`.
    pub resource_id: String,
}

/// A binding: subjects and groups that hold roles and permissions, optionally on one resource.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RondBinding {
    /// Id, unique in the org.
    #[serde(default)]
    pub binding_id: String,
    /// User ids.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions granted directly.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The resource the binding applies to; none for the whole org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<RondResource>,
}

fn check_id(field: &str, id: &str) -> Result<(), ModelError> {
    if id.is_empty() {
        return Err(ModelError::new(field, "must not be empty"));
    }
    if id.len() > 253
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@'))
    {
        return Err(ModelError::new(
            field,
            "must be at most 253 letters, digits and '.', '_', '-', ':' or '@'",
        ));
    }
    Ok(())
}

fn check_strings(field: &str, items: &[String]) -> Result<(), ModelError> {
    for (i, s) in items.iter().enumerate() {
        check_string(&format!("{field}[{i}]"), s)?;
    }
    Ok(())
}

/// One name or id: something to match on (not only spaces), at most 512 characters, no control
/// characters.
fn check_string(field: &str, s: &str) -> Result<(), ModelError> {
    if s.trim().is_empty() || s.len() > 512 || s.chars().any(char::is_control) {
        return Err(ModelError::new(
            field,
            "must be 1 to 512 characters, not only spaces, without control characters",
        ));
    }
    Ok(())
}

/// A document kind: how to read, name and check it.
trait RondDoc: DeserializeOwned + Serialize + Clone {
    const KIND: RondKind;
    const ID_FIELD: &'static str;
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    fn validate(&self) -> Result<(), ModelError>;
}

impl RondDoc for RondRole {
    const KIND: RondKind = RondKind::Role;
    const ID_FIELD: &'static str = "roleId";
    fn id(&self) -> &str {
        &self.role_id
    }
    fn set_id(&mut self, id: String) {
        self.role_id = id;
    }
    fn validate(&self) -> Result<(), ModelError> {
        check_id("roleId", &self.role_id)?;
        portcullis_model::names::validate_display_name("name", &self.name)?;
        portcullis_model::names::validate_display_name("description", &self.description)?;
        check_strings("permissions", &self.permissions)
    }
}

impl RondDoc for RondBinding {
    const KIND: RondKind = RondKind::Binding;
    const ID_FIELD: &'static str = "bindingId";
    fn id(&self) -> &str {
        &self.binding_id
    }
    fn set_id(&mut self, id: String) {
        self.binding_id = id;
    }
    fn validate(&self) -> Result<(), ModelError> {
        check_id("bindingId", &self.binding_id)?;
        check_strings("subjects", &self.subjects)?;
        check_strings("groups", &self.groups)?;
        check_strings("roles", &self.roles)?;
        check_strings("permissions", &self.permissions)?;
        if let Some(r) = &self.resource {
            check_string("resource.resourceType", &r.resource_type)?;
            check_string("resource.resourceId", &r.resource_id)?;
        }
        Ok(())
    }
}

/// Reads one document or an array of them, naming the item and field that is wrong.
fn read_many<D: RondDoc>(body: Value) -> Result<Vec<D>, ApiError> {
    let items = match body {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(ApiError::BadRequest(
                "invalid request body: expected a document or an array of documents".into(),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest(
            "invalid request body: the array is empty".into(),
        ));
    }
    let mut out: Vec<D> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let doc: D = serde_json::from_value(item)
            .map_err(|e| ApiError::BadRequest(format!("invalid request body: [{i}]: {e}")))?;
        doc.validate()
            .map_err(|e| ModelError::new(format!("[{i}].{}", e.field), e.message))?;
        if out.iter().any(|d| d.id() == doc.id()) {
            return Err(ApiError::Conflict(format!(
                "{} '{}' appears twice in the request",
                D::ID_FIELD,
                doc.id()
            )));
        }
        out.push(doc);
    }
    Ok(out)
}

fn to_doc<D: RondDoc>(stored: RondDocument) -> Result<D, ApiError> {
    serde_json::from_value(stored.document)
        .map_err(|e| ApiError::Internal(format!("stored {} is unreadable: {e}", stored.id)))
}

async fn list<D: RondDoc>(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
) -> Result<Vec<D>, ApiError> {
    let org = auth.org(state, org, OrgAction::Inspect).await?;
    state
        .store
        .list_rond(&org, D::KIND)
        .await?
        .into_iter()
        .map(to_doc)
        .collect()
}

async fn create<D: RondDoc>(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    body: Value,
) -> Result<Vec<D>, ApiError> {
    let org = auth.org(state, org, OrgAction::Manage).await?;
    let docs: Vec<D> = read_many(body)?;
    let rows: Vec<(String, Value)> = docs
        .iter()
        .map(|d| {
            Ok((
                d.id().to_owned(),
                serde_json::to_value(d).map_err(|e| ApiError::Internal(e.to_string()))?,
            ))
        })
        .collect::<Result<_, ApiError>>()?;
    state
        .store
        .create_rond(&auth.actor(), &org, D::KIND, &rows)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(docs)
}

async fn get<D: RondDoc>(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    id: &str,
) -> Result<D, ApiError> {
    let org = auth.org(state, org, OrgAction::Inspect).await?;
    to_doc(state.store.get_rond(&org, D::KIND, id).await?)
}

async fn replace<D: RondDoc>(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    id: &str,
    mut doc: D,
) -> Result<D, ApiError> {
    let org = auth.org(state, org, OrgAction::Manage).await?;
    if doc.id().is_empty() {
        doc.set_id(id.to_owned());
    } else if doc.id() != id {
        return Err(ModelError::new(
            D::ID_FIELD,
            format!("'{}' differs from '{id}' in the path", doc.id()),
        )
        .into());
    }
    doc.validate()?;
    let value = serde_json::to_value(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .replace_rond(&auth.actor(), &org, D::KIND, id, &value)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(doc)
}

async fn delete<D: RondDoc>(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    id: &str,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(state, org, OrgAction::Manage).await?;
    state
        .store
        .delete_rond(&auth.actor(), &org, D::KIND, id)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The org's roles.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/roles", tag = "roles and bindings", params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = [RondRole]), (status = 403), (status = 404)))]
pub async fn list_roles(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
) -> Result<Json<Vec<RondRole>>, ApiError> {
    Ok(Json(list(&state, &auth, &org).await?))
}

/// Creates one role, or imports an array of them (all or none).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/roles", tag = "roles and bindings", request_body = Vec<RondRole>,
    params(("org" = String, Path, description = "org slug")),
    responses((status = 201, body = [RondRole]), (status = 400), (status = 403), (status = 409), (status = 422)))]
pub async fn create_roles(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<Value>,
) -> Result<(StatusCode, Json<Vec<RondRole>>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(create(&state, &auth, &org, body).await?),
    ))
}

/// One role.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/roles/{roleId}", tag = "roles and bindings",
    params(("org" = String, Path, description = "org slug"), ("roleId" = String, Path)),
    responses((status = 200, body = RondRole), (status = 404)))]
pub async fn get_role(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<RondRole>, ApiError> {
    Ok(Json(get(&state, &auth, &org, &id).await?))
}

/// Replaces a role.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/roles/{roleId}", tag = "roles and bindings", request_body = RondRole,
    params(("org" = String, Path, description = "org slug"), ("roleId" = String, Path)),
    responses((status = 200, body = RondRole), (status = 400), (status = 404), (status = 422)))]
pub async fn replace_role(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, id)): Path<(String, String)>,
    Body(doc): Body<RondRole>,
) -> Result<Json<RondRole>, ApiError> {
    Ok(Json(replace(&state, &auth, &org, &id, doc).await?))
}

/// Deletes a role.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/roles/{roleId}", tag = "roles and bindings",
    params(("org" = String, Path, description = "org slug"), ("roleId" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete_role(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete::<RondRole>(&state, &auth, &org, &id).await
}

/// The org's bindings.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/bindings", tag = "roles and bindings", params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = [RondBinding]), (status = 403), (status = 404)))]
pub async fn list_bindings(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
) -> Result<Json<Vec<RondBinding>>, ApiError> {
    Ok(Json(list(&state, &auth, &org).await?))
}

/// Creates one binding, or imports an array of them (all or none).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/bindings", tag = "roles and bindings", request_body = Vec<RondBinding>,
    params(("org" = String, Path, description = "org slug")),
    responses((status = 201, body = [RondBinding]), (status = 400), (status = 403), (status = 409), (status = 422)))]
pub async fn create_bindings(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<Value>,
) -> Result<(StatusCode, Json<Vec<RondBinding>>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(create(&state, &auth, &org, body).await?),
    ))
}

/// One binding.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/bindings/{bindingId}", tag = "roles and bindings",
    params(("org" = String, Path, description = "org slug"), ("bindingId" = String, Path)),
    responses((status = 200, body = RondBinding), (status = 404)))]
pub async fn get_binding(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<RondBinding>, ApiError> {
    Ok(Json(get(&state, &auth, &org, &id).await?))
}

/// Replaces a binding.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/bindings/{bindingId}", tag = "roles and bindings", request_body = RondBinding,
    params(("org" = String, Path, description = "org slug"), ("bindingId" = String, Path)),
    responses((status = 200, body = RondBinding), (status = 400), (status = 404), (status = 422)))]
pub async fn replace_binding(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, id)): Path<(String, String)>,
    Body(doc): Body<RondBinding>,
) -> Result<Json<RondBinding>, ApiError> {
    Ok(Json(replace(&state, &auth, &org, &id, doc).await?))
}

/// Deletes a binding.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/bindings/{bindingId}", tag = "roles and bindings",
    params(("org" = String, Path, description = "org slug"), ("bindingId" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete_binding(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete::<RondBinding>(&state, &auth, &org, &id).await
}

/// Body of Rönd's `POST /grant/bindings[/resource/{resourceType}]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRequest {
    /// The resource (required with `/resource/{resourceType}`).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// User ids.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// Body of Rönd's `POST /revoke/bindings[/resource/{resourceType}]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokeRequest {
    /// The resources (with `/resource/{resourceType}`).
    #[serde(default)]
    pub resource_ids: Vec<String>,
    /// User ids to take out.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Group names to take out.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The org Rönd's standalone endpoints act in: the one the caller's key is bound to, or else
/// `default` when the caller is an active member there, or else their first active org.
fn caller_org(auth: &Authenticated) -> Result<String, ApiError> {
    let reference = crate::rbac::user_ref(&auth.principal)
        .ok_or_else(|| ApiError::Forbidden("you are not an active member of any org".into()))?;
    reference
        .strip_prefix("user:")
        .and_then(|r| r.split_once('/'))
        .map(|(org, _)| org.to_owned())
        .ok_or_else(|| ApiError::Internal(format!("unexpected reference {reference}")))
}

async fn grant(
    state: &AppState,
    auth: &Authenticated,
    resource_type: Option<String>,
    body: GrantRequest,
) -> Result<Value, ApiError> {
    let org = caller_org(auth)?;
    let resource = match (resource_type, body.resource_id) {
        (Some(resource_type), Some(resource_id)) => Some(RondResource {
            resource_type,
            resource_id,
        }),
        (Some(_), None) => {
            return Err(ModelError::new("resourceId", "is required to grant on a resource").into());
        }
        (None, _) => None,
    };
    if body.subjects.is_empty() && body.groups.is_empty() {
        return Err(ModelError::new("subjects", "give at least one subject or group").into());
    }
    if body.roles.is_empty() && body.permissions.is_empty() {
        return Err(ModelError::new("roles", "give at least one role or permission").into());
    }
    let binding = RondBinding {
        binding_id: portcullis_model::KeyId::new().to_string(),
        subjects: body.subjects,
        groups: body.groups,
        roles: body.roles,
        permissions: body.permissions,
        resource,
    };
    let id = binding.binding_id.clone();
    create::<RondBinding>(
        state,
        auth,
        &org,
        serde_json::to_value(&binding).map_err(|e| ApiError::Internal(e.to_string()))?,
    )
    .await?;
    Ok(serde_json::json!({ "bindingId": id }))
}

async fn revoke(
    state: &AppState,
    auth: &Authenticated,
    resource_type: Option<String>,
    body: RevokeRequest,
) -> Result<Value, ApiError> {
    let org_slug = caller_org(auth)?;
    let org = auth.org(state, &org_slug, OrgAction::Manage).await?;
    if body.subjects.is_empty() && body.groups.is_empty() {
        return Err(ModelError::new("subjects", "give at least one subject or group").into());
    }
    if resource_type.is_some() && body.resource_ids.is_empty() {
        return Err(ModelError::new("resourceIds", "give the resources to revoke on").into());
    }
    let mut replace = Vec::new();
    let mut delete = Vec::new();
    for stored in state.store.list_rond(&org, RondKind::Binding).await? {
        let mut b: RondBinding = to_doc(stored)?;
        let applies = match (&resource_type, &b.resource) {
            (None, None) => true,
            (Some(t), Some(r)) => {
                &r.resource_type == t && body.resource_ids.contains(&r.resource_id)
            }
            _ => false,
        };
        let before = (b.subjects.len(), b.groups.len());
        if !applies {
            continue;
        }
        b.subjects.retain(|s| !body.subjects.contains(s));
        b.groups.retain(|g| !body.groups.contains(g));
        if (b.subjects.len(), b.groups.len()) == before {
            continue;
        }
        // As Rönd: a binding left without subjects and groups is deleted.
        if b.subjects.is_empty() && b.groups.is_empty() {
            delete.push(b.binding_id.clone());
        } else {
            replace.push((
                b.binding_id.clone(),
                serde_json::to_value(&b).map_err(|e| ApiError::Internal(e.to_string()))?,
            ));
        }
    }
    state
        .store
        .change_rond(
            &auth.actor(),
            &org,
            RondKind::Binding,
            &replace,
            &delete,
            "binding.revoke",
        )
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(serde_json::json!({ "deletedBindings": delete.len(), "modifiedBindings": replace.len() }))
}

/// Rönd's `POST /grant/bindings`: a new binding in the caller's org; answers its id.
#[utoipa::path(post, path = "/grant/bindings", tag = "roles and bindings", request_body = GrantRequest,
    responses((status = 201), (status = 400), (status = 403), (status = 422)))]
pub async fn grant_bindings(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<GrantRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(grant(&state, &auth, None, body).await?),
    ))
}

/// Rönd's `POST /grant/bindings/resource/{resourceType}`: a binding on one resource.
#[utoipa::path(post, path = "/grant/bindings/resource/{resourceType}", tag = "roles and bindings", request_body = GrantRequest,
    params(("resourceType" = String, Path)), responses((status = 201), (status = 400), (status = 403), (status = 422)))]
pub async fn grant_bindings_on(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(resource_type): Path<String>,
    Body(body): Body<GrantRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(grant(&state, &auth, Some(resource_type), body).await?),
    ))
}

/// Rönd's `POST /revoke/bindings`: takes subjects and groups out of the org's bindings (those
/// without a resource); a binding left empty is deleted.
#[utoipa::path(post, path = "/revoke/bindings", tag = "roles and bindings", request_body = RevokeRequest,
    responses((status = 200), (status = 400), (status = 403), (status = 422)))]
pub async fn revoke_bindings(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(revoke(&state, &auth, None, body).await?))
}

/// Rönd's `POST /revoke/bindings/resource/{resourceType}`: the same for bindings on the given
/// resources.
#[utoipa::path(post, path = "/revoke/bindings/resource/{resourceType}", tag = "roles and bindings", request_body = RevokeRequest,
    params(("resourceType" = String, Path)), responses((status = 200), (status = 400), (status = 403), (status = 422)))]
pub async fn revoke_bindings_on(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(resource_type): Path<String>,
    Body(body): Body<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        revoke(&state, &auth, Some(resource_type), body).await?,
    ))
}
