//! Rules generated from a backend's OpenAPI document, as Rönd reads it (`openapi/openapi_utils.go`
//! of rond-authz/rond): every operation under `paths` becomes a route; its `x-rond` extension
//! (or the legacy `x-permission`, which `x-rond` overrides) names the policy.
//!
//! - An operation without an extension, or with an empty policy name, still becomes a route
//!   that always refuses: Rönd answers such a request 403 "User is not allowed to request the
//!   API", while a path or method the document does not declare is a 404.
//! - The `all` verb stands for GET, POST, PUT, PATCH, DELETE and HEAD (Rönd's
//!   `OasSupportedHTTPMethods`), minus the methods the same path declares itself.
//! - `options.ignoreTrailingSlash` applies to its operation only.
//! - Unlike Rönd, a `get` operation also decides HEAD when the path declares no `head` (see the
//!   parent module): HEAD must not fall through to a less specific rule.
//! - `:name` segments are read as `{name}` (Rönd converts between the two).
//! - Keys of a path item that are not operations (`parameters`, `summary`, `x-…`, `$ref`) are
//!   skipped; a `$ref`'d path item is not resolved, so its operations are not routes (404).

use serde::Deserialize;
use serde_json::Value;

use super::spec::{Auth, rego_rule_name};
use super::{RondFlow, RouteRulesError, Rule, RuleSource, template_text};
use crate::route_match::Methods;

/// Operation keys of an OpenAPI path item, in the order routes are generated.
const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What Rönd's `all` verb expands to.
const ALL_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// `x-rond`. Unknown fields are ignored, as Rönd's JSON decoding does.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct XRond {
    request_flow: RequestFlow,
    response_flow: ResponseFlow,
    options: XOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RequestFlow {
    policy_name: Option<String>,
    generate_query: bool,
    query_options: QueryOptions,
    prevent_body_load: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct QueryOptions {
    header_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResponseFlow {
    policy_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct XOptions {
    enable_resource_permissions_map_optimization: bool,
    ignore_trailing_slash: bool,
}

/// `x-permission`, the v1 shape Rönd rewrites into `x-rond`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct XPermission {
    allow: Option<String>,
    response_filter: ResponseFilter,
    resource_filter: ResourceFilter,
    options: XOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponseFilter {
    policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourceFilter {
    row_filter: RowFilter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RowFilter {
    enabled: bool,
    header_key: Option<String>,
}

impl From<XPermission> for XRond {
    fn from(v1: XPermission) -> Self {
        Self {
            request_flow: RequestFlow {
                policy_name: v1.allow,
                generate_query: v1.resource_filter.row_filter.enabled,
                query_options: QueryOptions {
                    header_name: v1.resource_filter.row_filter.header_key,
                },
                prevent_body_load: false,
            },
            response_flow: ResponseFlow {
                policy_name: v1.response_filter.policy,
            },
            options: v1.options,
        }
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The rules of document `document` (backend `backend`).
pub(super) fn rules_from_openapi(
    document: usize,
    backend: Option<&str>,
    doc: &Value,
) -> Result<Vec<Rule>, RouteRulesError> {
    let invalid = |at: String, message: &str| RouteRulesError::Invalid {
        at,
        path: None,
        message: message.to_owned(),
    };
    if backend.is_some_and(|b| b.trim().is_empty()) {
        return Err(invalid(
            format!("openapi[{document}]"),
            "the backend name is empty",
        ));
    }
    let Some(root) = doc.as_object() else {
        return Err(invalid(
            format!("openapi[{document}]"),
            "expected an OpenAPI document (a JSON object)",
        ));
    };
    let paths = match root.get("paths") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(paths)) => paths,
        Some(_) => {
            return Err(invalid(
                format!("openapi[{document}].paths"),
                "expected an object of paths",
            ));
        }
    };
    // Sorted so that the rules, and the first of two duplicates reported, do not depend on the
    // map's iteration order.
    let mut keys: Vec<&String> = paths.keys().collect();
    keys.sort();
    let mut rules = Vec::new();
    for written in keys {
        let here = format!("openapi[{document}].paths[{written:?}]");
        let Some(item) = paths.get(written).and_then(Value::as_object) else {
            return Err(invalid(here, "expected a path item (an object)"));
        };
        if !written.starts_with('/') {
            return Err(invalid(here, "a path must start with '/'"));
        }
        let declared: Vec<String> = OPERATIONS
            .iter()
            .filter(|op| item.contains_key(**op))
            .map(|op| op.to_ascii_uppercase())
            .collect();
        for verb in OPERATIONS.iter().copied().chain(["all"]) {
            let Some(op) = item.get(verb) else { continue };
            let at = format!("{here}.{verb}");
            let Some(op) = op.as_object() else {
                return Err(invalid(at, "expected an operation (an object)"));
            };
            let methods = if verb == "all" {
                let rest: Vec<String> = ALL_METHODS
                    .iter()
                    .map(|m| (*m).to_owned())
                    .filter(|m| !declared.contains(m))
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                Methods::Only(rest)
            } else {
                Methods::Only(vec![verb.to_ascii_uppercase()])
            };
            let ext = match (op.get("x-rond"), op.get("x-permission")) {
                (Some(v2), _) if !v2.is_null() => Some((
                    "x-rond",
                    serde_json::from_value::<XRond>(v2.clone())
                        .map_err(|e| invalid(format!("{at}.x-rond"), &e.to_string()))?,
                )),
                (_, Some(v1)) if !v1.is_null() => Some((
                    "x-permission",
                    serde_json::from_value::<XPermission>(v1.clone())
                        .map_err(|e| invalid(format!("{at}.x-permission"), &e.to_string()))?
                        .into(),
                )),
                _ => None,
            };
            let (policy, ignore_trailing_slash, rond) = match ext {
                Some((ext_name, x)) => {
                    let policy = match non_empty(x.request_flow.policy_name) {
                        Some(p) => Some(rego_rule_name(&p).map_err(|m| {
                            invalid(format!("{at}.{ext_name}: request policy"), &m)
                        })?),
                        None => None,
                    };
                    let response_policy = match non_empty(x.response_flow.policy_name) {
                        Some(p) => Some(rego_rule_name(&p).map_err(|m| {
                            invalid(format!("{at}.{ext_name}: response policy"), &m)
                        })?),
                        None => None,
                    };
                    let flow = RondFlow {
                        response_policy,
                        generate_query: x.request_flow.generate_query,
                        query_header: non_empty(x.request_flow.query_options.header_name),
                        prevent_body_load: x.request_flow.prevent_body_load,
                        resource_permissions_map: x
                            .options
                            .enable_resource_permissions_map_optimization,
                    };
                    (policy, x.options.ignore_trailing_slash, Some(flow))
                }
                None => (None, false, None),
            };
            let source = RuleSource::OpenApi {
                document,
                backend: backend.map(str::to_owned),
                path: written.clone(),
                verb: verb.to_owned(),
            };
            rules.push(Rule {
                label: source.to_string(),
                source,
                path: template_text(written),
                methods,
                // Rönd trusts the authentication in front of it; Portcullis is that front, and it
                // denies by default.
                auth: Auth::Required,
                groups: None,
                no_policy: policy.is_none(),
                policy,
                permission: None,
                backend: backend.map(str::to_owned),
                ignore_trailing_slash,
                rond,
            });
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn all_expands_to_ronds_methods_minus_the_declared_ones() {
        let doc = json!({"paths": {"/a": {
            "all": {"x-rond": {"requestFlow": {"policyName": "any"}}},
            "get": {"x-rond": {"requestFlow": {"policyName": "read"}}},
            "parameters": [],
            "summary": "skipped"
        }}});
        let rules = rules_from_openapi(0, None, &doc).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].methods, Methods::Only(vec!["GET".into()]));
        assert_eq!(
            rules[1].methods,
            Methods::Only(
                ["POST", "PUT", "PATCH", "DELETE", "HEAD"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(rules[1].policy.as_deref(), Some("any"));
    }

    #[test]
    fn x_rond_wins_over_x_permission_and_carries_its_flow() {
        let doc = json!({"paths": {"/a/:id": {"post": {
            "x-permission": {"allow": "old"},
            "x-rond": {
                "requestFlow": {"policyName": "new.one", "generateQuery": true,
                                "queryOptions": {"headerName": "x-q"}},
                "responseFlow": {"policyName": "filter.out"},
                "options": {"ignoreTrailingSlash": true},
                "unknown": 1
            }
        }}}});
        let rules = rules_from_openapi(2, Some("b"), &doc).unwrap();
        let r = &rules[0];
        assert_eq!(r.path, "/a/{id}");
        assert_eq!(r.policy.as_deref(), Some("new_one"));
        assert!(r.ignore_trailing_slash && !r.no_policy);
        let flow = r.rond.as_ref().unwrap();
        assert_eq!(flow.response_policy.as_deref(), Some("filter_out"));
        assert!(flow.generate_query);
        assert_eq!(flow.query_header.as_deref(), Some("x-q"));
        assert_eq!(r.backend.as_deref(), Some("b"));
    }
}
