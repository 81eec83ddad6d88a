//! Rönd in the running server: every org's roles and bindings in memory (rebuilt with the RBAC
//! snapshot), the compiled Rego policies, and the input document Rönd hands to a policy.

use std::collections::HashMap;

use portcullis_authz::rego::{RegoModule, RegoPolicies};
use portcullis_store::{RondDocument, RondKind};
use serde_json::{Map, Value, json};

use super::RbacSettings;
use crate::ServerError;

/// One org's roles (by id) and bindings, with the bindings indexed by subject and by group.
#[derive(Debug, Default)]
pub struct OrgRond {
    roles: HashMap<String, Value>,
    bindings: Vec<Value>,
    by_subject: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
}

/// Every org's roles and bindings.
#[derive(Debug, Default)]
pub struct RondIndex {
    orgs: HashMap<String, OrgRond>,
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

impl RondIndex {
    /// Indexes stored documents by org, and bindings by subject and group.
    pub fn build(docs: Vec<(String, RondKind, RondDocument)>) -> Self {
        let mut orgs: HashMap<String, OrgRond> = HashMap::new();
        for (org, kind, doc) in docs {
            let entry = orgs.entry(org).or_default();
            match kind {
                RondKind::Role => {
                    entry.roles.insert(doc.id, doc.document);
                }
                RondKind::Binding => {
                    let at = entry.bindings.len();
                    for s in strings(&doc.document, "subjects") {
                        entry.by_subject.entry(s.to_owned()).or_default().push(at);
                    }
                    for g in strings(&doc.document, "groups") {
                        entry.by_group.entry(g.to_owned()).or_default().push(at);
                    }
                    entry.bindings.push(doc.document);
                }
            }
        }
        Self { orgs }
    }

    /// The bindings of `org` that apply to a user (their id or username among the subjects, or
    /// one of their groups among the groups), and the roles those bindings name. Costs the
    /// number of matching bindings, not the number of bindings.
    pub fn for_user(
        &self,
        org: &str,
        subject_ids: &[&str],
        groups: &[String],
    ) -> (Vec<Value>, Vec<Value>) {
        let Some(data) = self.orgs.get(org) else {
            return (Vec::new(), Vec::new());
        };
        let mut hits: Vec<usize> = Vec::new();
        let matched = subject_ids
            .iter()
            .filter_map(|s| data.by_subject.get(*s))
            .chain(groups.iter().filter_map(|g| data.by_group.get(g)))
            .flatten();
        for &i in matched {
            if !hits.contains(&i) {
                hits.push(i);
            }
        }
        hits.sort_unstable();
        let bindings: Vec<Value> = hits.iter().map(|&i| data.bindings[i].clone()).collect();
        let mut role_ids: Vec<&str> = Vec::new();
        for b in &bindings {
            for r in strings(b, "roles") {
                if !role_ids.contains(&r) {
                    role_ids.push(r);
                }
            }
        }
        let roles = role_ids
            .iter()
            .filter_map(|r| data.roles.get(*r).cloned())
            .collect();
        (bindings, roles)
    }
}

/// Reads and compiles the configured Rego folder, if any.
pub fn load_rego(settings: &RbacSettings) -> Result<Option<RegoPolicies>, ServerError> {
    let Some(dir) = &settings.rego_policies_dir else {
        return Ok(None);
    };
    let modules = read_modules(dir).map_err(ServerError::Rego)?;
    RegoPolicies::compile(&modules, settings.rego_time_limit)
        .map(Some)
        .map_err(|e| ServerError::Rego(e.to_string()))
}

/// Reads every `.rego` file under `dir` (recursively, in name order).
pub fn read_modules(dir: &std::path::Path) -> Result<Vec<RegoModule>, String> {
    fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        if dir.is_file() {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                collect(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "rego") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(RegoModule {
                path: path.display().to_string(),
                source,
            })
        })
        .collect()
}

/// A request as a policy sees it (the synthetic request of a check).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestSpec {
    /// Method, e.g. `GET`.
    #[serde(default)]
    pub method: String,
    /// Path, e.g. `/control-plane`.
    #[serde(default)]
    pub path: String,
    /// Headers (name -> value or values).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    /// Query parameters (name -> value or values).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub query: Map<String, Value>,
    /// Path parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub path_params: Map<String, Value>,
    /// JSON body.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Option<Value>,
}

/// Values as lists, as Rönd hands headers and query parameters (`map[string][]string`).
fn as_lists(map: &Map<String, Value>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| {
                let list = match v {
                    Value::Array(items) => Value::Array(items.clone()),
                    Value::String(_) => Value::Array(vec![v.clone()]),
                    other => Value::Array(vec![Value::String(other.to_string())]),
                };
                (k.clone(), list)
            })
            .collect(),
    )
}

/// The input document exactly as Rönd builds it:
/// `{request:{method, path, headers, query, pathParams, body}, user:{id, properties, groups,
/// bindings, roles}, clientType}`; the body only for JSON POST/PUT/PATCH/DELETE.
pub fn input_document(
    request: &RequestSpec,
    user_id: &str,
    properties: Value,
    groups: &[String],
    bindings: Vec<Value>,
    roles: Vec<Value>,
) -> Value {
    let method = request.method.to_uppercase();
    let mut req = json!({
        "method": method,
        "path": request.path,
        "headers": as_lists(&request.headers),
        "query": as_lists(&request.query),
        "pathParams": Value::Object(request.path_params.clone()),
    });
    if matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
        && let Some(body) = &request.body
    {
        req["body"] = body.clone();
    }
    let client_type = request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("client-type"))
        .and_then(|(_, v)| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.get(0).and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_default();
    json!({
        "request": req,
        "user": { "id": user_id, "properties": properties, "groups": groups, "bindings": bindings, "roles": roles },
        "clientType": client_type,
    })
}

/// Rönd's `resourcePermissionsMap`: for every binding on a resource, each permission of the
/// binding and of the roles it names (roles not known are skipped) becomes the key
/// `permission:resourceType:resourceId` with the value `true`.
pub fn resource_permissions_map(bindings: &[Value], roles: &[Value]) -> Value {
    let mut map = Map::new();
    for binding in bindings {
        let resource = &binding["resource"];
        let (Some(kind), Some(id)) = (
            resource["resourceType"].as_str(),
            resource["resourceId"].as_str(),
        ) else {
            continue;
        };
        let from_roles = strings(binding, "roles").flat_map(|r| {
            roles
                .iter()
                .filter(move |role| role["roleId"].as_str() == Some(r))
                .flat_map(|role| strings(role, "permissions"))
        });
        for permission in strings(binding, "permissions").chain(from_roles) {
            map.insert(format!("{permission}:{kind}:{id}"), Value::Bool(true));
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod resource_map_tests {
    use super::*;

    #[test]
    fn the_map_holds_binding_and_role_permissions_per_resource() {
        let roles = vec![
            json!({"roleId": "role1", "permissions": ["p1", "p2"]}),
            json!({"roleId": "role2", "permissions": ["p3"]}),
        ];
        let bindings = vec![
            json!({"bindingId": "b1", "roles": ["role1", "ghost"], "permissions": ["own"],
                   "resource": {"resourceType": "project", "resourceId": "staging"}}),
            json!({"bindingId": "b2", "roles": ["role2"]}),
            json!({"bindingId": "b3", "roles": ["role2"],
                   "resource": {"resourceType": "project", "resourceId": "prod"}}),
        ];
        let map = resource_permissions_map(&bindings, &roles);
        let mut keys: Vec<&String> = map.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "own:project:staging",
                "p1:project:staging",
                "p2:project:staging",
                "p3:project:prod"
            ]
        );
    }
}
