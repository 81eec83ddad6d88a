//! `/api/permission/policies`: permission policies (`p` lines) of roles, users and groups.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_authz::rbac::{Action, validate_policy};
use portcullis_store::PolicyRecord;
use serde::{Deserialize, Serialize};

use super::{check_source, path_ref, require_admin};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Params};
use crate::state::AppState;

/// Policy metadata.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyMetadata {
    /// Where the policy comes from.
    pub source: String,
}

/// A policy on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBody {
    /// Role, user or group reference (from the path on PUT).
    #[serde(default)]
    pub entity_reference: String,
    /// Permission name or resource type.
    #[serde(default)]
    pub permission: String,
    /// Action.
    #[serde(default)]
    pub policy: String,
    /// `allow` or `deny`.
    #[serde(default)]
    pub effect: String,
    /// Metadata (answers only).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PolicyMetadata>,
}

impl From<PolicyRecord> for PolicyBody {
    fn from(p: PolicyRecord) -> Self {
        Self {
            entity_reference: p.subject,
            permission: p.permission,
            policy: p.action,
            effect: p.effect,
            metadata: Some(PolicyMetadata { source: p.source }),
        }
    }
}

/// Body of `PUT /api/permission/policies/{kind}/{namespace}/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicies {
    /// Policies to replace.
    pub old_policy: Vec<PolicyBody>,
    /// Their replacements.
    pub new_policy: Vec<PolicyBody>,
}

/// Query of `DELETE /api/permission/policies/{kind}/{namespace}/{name}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    permission: Option<String>,
    policy: Option<String>,
    effect: Option<String>,
}

/// Validates policies and turns them into records of the `rest` source; duplicates in one
/// request are refused.
fn records(subject: Option<&str>, bodies: &[PolicyBody]) -> Result<Vec<PolicyRecord>, ApiError> {
    if bodies.is_empty() {
        return Err(ApiError::BadRequest(
            "permission policy must be present".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(bodies.len());
    for b in bodies {
        let entity = subject.unwrap_or(&b.entity_reference);
        let p = validate_policy(entity, &b.permission, &b.policy, &b.effect)
            .map_err(|e| ApiError::BadRequest(format!("Invalid policy definition. Cause: {e}")))?;
        let record = PolicyRecord {
            subject: p.subject.as_str().to_owned(),
            permission: p.permission,
            action: p.action.as_str().to_owned(),
            effect: p.effect.as_str().to_owned(),
            source: "rest".into(),
        };
        if !seen.insert(record.clone()) {
            return Err(ApiError::Conflict(format!(
                "Duplicate polices found; {} is a duplicate",
                portcullis_store::policy_text(&record)
            )));
        }
        out.push(record);
    }
    Ok(out)
}

/// Refuses changes to policies of a role that another source owns.
async fn check_role_source(state: &AppState, subject: &str, what: &str) -> Result<(), ApiError> {
    if let Some(role) = state.store.get_role(subject).await? {
        check_source(subject, &role.source, what)?;
    }
    Ok(())
}

/// All policies.
#[utoipa::path(get, path = "/api/permission/policies", tag = "permission", responses((status = 200, body = [PolicyBody]), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<PolicyBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    Ok(Json(
        state
            .store
            .list_policies(None)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// The policies of one role, user or group.
#[utoipa::path(get, path = "/api/permission/policies/{kind}/{namespace}/{name}", tag = "permission", params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)), responses((status = 200, body = [PolicyBody]), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Result<Json<Vec<PolicyBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let subject = path_ref(&kind, &namespace, &name);
    let found = state.store.list_policies(Some(&subject)).await?;
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "No permission policies found for {subject}"
        )));
    }
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

/// Adds policies.
#[utoipa::path(post, path = "/api/permission/policies", tag = "permission", request_body = Vec<PolicyBody>, responses((status = 201), (status = 400), (status = 403), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(bodies): Body<Vec<PolicyBody>>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Create)?;
    let new = records(None, &bodies)?;
    for subject in new
        .iter()
        .map(|p| p.subject.as_str())
        .collect::<HashSet<_>>()
    {
        check_role_source(&state, subject, "add policy to").await?;
    }
    state.store.add_policies(&auth.actor(), &new).await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::CREATED)
}

/// Replaces some policies of one subject with others.
#[utoipa::path(put, path = "/api/permission/policies/{kind}/{namespace}/{name}", tag = "permission", request_body = UpdatePolicies, params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)), responses((status = 200), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Body(body): Body<UpdatePolicies>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Update)?;
    let subject = path_ref(&kind, &namespace, &name);
    let old = records(Some(&subject), &body.old_policy)?;
    let new = records(Some(&subject), &body.new_policy)?;
    check_role_source(&state, &subject, "edit policies of").await?;
    let stored = state.store.list_policies(Some(&subject)).await?;
    for p in &old {
        match stored
            .iter()
            .find(|s| s.permission == p.permission && s.action == p.action && s.effect == p.effect)
        {
            None => {
                return Err(ApiError::NotFound(format!(
                    "Policy '{}' not found",
                    portcullis_store::policy_text(p)
                )));
            }
            Some(s) => check_source(&subject, &s.source, "edit policies of")?,
        }
    }
    state
        .store
        .replace_policies(&auth.actor(), &old, &new)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::OK)
}

/// Deletes one policy (`permission`, `policy`, `effect` in the query) or all of the subject's.
#[utoipa::path(delete, path = "/api/permission/policies/{kind}/{namespace}/{name}", tag = "permission", params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path), DeleteQuery), responses((status = 204), (status = 400), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Params(q): Params<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Delete)?;
    let subject = path_ref(&kind, &namespace, &name);
    check_role_source(&state, &subject, "delete policies of").await?;
    let stored = state.store.list_policies(Some(&subject)).await?;
    let doomed: Vec<PolicyRecord> =
        match (q.permission, q.policy, q.effect) {
            (None, None, None) => stored,
            (Some(permission), Some(policy), Some(effect)) => {
                let wanted = records(
                    Some(&subject),
                    &[PolicyBody {
                        entity_reference: subject.clone(),
                        permission,
                        policy,
                        effect,
                        metadata: None,
                    }],
                )?;
                match stored.into_iter().find(|s| {
                    s.permission == wanted[0].permission
                        && s.action == wanted[0].action
                        && s.effect == wanted[0].effect
                }) {
                    Some(found) => vec![found],
                    None => {
                        return Err(ApiError::NotFound(format!(
                            "Policy '{}' not found",
                            portcullis_store::policy_text(&wanted[0])
                        )));
                    }
                }
            }
            _ => return Err(ApiError::BadRequest(
                "give all of 'permission', 'policy' and 'effect', or none to delete every policy"
                    .into(),
            )),
        };
    if doomed.is_empty() {
        return Err(ApiError::NotFound(format!(
            "No permission policies found for {subject}"
        )));
    }
    for p in &doomed {
        check_source(&subject, &p.source, "delete policies of")?;
    }
    state.store.delete_policies(&auth.actor(), &doomed).await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}
