//! Route rules in the running server: compiled once at start from the `routes:` configuration
//! and the backends' OpenAPI documents (`x-rond`, `x-permission`), and evaluated for a caller
//! and a request: route match on the normalised path, then every rule that is set (auth,
//! groups expression, RBAC permission, Rego policy with the input document Rönd builds).

use std::path::PathBuf;

use portcullis_authz::rbac::{Action, Outcome, PermissionQuery};
use portcullis_authz::route_rules::{
    self, Auth, DeniedBy, RouteLookupError, RouteRules, RouteSpec, RuleChecks, RuleContext,
    RuleOutcome, RuleUser,
};
use serde_json::{Value, json};

use super::Rbac;
use super::rond::{RequestSpec, client_type_of, input_value, resource_permissions_map};
use crate::ServerError;
use portcullis_authz::rego::RegoValue;

/// An OpenAPI document a backend publishes, whose `x-rond` / `x-permission` extensions become
/// routes.
#[derive(Debug, Clone)]
pub struct OpenApiSource {
    /// The backend it belongs to (for the gateway), if any.
    pub backend: Option<String>,
    /// The JSON file.
    pub file: PathBuf,
}

/// Compiles the configured routes and OpenAPI documents; `None` when there are none. Every
/// policy a route names must exist in the Rego policies.
pub fn compile(
    specs: &[RouteSpec],
    openapi: &[OpenApiSource],
    rego: Option<&portcullis_authz::rego::RegoPolicies>,
) -> Result<Option<RouteRules>, ServerError> {
    if specs.is_empty() && openapi.is_empty() {
        return Ok(None);
    }
    let mut documents = Vec::with_capacity(openapi.len());
    for source in openapi {
        let text = std::fs::read_to_string(&source.file).map_err(|e| {
            ServerError::Routes(format!("cannot read {}: {e}", source.file.display()))
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            ServerError::Routes(format!(
                "{} is not a JSON OpenAPI document: {e}",
                source.file.display()
            ))
        })?;
        documents.push((source.backend.clone(), doc));
    }
    let rules =
        RouteRules::compile(specs, &documents).map_err(|e| ServerError::Routes(e.to_string()))?;
    // Rönd's response filtering and row-filter queries are not done by the gateway yet: an
    // operation asking for them would silently forward what its policy was meant to filter.
    for rule in rules.rules() {
        let Some(flow) = rule.rond() else { continue };
        let unsupported = if flow.response_policy.is_some() {
            "responseFlow.policyName (response filtering)"
        } else if flow.generate_query {
            "requestFlow.generateQuery (row filtering)"
        } else {
            continue;
        };
        return Err(ServerError::Routes(format!(
            "{}: x-rond {unsupported} is not supported by Portcullis; remove it from the \
             operation (the gateway would forward unfiltered data)",
            rule.source_label()
        )));
    }
    let policies = rules.policies();
    if !policies.is_empty() {
        let Some(rego) = rego else {
            return Err(ServerError::Routes(format!(
                "routes name Rego policies ({}) but no rego.policies_dir is configured",
                policies.join(", ")
            )));
        };
        for policy in policies {
            if !rego.defines(policy) {
                return Err(ServerError::Routes(format!(
                    "route policy '{policy}' is not a rule of package policies in the Rego policies"
                )));
            }
        }
    }
    Ok(Some(rules))
}

/// Who is asking, as route rules see them.
#[derive(Debug, Clone)]
pub struct RouteCaller {
    /// `user:<org>/<name>`.
    pub user_ref: String,
    /// The user id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Properties for the Rego input (`email`, `name`, …).
    pub properties: Value,
    /// The caller's groups in their org, when already known (else looked up).
    pub groups: Option<Vec<String>>,
}

/// The answer for one request.
#[derive(Debug, Clone)]
pub struct RouteVerdict {
    /// HTTP status the gateway answers (200 means: forward).
    pub status: u16,
    /// `ALLOW`, `UNAUTHENTICATED`, `DENY`, `NOT_FOUND` or `BAD_PATH`.
    pub result: &'static str,
    /// Where the matching rule comes from.
    pub route: Option<String>,
    /// Its path template.
    pub template: Option<String>,
    /// The backend it forwards to.
    pub backend: Option<String>,
    /// The normalised path (what is forwarded).
    pub path: Option<String>,
    /// Which check refused.
    pub denied_by: Option<String>,
    /// The body the gateway answers when it refuses (Rönd's shapes).
    pub body: Option<Value>,
    /// Groups, bindings and roles that took part (when asked for).
    pub explanation: Value,
    /// The matched route's path parameters.
    pub params: std::collections::HashMap<String, String>,
}

impl RouteVerdict {
    /// The refusal of a path that does not normalise (400, Rönd's shape).
    pub fn bad_path(err: &portcullis_authz::route_match::PathError) -> Self {
        Self {
            status: 400,
            result: "BAD_PATH",
            route: None,
            template: None,
            backend: None,
            path: None,
            denied_by: None,
            body: Some(route_rules::bad_path_body(err)),
            explanation: Value::Null,
            params: Default::default(),
        }
    }
}

struct Checks<'a> {
    rbac: &'a Rbac,
    caller: Option<&'a RouteCaller>,
    /// The Rego input; `None` when the policy is taken as passed (see
    /// [`Rbac::refusal_before_policy`]).
    input: Option<&'a RegoValue>,
}

impl RuleChecks for Checks<'_> {
    fn policy(&self, rule_name: &str) -> bool {
        let Some(input) = self.input else {
            return true;
        };
        self.rbac
            .rego()
            .is_some_and(|rego| rego.allows_value(rule_name, input))
    }

    fn permission(&self, permission: &str, action: Option<Action>) -> bool {
        let Some(caller) = self.caller else {
            return false;
        };
        let query = PermissionQuery {
            name: permission,
            resource_type: None,
            action,
        };
        // A conditional grant cannot be resolved without the resource: it does not open a route.
        self.rbac.decide(&caller.user_ref, &query, false).outcome == Outcome::Allow
    }
}

fn denied_by(by: &DeniedBy) -> String {
    match by {
        DeniedBy::NoPolicy => "no policy: the operation declares none".into(),
        DeniedBy::Groups => "groups expression".into(),
        DeniedBy::Permission(p) => format!("permission {p}"),
        DeniedBy::Policy(p) => format!("policy {p}"),
    }
}

/// Whether a route decision runs the rule's Rego policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyCheck {
    /// Every check, the policy last.
    Run,
    /// The checks before the policy only; the policy is taken as passed.
    Assume,
}

impl Rbac {
    /// Decides `request` for `caller` (none: anonymous) against the route rules.
    pub fn evaluate_route(
        &self,
        rules: &RouteRules,
        caller: Option<&RouteCaller>,
        request: &RequestSpec,
        explain: bool,
    ) -> RouteVerdict {
        self.route_verdict(rules, caller, request, explain, PolicyCheck::Run)
    }

    /// The refusal of `request` by a check that runs before its rule's policy (a caller that
    /// is not signed in, a `groups` expression, a permission), if one refuses it: the full
    /// decision would refuse it the same way whatever its body says, so the body need not be
    /// read.
    pub fn refusal_before_policy(
        &self,
        rules: &RouteRules,
        caller: Option<&RouteCaller>,
        request: &RequestSpec,
    ) -> Option<RouteVerdict> {
        let verdict = self.route_verdict(rules, caller, request, false, PolicyCheck::Assume);
        (verdict.status != 200).then_some(verdict)
    }

    fn route_verdict(
        &self,
        rules: &RouteRules,
        caller: Option<&RouteCaller>,
        request: &RequestSpec,
        explain: bool,
        policy_check: PolicyCheck,
    ) -> RouteVerdict {
        let verdict = |status, result, body| RouteVerdict {
            status,
            result,
            route: None,
            template: None,
            backend: None,
            path: None,
            denied_by: None,
            body,
            explanation: Value::Null,
            params: Default::default(),
        };
        let raw_path = request.path.split('?').next().unwrap_or("");
        let matched = match rules.find(&request.method, raw_path) {
            Ok(m) => m,
            Err(RouteLookupError::NoRoute) => {
                return verdict(
                    404,
                    "NOT_FOUND",
                    Some(route_rules::not_found_body(&request.method, raw_path)),
                );
            }
            Err(RouteLookupError::BadPath(e)) => return RouteVerdict::bad_path(&e),
        };
        let rule = matched.rule;
        let org = caller
            .and_then(|c| c.user_ref.strip_prefix("user:"))
            .and_then(|r| r.split_once('/'))
            .map_or("", |(org, _)| org);
        let groups: std::borrow::Cow<'_, [String]> = match caller {
            Some(RouteCaller {
                groups: Some(known),
                ..
            }) => std::borrow::Cow::Borrowed(known),
            Some(c) => {
                let prefix = format!("group:{org}/");
                std::borrow::Cow::Owned(
                    self.snapshot()
                        .groups_of_user(&c.user_ref)
                        .into_iter()
                        .filter_map(|g| g.strip_prefix(&prefix).map(str::to_owned))
                        .collect(),
                )
            }
            None => std::borrow::Cow::Borrowed(&[]),
        };
        let rond = self.rond();
        // Bindings and roles are looked up only for the checks that read them.
        let runs_policy = rule.policy().is_some() && policy_check == PolicyCheck::Run;
        let needs_user = rule.groups().is_some() || runs_policy || explain;
        let user = match caller {
            Some(c) if needs_user => {
                rond.user(org, &[c.user_id.as_str(), c.username.as_str()], &groups)
            }
            _ => super::rond::UserRond::default(),
        };
        // Only the work the rule needs: the roles' permissions for a groups expression, the
        // Rego input for a policy, the documents for an explanation.
        let mut permissions: Vec<String> = Vec::new();
        if rule.groups().is_some() {
            for doc in user.bindings_json().iter().chain(user.roles_json().iter()) {
                for p in doc["permissions"].as_array().into_iter().flatten() {
                    if let Some(p) = p.as_str()
                        && !permissions.iter().any(|q| q == p)
                    {
                        permissions.push(p.to_owned());
                    }
                }
            }
        }
        let explanation = if explain {
            json!({
                "groups": groups,
                "bindings": user.bindings_json().iter().filter_map(|b| b.get("bindingId").cloned()).collect::<Vec<_>>(),
                "roles": user.roles_json().iter().filter_map(|r| r.get("roleId").cloned()).collect::<Vec<_>>(),
            })
        } else {
            Value::Null
        };
        let input = if runs_policy {
            let mut request = request.clone();
            request.path = matched.path.clone();
            for (k, v) in &matched.params {
                request
                    .path_params
                    .insert(k.clone(), Value::String(v.clone()));
            }
            let with_map = rule.rond().is_some_and(|r| r.resource_permissions_map);
            let map = with_map
                .then(|| resource_permissions_map(&user.bindings_json(), &user.roles_json()));
            let properties = caller.map_or(json!({}), |c| c.properties.clone());
            let user_id = caller.map_or("", |c| c.user_id.as_str());
            input_value(&request, user_id, &properties, &groups, &user, map)
        } else {
            RegoValue::Null
        };
        let client_type = client_type_of(request);
        let client_type = client_type.as_deref();
        let ctx = RuleContext {
            user: caller.map(|_| RuleUser {
                groups: &groups,
                permissions: &permissions,
            }),
            client_type,
        };
        let checks = Checks {
            rbac: self,
            caller,
            input: runs_policy.then_some(&input),
        };
        let outcome = if rule.auth() == Auth::None {
            RuleOutcome::Allow
        } else {
            rule.evaluate(&ctx, &checks)
        };
        let (result, body, denied) = match &outcome {
            RuleOutcome::Allow => ("ALLOW", None, None),
            RuleOutcome::Unauthenticated => (
                "UNAUTHENTICATED",
                Some(
                    json!({"error": {"code": "unauthenticated", "message": "this route needs a signed-in caller"}}),
                ),
                None,
            ),
            RuleOutcome::Denied { by } => (
                "DENY",
                Some(route_rules::forbidden_body(by)),
                Some(denied_by(by)),
            ),
        };
        RouteVerdict {
            status: outcome.status(),
            result,
            route: Some(rule.source_label().to_owned()),
            template: Some(rule.path().to_owned()),
            backend: rule.backend().map(str::to_owned),
            path: Some(matched.path),
            denied_by: denied,
            body,
            explanation,
            params: matched.params,
        }
    }
}
