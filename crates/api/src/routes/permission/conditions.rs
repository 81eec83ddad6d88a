//! `/api/permission/roles/conditions`: conditional policies of roles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_authz::rbac::Action;
use portcullis_model::{Criteria, EntityRef, Expect};
use portcullis_store::{ConditionRecord, NewCondition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{check_source, require_admin};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Params, Path};
use crate::rbac::plugins;
use crate::state::AppState;

/// A conditional policy on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionBody {
    /// Id (answers only).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Always `CONDITIONAL`.
    #[serde(default)]
    pub result: String,
    /// The role.
    #[serde(default)]
    pub role_entity_ref: String,
    /// The plugin that evaluates the conditions.
    #[serde(default)]
    pub plugin_id: String,
    /// The resource type.
    #[serde(default)]
    pub resource_type: String,
    /// The actions it covers.
    #[serde(default)]
    pub permission_mapping: Vec<String>,
    /// The criteria.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub conditions: Value,
}

impl From<ConditionRecord> for ConditionBody {
    fn from(c: ConditionRecord) -> Self {
        Self {
            id: Some(c.id),
            result: "CONDITIONAL".into(),
            role_entity_ref: c.role,
            plugin_id: c.plugin_id,
            resource_type: c.resource_type,
            permission_mapping: c.actions,
            conditions: c.conditions,
        }
    }
}

/// Validates a conditional policy: result, role, plugin, resource type, actions and criteria
/// whose rules the plugin declares for that resource type.
pub(crate) fn validate(
    body: &ConditionBody,
    catalogue: &plugins::Catalogue,
) -> Result<NewCondition, String> {
    if body.result != "CONDITIONAL" {
        return Err("'result' field must be 'CONDITIONAL'".into());
    }
    if body.role_entity_ref.is_empty() {
        return Err("'roleEntityRef' must be specified".into());
    }
    let role = EntityRef::parse(&body.role_entity_ref, Expect::Role).map_err(|e| e.0)?;
    if body.plugin_id.is_empty() {
        return Err("'pluginId' must be specified".into());
    }
    if body.resource_type.is_empty() {
        return Err("'resourceType' must be specified".into());
    }
    if body.permission_mapping.is_empty() {
        return Err("'permissionMapping' array must be specified".into());
    }
    let mut actions = Vec::new();
    for a in &body.permission_mapping {
        let action = Action::parse(a).ok_or_else(|| format!("'permissionMapping' has invalid value: '{a}'. It should be one of: create, read, update, delete, use"))?;
        if actions.contains(&action.as_str().to_owned()) {
            return Err(format!(
                "'permissionMapping' must not contain duplicate permission action '{a}'"
            ));
        }
        actions.push(action.as_str().to_owned());
    }
    if body.conditions.is_null() {
        return Err("'conditions' must be specified".into());
    }
    let criteria = Criteria::from_json(&body.conditions).map_err(|e| e.0)?;
    check_rules(&criteria, catalogue, &body.plugin_id, &body.resource_type)?;
    Ok(NewCondition {
        role: role.as_str().to_owned(),
        plugin_id: body.plugin_id.clone(),
        resource_type: body.resource_type.clone(),
        actions,
        conditions: body.conditions.clone(),
        source: "rest".into(),
    })
}

fn check_rules(
    criteria: &Criteria,
    catalogue: &plugins::Catalogue,
    plugin: &str,
    resource_type: &str,
) -> Result<(), String> {
    match criteria {
        Criteria::Condition(c) => {
            if c.resource_type != resource_type {
                return Err(format!(
                    "condition rule '{}' is for resource type '{}', not '{resource_type}'",
                    c.rule, c.resource_type
                ));
            }
            if !catalogue.has_rule(plugin, &c.rule, resource_type) {
                return Err(format!(
                    "plugin '{plugin}' has no condition rule '{}' for resource type '{resource_type}'",
                    c.rule
                ));
            }
            Ok(())
        }
        Criteria::AllOf(items) | Criteria::AnyOf(items) => items
            .iter()
            .try_for_each(|i| check_rules(i, catalogue, plugin, resource_type)),
        Criteria::Not(item) => check_rules(item, catalogue, plugin, resource_type),
    }
}

/// The id as the reference reads it (`parseInt`): the leading digits count, so the official UI's
/// `…/conditions/5}` still names condition 5.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    let digits: String = raw
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .map_err(|_| ApiError::BadRequest("Id is not a valid number.".into()))
}

/// Conditions belong to an existing role, changed only through that role's source.
async fn check_role(state: &AppState, role: &str, what: &str) -> Result<(), ApiError> {
    match state.store.get_role(role).await? {
        Some(r) => check_source(role, &r.source, what),
        None => Err(ApiError::NotFound(format!(
            "Corresponding role {role} was not found"
        ))),
    }
}

/// Filters of `GET /api/permission/roles/conditions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    role_entity_ref: Option<String>,
    plugin_id: Option<String>,
    resource_type: Option<String>,
    /// Only conditions covering every one of these actions.
    actions: Option<String>,
}

/// Conditional policies, filtered by role, plugin, resource type and actions.
#[utoipa::path(get, path = "/api/permission/roles/conditions", tag = "permission", params(ListQuery), responses((status = 200, body = [ConditionBody]), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(q): Params<ListQuery>,
) -> Result<Json<Vec<ConditionBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let wanted_actions: Vec<String> = q
        .actions
        .as_deref()
        .map(|a| {
            a.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let all = state.store.list_conditions().await?;
    Ok(Json(
        all.into_iter()
            .filter(|c| q.role_entity_ref.as_ref().is_none_or(|r| &c.role == r))
            .filter(|c| q.plugin_id.as_ref().is_none_or(|p| &c.plugin_id == p))
            .filter(|c| {
                q.resource_type
                    .as_ref()
                    .is_none_or(|t| &c.resource_type == t)
            })
            .filter(|c| wanted_actions.iter().all(|a| c.actions.contains(a)))
            .map(Into::into)
            .collect(),
    ))
}

/// One conditional policy.
#[utoipa::path(get, path = "/api/permission/roles/conditions/{id}", tag = "permission", params(("id" = String, Path)), responses((status = 200, body = ConditionBody), (status = 400), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConditionBody>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    Ok(Json(
        state.store.get_condition(parse_id(&id)?).await?.into(),
    ))
}

/// Stores a conditional policy; answers its id.
#[utoipa::path(post, path = "/api/permission/roles/conditions", tag = "permission", request_body = ConditionBody, responses((status = 201), (status = 400), (status = 403), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<ConditionBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_admin(&state, &auth, Action::Create)?;
    let new = validate(&body, state.rbac.plugins())
        .map_err(|e| ApiError::BadRequest(format!("Invalid conditional decision. Cause: {e}")))?;
    check_role(&state, &new.role, "add conditions to").await?;
    let id = state.store.create_condition(&auth.actor(), &new).await?;
    state.rbac.changed(&state.store).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

/// Replaces a conditional policy.
#[utoipa::path(put, path = "/api/permission/roles/conditions/{id}", tag = "permission", request_body = ConditionBody, params(("id" = String, Path)), responses((status = 200), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    Body(body): Body<ConditionBody>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Update)?;
    let id = parse_id(&id)?;
    let new = validate(&body, state.rbac.plugins())
        .map_err(|e| ApiError::BadRequest(format!("Invalid conditional decision. Cause: {e}")))?;
    let current = state.store.get_condition(id).await?;
    check_source(&current.role, &current.source, "edit conditions of")?;
    check_role(&state, &new.role, "edit conditions of").await?;
    state
        .store
        .update_condition(&auth.actor(), id, &new)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::OK)
}

/// Deletes a conditional policy.
#[utoipa::path(delete, path = "/api/permission/roles/conditions/{id}", tag = "permission", params(("id" = String, Path)), responses((status = 204), (status = 400), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Delete)?;
    let id = parse_id(&id)?;
    let current = state.store.get_condition(id).await?;
    check_source(&current.role, &current.source, "delete conditions of")?;
    state.store.delete_condition(&auth.actor(), id).await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}
