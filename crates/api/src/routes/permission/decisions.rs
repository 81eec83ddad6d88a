//! Decisions: Backstage's `POST /api/permission/authorize`, the batch check for portals with an
//! explain mode, "what am I allowed to do", the plugins' permissions and condition rules, and the
//! user statistics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_authz::rbac::{Action, Decision, Outcome, PermissionQuery, evaluate_catalog_rule};
use portcullis_model::{EntityRef, Expect};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::require_admin;
use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Params};
use crate::rbac::{plugins, user_ref};
use crate::state::AppState;

/// A permission as Backstage sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionBody {
    /// `basic` or `resource`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Permission name.
    pub name: String,
    /// Attributes (`action`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// Resource type of resource permissions.
    #[serde(default)]
    pub resource_type: Option<String>,
}

impl PermissionBody {
    fn query(&self) -> Result<PermissionQuery<'_>, ApiError> {
        let action = match self.attributes.get("action") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(Action::parse(a).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "permission.attributes.action: '{a}' is not one of create, read, update, delete"
                ))
            })?),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "permission.attributes.action: must be a string".into(),
                ));
            }
        };
        if self.kind.as_deref() == Some("resource") && self.resource_type.is_none() {
            return Err(ApiError::BadRequest(
                "permission.resourceType: a resource permission needs its resource type".into(),
            ));
        }
        Ok(PermissionQuery {
            name: &self.name,
            resource_type: self.resource_type.as_deref(),
            action,
        })
    }
}

/// One item of `POST /api/permission/authorize`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeItem {
    /// Echoed in the answer.
    pub id: String,
    /// The permission. A `resourceRef` may come along, but Portcullis cannot fetch the
    /// resource: a CONDITIONAL result is returned for the caller to apply (Backstage's own
    /// permission backend would ask the plugin); callers that hold the resource ask
    /// `POST /api/v1/check` with it.
    pub permission: PermissionBody,
}

/// Body of `POST /api/permission/authorize`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AuthorizeRequest {
    /// The questions.
    pub items: Vec<AuthorizeItem>,
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Allow => json!({ "result": "ALLOW" }),
        Outcome::Deny => json!({ "result": "DENY" }),
        Outcome::Conditional {
            plugin_id,
            resource_type,
            conditions,
        } => {
            json!({ "result": "CONDITIONAL", "pluginId": plugin_id, "resourceType": resource_type, "conditions": conditions })
        }
    }
}

const MAX_BATCH: usize = 1000;

/// Backstage's permission endpoint: decides each item for the authenticated caller.
#[utoipa::path(post, path = "/api/permission/authorize", tag = "permission", request_body = AuthorizeRequest, responses((status = 200), (status = 400), (status = 401)))]
pub async fn authorize(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<AuthorizeRequest>,
) -> Result<Json<Value>, ApiError> {
    if body.items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} items per request"
        )));
    }
    let user = user_ref(&auth.principal);
    let snapshot = state.rbac.snapshot();
    let mut items = Vec::with_capacity(body.items.len());
    for item in &body.items {
        let query = item.permission.query()?;
        let outcome = match &user {
            Some(user) => snapshot.decide(user, &query, false).outcome,
            None => Outcome::Deny,
        };
        count(&outcome);
        let mut answer = outcome_json(&outcome);
        answer["id"] = json!(item.id);
        items.push(answer);
    }
    Ok(Json(json!({ "items": items })))
}

fn count(outcome: &Outcome) {
    let result = match outcome {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
        Outcome::Conditional { .. } => "conditional",
    };
    metrics::counter!("portcullis_rbac_decisions_total", "result" => result).increment(1);
}

/// One item of `POST /api/v1/check`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckItem {
    /// Echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// Whose decision (`user:<org>/<name>`); the caller when absent. Only policy
    /// administrators may ask for someone else.
    #[serde(default)]
    pub principal: Option<String>,
    /// The permission (RBAC); or give `rule` instead.
    #[serde(default)]
    pub permission: Option<PermissionBody>,
    /// A Rego rule of the configured policies (Rönd-style; `.` becomes `_`), evaluated with
    /// the input document Rönd builds for `request` and the principal's bindings and roles.
    #[serde(default)]
    pub rule: Option<String>,
    /// Decide `request` against the route rules (the gateway's decision) instead of one
    /// permission or rule.
    #[serde(default)]
    pub route: Option<bool>,
    /// With `route`: decide for an anonymous caller (no credentials) instead of `principal`.
    #[serde(default)]
    pub anonymous: Option<bool>,
    /// The request the rule or route is asked about.
    #[serde(default)]
    pub request: Option<crate::rbac::rond::RequestSpec>,
    /// A catalog entity: when given, a CONDITIONAL decision is resolved against it.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub resource: Option<Value>,
}

/// Body of `POST /api/v1/check`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The questions.
    pub items: Vec<CheckItem>,
}

/// Query of `POST /api/v1/check`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// Name the groups, roles, policy lines and conditions that decided.
    #[serde(default)]
    explain: bool,
}

fn reason(d: &Decision) -> &'static str {
    use portcullis_authz::rbac::Reason::*;
    match d.reason {
        SuperUser => "super user",
        GroupCycle => "cycle in the principal's groups",
        Conditions => "conditional policies of the principal's roles",
        ConditionCollision => "a role holds two conditions for this resource type and action",
        PolicyOnName => "policies on the permission name",
        PolicyOnResourceType => "policies on the resource type",
        NoPolicy => "no policy matched (denied by default)",
    }
}

/// Decides a batch for portals: any principal for policy administrators, oneself otherwise;
/// conditions are resolved against `resource` when it is given.
#[utoipa::path(post, path = "/api/v1/check", tag = "permission", request_body = CheckRequest, params(CheckQuery), responses((status = 200), (status = 400), (status = 401), (status = 403)))]
pub async fn check(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(q): Params<CheckQuery>,
    Body(body): Body<CheckRequest>,
) -> Result<Json<Value>, ApiError> {
    if body.items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} items per request"
        )));
    }
    let me = user_ref(&auth.principal);
    let admin = state.rbac.is_policy_admin(&auth.principal, Action::Read);
    let snapshot = state.rbac.snapshot();
    let mut items = Vec::with_capacity(body.items.len());
    for (i, item) in body.items.iter().enumerate() {
        let principal = match &item.principal {
            Some(p) => EntityRef::parse(p, Expect::Member)
                .map_err(|e| ApiError::BadRequest(format!("items[{i}].principal: {}", e.0)))?
                .as_str()
                .to_owned(),
            None => me.clone().ok_or_else(|| {
                ApiError::Forbidden("you are not an active member of any org".into())
            })?,
        };
        if Some(&principal) != me.as_ref() && !admin {
            return Err(ApiError::Forbidden(
                "only policy administrators may check other principals".into(),
            ));
        }
        let permission = match (&item.permission, &item.rule, item.route.unwrap_or(false)) {
            (Some(p), None, false) => p,
            (None, Some(rule), false) => {
                items.push(check_rule(&state, &principal, rule, item, q.explain).await?);
                continue;
            }
            (None, None, true) => {
                items.push(check_route(&state, &principal, item, q.explain, i).await?);
                continue;
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "items[{i}]: give exactly one of 'permission', 'rule' and 'route: true'"
                )));
            }
        };
        let query = permission.query()?;
        let decision = snapshot.decide(&principal, &query, q.explain);
        let mut outcome = decision.outcome.clone();
        let mut resolved = false;
        if let (Outcome::Conditional { conditions, .. }, Some(resource)) =
            (&decision.outcome, &item.resource)
        {
            let allowed = conditions
                .evaluate(&|c| evaluate_catalog_rule(c, resource))
                .unwrap_or(false);
            outcome = if allowed {
                Outcome::Allow
            } else {
                Outcome::Deny
            };
            resolved = true;
        }
        count(&outcome);
        let mut answer = outcome_json(&outcome);
        answer["id"] = json!(item.id);
        answer["principal"] = json!(principal);
        answer["reason"] = json!(reason(&decision));
        if resolved {
            answer["resolvedConditions"] = json!(true);
        }
        if let Some(e) = decision.explanation {
            answer["explanation"] = json!({ "groups": e.groups, "roles": e.roles, "policies": e.policies, "conditions": e.conditions });
        }
        items.push(answer);
    }
    Ok(Json(json!({ "items": items })))
}

/// Decides a synthetic request against the route rules, as the gateway would: the status it
/// would answer, the route that matched, which check refused, and Rönd's error body.
async fn check_route(
    state: &AppState,
    principal: &str,
    item: &CheckItem,
    explain: bool,
    index: usize,
) -> Result<Value, ApiError> {
    let Some(rules) = state.rbac.routes() else {
        return Err(ApiError::BadRequest(
            "no route rules are configured (routes:)".into(),
        ));
    };
    let Some(request) = &item.request else {
        return Err(ApiError::BadRequest(format!(
            "items[{index}].request: a route check needs the request (method and path)"
        )));
    };
    if request.method.is_empty() || request.path.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "items[{index}].request: method and path are required"
        )));
    }
    let caller = if item.anonymous.unwrap_or(false) {
        None
    } else {
        let (_, username) = principal
            .strip_prefix("user:")
            .and_then(|r| r.split_once('/'))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("'{principal}' is not a user reference"))
            })?;
        let user = match state.store.get_user_by_username(username).await {
            Ok(u) => Some(u),
            Err(portcullis_store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Some(crate::rbac::routes::RouteCaller {
            user_ref: principal.to_owned(),
            user_id: user.as_ref().map(|u| u.id.to_string()).unwrap_or_default(),
            username: username.to_owned(),
            properties: match &user {
                Some(u) => {
                    json!({ "email": u.email, "name": u.display_name, "username": u.username })
                }
                None => json!({}),
            },
            groups: None,
        })
    };
    let verdict = state
        .rbac
        .evaluate_route(rules, caller.as_ref(), request, explain);
    let mut answer = json!({
        "id": item.id,
        "principal": if caller.is_some() { json!(principal) } else { Value::Null },
        "result": verdict.result,
        "status": verdict.status,
        "route": verdict.route,
        "template": verdict.template,
        "backend": verdict.backend,
        "path": verdict.path,
    });
    if let Some(by) = verdict.denied_by {
        answer["deniedBy"] = json!(by);
    }
    if let Some(body) = verdict.body {
        answer["body"] = body;
    }
    if explain {
        answer["explanation"] = verdict.explanation;
    }
    Ok(answer)
}

/// Decides one Rego rule for `principal` on a synthetic request, with the input document Rönd
/// would build: the principal's groups, the org's bindings that name them, and those bindings'
/// roles. Anything but `true` (false, undefined, an error, the time limit) is a deny.
async fn check_rule(
    state: &AppState,
    principal: &str,
    rule: &str,
    item: &CheckItem,
    explain: bool,
) -> Result<Value, ApiError> {
    let Some(rego) = state.rbac.rego() else {
        return Err(ApiError::BadRequest(
            "no Rego policies are configured (rego.policies_dir)".into(),
        ));
    };
    let (org, username) = principal
        .strip_prefix("user:")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(|| ApiError::BadRequest(format!("'{principal}' is not a user reference")))?;
    let user = match state.store.get_user_by_username(username).await {
        Ok(u) => Some(u),
        Err(portcullis_store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let user_id = user.as_ref().map(|u| u.id.to_string()).unwrap_or_default();
    let prefix = format!("group:{org}/");
    let groups: Vec<String> = state
        .rbac
        .snapshot()
        .groups_of_user(principal)
        .iter()
        .filter_map(|g| g.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    let (bindings, roles) = state
        .rbac
        .rond()
        .for_user(org, &[user_id.as_str(), username], &groups);
    let binding_ids: Vec<Value> = bindings
        .iter()
        .filter_map(|b| b.get("bindingId").cloned())
        .collect();
    let role_ids: Vec<Value> = roles
        .iter()
        .filter_map(|r| r.get("roleId").cloned())
        .collect();
    let properties = match &user {
        Some(u) => json!({ "email": u.email, "name": u.display_name, "username": u.username }),
        None => json!({}),
    };
    let request = item.request.clone().unwrap_or_default();
    let input =
        crate::rbac::rond::input_document(&request, &user_id, properties, &groups, bindings, roles);
    let rule_name = rule.replace('.', "_");
    let (allowed, error) = match rego.eval(&rule_name, &input) {
        Ok(Some(Value::Bool(true))) => (true, None),
        Ok(_) => (false, None),
        Err(e) => {
            if e.is_time_limit() {
                metrics::counter!("portcullis_rego_timeouts_total").increment(1);
            } else {
                metrics::counter!("portcullis_rego_errors_total").increment(1);
            }
            (false, Some(e.to_string()))
        }
    };
    let outcome = if allowed {
        Outcome::Allow
    } else {
        Outcome::Deny
    };
    count(&outcome);
    let mut answer = outcome_json(&outcome);
    answer["id"] = json!(item.id);
    answer["principal"] = json!(principal);
    answer["rule"] = json!(rule_name);
    answer["reason"] = json!(if allowed {
        "the rule is true"
    } else if error.is_some() {
        "the rule could not be evaluated (denied)"
    } else {
        "the rule is false or undefined (denied by default)"
    });
    if let Some(e) = error {
        answer["error"] = json!(e);
    }
    if explain {
        answer["explanation"] =
            json!({ "groups": groups, "bindings": binding_ids, "roles": role_ids });
    }
    Ok(answer)
}

/// One permission of `GET /api/v1/me/permissions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MyPermission {
    /// Plugin.
    pub plugin_id: String,
    /// Permission name.
    pub permission: String,
    /// Resource type, for resource permissions.
    pub resource_type: Option<String>,
    /// Action.
    pub policy: String,
    /// ALLOW, DENY or CONDITIONAL.
    pub result: String,
    /// The conditions of a CONDITIONAL result.
    #[schema(value_type = Object)]
    pub conditions: Option<Value>,
}

/// What the caller may do, permission by permission, across the plugins' permissions.
#[utoipa::path(get, path = "/api/v1/me/permissions", tag = "permission", responses((status = 200), (status = 401)))]
pub async fn my_permissions(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let me = user_ref(&auth.principal);
    let snapshot = state.rbac.snapshot();
    let mut out = Vec::new();
    for (plugin, perm) in state.rbac.plugins().permissions() {
        let query = PermissionQuery {
            name: &perm.name,
            resource_type: perm.resource_type.as_deref(),
            action: Action::parse(&perm.policy).filter(|a| *a != Action::Use),
        };
        let outcome = match &me {
            Some(me) => snapshot.decide(me, &query, false).outcome,
            None => Outcome::Deny,
        };
        let json = outcome_json(&outcome);
        out.push(MyPermission {
            plugin_id: plugin.to_owned(),
            permission: perm.name.clone(),
            resource_type: perm.resource_type.clone(),
            policy: perm.policy.clone(),
            result: json["result"].as_str().unwrap_or("DENY").to_owned(),
            conditions: json.get("conditions").cloned(),
        });
    }
    Ok(Json(json!({ "principal": me, "permissions": out })))
}

/// `GET /api/permission/`: the RBAC administration UI asks whether the caller may administer
/// policies.
#[utoipa::path(get, path = "/api/permission/", tag = "permission", responses((status = 200), (status = 403)))]
pub async fn authorization_status(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    Ok(Json(json!({ "status": "Authorized" })))
}

/// The permissions every plugin declares.
#[utoipa::path(get, path = "/api/permission/plugins/policies", tag = "permission", responses((status = 200, body = [plugins::PluginPolicies]), (status = 403)))]
pub async fn plugin_policies(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<plugins::PluginPolicies>>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    Ok(Json(state.rbac.plugins().plugin_policies()))
}

/// The condition rules every plugin declares, with parameter schemas.
#[utoipa::path(get, path = "/api/permission/plugins/condition-rules", tag = "permission", responses((status = 200), (status = 403)))]
pub async fn condition_rules(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    Ok(Json(state.rbac.plugins().condition_rules()))
}

/// `GET /api/licensed-users-info/users/quantity`: how many users have used Portcullis.
#[utoipa::path(get, path = "/api/licensed-users-info/users/quantity", tag = "permission", responses((status = 200), (status = 403)))]
pub async fn user_quantity(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let n = state.store.list_seen_users().await?.len();
    Ok(Json(json!({ "quantity": n.to_string() })))
}

fn http_date(t: portcullis_model::Timestamp) -> String {
    use time::OffsetDateTime;
    use time::macros::format_description;
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    OffsetDateTime::from_unix_timestamp(t.0.div_euclid(1000))
        .ok()
        .and_then(|d| d.format(format).ok())
        .unwrap_or_default()
}

/// One CSV field: quoted when needed, and a leading `=`, `+`, `-` or `@` neutralised so that a
/// spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    let text = text.as_str();
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `GET /api/licensed-users-info/users`: users who have used Portcullis, as JSON or, when the
/// request asks for `text/csv` (Accept or Content-Type), as CSV.
#[utoipa::path(get, path = "/api/licensed-users-info/users", tag = "permission", responses((status = 200, description = "JSON, or CSV for text/csv"), (status = 403)))]
pub async fn users(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&state, &auth, Action::Read)?;
    let wants_csv = [header::ACCEPT, header::CONTENT_TYPE].iter().any(|h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))
    });
    let rows: Vec<(String, String, String, String)> = state
        .store
        .list_seen_users()
        .await?
        .into_iter()
        .map(|(u, orgs)| {
            let org = orgs
                .iter()
                .find(|o| o.as_str() == "default")
                .or(orgs.first())
                .cloned()
                .unwrap_or_else(|| "default".into());
            let entity = EntityRef::user(&org, &u.username).as_str().to_owned();
            let name = if u.display_name.is_empty() {
                u.username.clone()
            } else {
                u.display_name.clone()
            };
            (
                entity,
                name,
                u.email,
                u.last_access_at.map(http_date).unwrap_or_default(),
            )
        })
        .collect();
    if wants_csv {
        let mut out = String::from("userEntityRef,displayName,email,lastTimeLogin\n");
        for (entity, name, email, last) in &rows {
            out.push_str(&format!(
                "{},{},{},{}\n",
                csv_field(entity),
                csv_field(name),
                csv_field(email),
                csv_field(last)
            ));
        }
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            out,
        )
            .into_response());
    }
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(entity, name, email, last)| json!({ "userEntityRef": entity, "lastTimeLogin": last, "displayName": name, "email": email }))
        .collect();
    Ok(Json(list).into_response())
}
