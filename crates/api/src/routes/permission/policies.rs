//! `/api/permission/policies`: permission policies (`p` lines) of roles, users and groups.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_authz::rbac::{Action, validate_policy};
use portcullis_model::Expect;
use portcullis_store::PolicyRecord;
use serde::{Deserialize, Serialize};

use super::{check_source, path_ref, require_admin};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Params, Path, RawBody};
use crate::rbac::RBAC_ADMIN_ROLE;
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
    /// Role, user or group reference (from the path on PUT and DELETE).
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
    #[serde(default)]
    pub old_policy: Option<Vec<PolicyBody>>,
    /// Their replacements.
    #[serde(default)]
    pub new_policy: Option<Vec<PolicyBody>>,
}

/// Filters of `GET /api/permission/policies`, and the one policy of a query-string DELETE.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct PolicyQuery {
    /// Subject (GET only).
    entity_ref: Option<String>,
    permission: Option<String>,
    policy: Option<String>,
    effect: Option<String>,
}

/// Validates policies and turns them into records of the `rest` source; duplicates in one
/// request are refused.
fn records(
    subject: Option<&str>,
    bodies: &[PolicyBody],
    empty: &str,
) -> Result<Vec<PolicyRecord>, ApiError> {
    if bodies.is_empty() {
        return Err(ApiError::BadRequest(empty.to_owned()));
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

/// Policies of a role need the role (REST may not create it through a policy), and a role of
/// another source is changed only through that source; the policy administrators' role belongs
/// to the configuration even before it has members.
async fn check_subject(state: &AppState, subject: &str, what: &str) -> Result<(), ApiError> {
    if subject == RBAC_ADMIN_ROLE {
        return check_source(subject, "configuration", what);
    }
    if !subject.starts_with("role:") {
        return Ok(());
    }
    match state.store.get_role(subject).await? {
        Some(role) => check_source(subject, &role.source, what),
        None => Err(ApiError::NotFound(format!(
            "Corresponding role {subject} was not found"
        ))),
    }
}

fn same(a: &PolicyRecord, b: &PolicyRecord) -> bool {
    a.permission == b.permission && a.action == b.action && a.effect == b.effect
}

/// All policies, filtered by `entityRef`, `permission`, `policy` and `effect`.
#[utoipa::path(get, path = "/api/permission/policies", tag = "permission", params(PolicyQuery), responses((status = 200, body = [PolicyBody]), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(q): Params<PolicyQuery>,
) -> Result<Json<Vec<PolicyBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let subject = q.entity_ref.as_deref().map(str::to_lowercase);
    let all = state.store.list_policies(None).await?;
    Ok(Json(
        all.into_iter()
            .filter(|p| {
                subject
                    .as_ref()
                    .is_none_or(|s| p.subject.to_lowercase() == *s)
            })
            .filter(|p| q.permission.as_ref().is_none_or(|x| &p.permission == x))
            .filter(|p| q.policy.as_ref().is_none_or(|x| &p.action == x))
            .filter(|p| q.effect.as_ref().is_none_or(|x| &p.effect == x))
            .map(Into::into)
            .collect(),
    ))
}

/// The policies of one role, user or group.
#[utoipa::path(get, path = "/api/permission/policies/{kind}/{namespace}/{name}", tag = "permission",
    params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = [PolicyBody]), (status = 400), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Result<Json<Vec<PolicyBody>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let subject = path_ref(&kind, &namespace, &name, Expect::Any)?;
    let found = state.store.list_policies(Some(&subject)).await?;
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "No permission policies found for {subject}"
        )));
    }
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

/// Adds policies.
#[utoipa::path(post, path = "/api/permission/policies", tag = "permission", request_body = Vec<PolicyBody>,
    responses((status = 201), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(bodies): Body<Vec<PolicyBody>>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Create)?;
    let new = records(None, &bodies, "permission policy must be present")?;
    for subject in new
        .iter()
        .map(|p| p.subject.as_str())
        .collect::<HashSet<_>>()
    {
        check_subject(&state, subject, "add policy to").await?;
    }
    state.store.add_policies(&auth.actor(), &new).await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::CREATED)
}

/// Replaces some policies of one subject with others.
#[utoipa::path(put, path = "/api/permission/policies/{kind}/{namespace}/{name}", tag = "permission", request_body = UpdatePolicies,
    params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 200), (status = 204), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Body(body): Body<UpdatePolicies>,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Update)?;
    let subject = path_ref(&kind, &namespace, &name, Expect::Any)?;
    let old = records(
        Some(&subject),
        body.old_policy.as_deref().unwrap_or_default(),
        "'oldPolicy' object must be present",
    )?;
    let new = records(
        Some(&subject),
        body.new_policy.as_deref().unwrap_or_default(),
        "'newPolicy' object must be present",
    )?;
    if old.len() > new.len() {
        return Err(ApiError::BadRequest(
            "'oldPolicy' object has more permission policies compared to 'newPolicy' object".into(),
        ));
    }
    check_subject(&state, &subject, "edit policies of").await?;
    let stored = state.store.list_policies(Some(&subject)).await?;
    for p in &old {
        match stored.iter().find(|s| same(s, p)) {
            None => {
                return Err(ApiError::NotFound(format!(
                    "Policy '{}' not found",
                    portcullis_store::policy_text(p)
                )));
            }
            Some(s) => check_source(&subject, &s.source, "edit policies of")?,
        }
    }
    if old.len() == new.len() && old.iter().all(|o| new.iter().any(|n| same(o, n))) {
        return Ok(StatusCode::NO_CONTENT);
    }
    state
        .store
        .replace_policies(&auth.actor(), &old, &new)
        .await?;
    state.rbac.changed(&state.store).await?;
    Ok(StatusCode::OK)
}

/// Deletes the policies given in a JSON body (as the reference's UI sends them), or the one in
/// the query string (`permission`, `policy`, `effect`), or, with neither, all of the subject's.
#[utoipa::path(delete, path = "/api/permission/policies/{kind}/{namespace}/{name}", tag = "permission",
    request_body(content = Vec<PolicyBody>, description = "the policies to delete (optional)"),
    params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path), PolicyQuery),
    responses((status = 204), (status = 400), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    Params(q): Params<PolicyQuery>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &auth, Action::Delete)?;
    let subject = path_ref(&kind, &namespace, &name, Expect::Any)?;
    check_subject(&state, &subject, "delete policies of")
        .await
        .or_else(|e| match e {
            // Policies of a role whose record is gone may still be deleted.
            ApiError::NotFound(_) => Ok(()),
            other => Err(other),
        })?;
    let stored = state.store.list_policies(Some(&subject)).await?;
    let wanted: Option<Vec<PolicyRecord>> =
        if !body.iter().all(u8::is_ascii_whitespace) {
            let bodies: Vec<PolicyBody> = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
            Some(records(
                Some(&subject),
                &bodies,
                "permission policy must be present",
            )?)
        } else {
            match (q.permission, q.policy, q.effect) {
            (None, None, None) => None,
            (Some(permission), Some(policy), Some(effect)) => {
                let one = PolicyBody {
                    entity_reference: subject.clone(),
                    permission,
                    policy,
                    effect,
                    metadata: None,
                };
                Some(records(Some(&subject), &[one], "permission policy must be present")?)
            }
            _ => return Err(ApiError::BadRequest(
                "give all of 'permission', 'policy' and 'effect', or none to delete every policy"
                    .into(),
            )),
        }
        };
    let doomed: Vec<PolicyRecord> = match wanted {
        None => stored,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for w in &list {
                match stored.iter().find(|s| same(s, w)) {
                    Some(found) => out.push(found.clone()),
                    None => {
                        return Err(ApiError::NotFound(format!(
                            "Policy '{}' not found",
                            portcullis_store::policy_text(w)
                        )));
                    }
                }
            }
            out
        }
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
