//! Rönd in the running server: every org's roles and bindings in memory (rebuilt with the RBAC
//! snapshot), the compiled Rego policies, and the input document Rönd hands to a policy.

use std::collections::HashMap;

use portcullis_authz::rego::{RegoModule, RegoPolicies, RegoValue};
use portcullis_store::{RondDocument, RondKind};
use serde_json::{Map, Value, json};

use super::RbacSettings;
use crate::ServerError;

/// One org's roles (by id) and bindings, with the bindings indexed by subject and by group.
/// Each document is also kept converted for the Rego engine, so building an input document
/// shares them (a reference count each) instead of converting JSON on every decision.
#[derive(Debug, Default)]
pub struct OrgRond {
    roles: Vec<(Value, RegoValue)>,
    role_index: HashMap<String, usize>,
    bindings: Vec<(Value, RegoValue)>,
    /// The known roles each binding names, as positions in `roles` (resolved at build, so a
    /// decision never reads the JSON documents).
    binding_roles: Vec<Vec<usize>>,
    by_subject: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
}

/// The bindings and roles that apply to one user in one org.
#[derive(Debug, Default)]
pub struct UserRond<'a> {
    org: Option<&'a OrgRond>,
    bindings: Vec<usize>,
    roles: Vec<usize>,
}

impl UserRond<'_> {
    /// The bindings, as JSON.
    pub fn bindings_json(&self) -> Vec<Value> {
        let Some(org) = self.org else {
            return Vec::new();
        };
        self.bindings
            .iter()
            .map(|&i| org.bindings[i].0.clone())
            .collect()
    }

    /// The roles, as JSON.
    pub fn roles_json(&self) -> Vec<Value> {
        let Some(org) = self.org else {
            return Vec::new();
        };
        self.roles.iter().map(|&r| org.roles[r].0.clone()).collect()
    }

    fn bindings_rego(&self) -> Vec<RegoValue> {
        let Some(org) = self.org else {
            return Vec::new();
        };
        self.bindings
            .iter()
            .map(|&i| org.bindings[i].1.clone())
            .collect()
    }

    fn roles_rego(&self) -> Vec<RegoValue> {
        let Some(org) = self.org else {
            return Vec::new();
        };
        self.roles.iter().map(|&r| org.roles[r].1.clone()).collect()
    }
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
                    let prepared = rego_of(&doc.document);
                    match entry.role_index.get(&doc.id) {
                        Some(&at) => entry.roles[at] = (doc.document, prepared),
                        None => {
                            entry.role_index.insert(doc.id, entry.roles.len());
                            entry.roles.push((doc.document, prepared));
                        }
                    }
                }
                RondKind::Binding => {
                    let at = entry.bindings.len();
                    for s in strings(&doc.document, "subjects") {
                        entry.by_subject.entry(s.to_owned()).or_default().push(at);
                    }
                    for g in strings(&doc.document, "groups") {
                        entry.by_group.entry(g.to_owned()).or_default().push(at);
                    }
                    let prepared = rego_of(&doc.document);
                    entry.bindings.push((doc.document, prepared));
                }
            }
        }
        for entry in orgs.values_mut() {
            entry.binding_roles = entry
                .bindings
                .iter()
                .map(|(doc, _)| {
                    let mut known: Vec<usize> = Vec::new();
                    for r in strings(doc, "roles") {
                        if let Some(&at) = entry.role_index.get(r)
                            && !known.contains(&at)
                        {
                            known.push(at);
                        }
                    }
                    known
                })
                .collect();
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
        let user = self.user(org, subject_ids, groups);
        (user.bindings_json(), user.roles_json())
    }

    /// The bindings and roles of a user in `org`, to read as JSON or hand to Rego.
    pub fn user<'a>(&'a self, org: &str, subject_ids: &[&str], groups: &[String]) -> UserRond<'a> {
        let Some(data) = self.orgs.get(org) else {
            return UserRond::default();
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
        let mut role_ids: Vec<usize> = Vec::new();
        for &i in &hits {
            for &r in &data.binding_roles[i] {
                if !role_ids.contains(&r) {
                    role_ids.push(r);
                }
            }
        }
        UserRond {
            org: Some(data),
            bindings: hits,
            roles: role_ids,
        }
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

/// The `client-type` header of a request (Rönd's `clientType`), if present.
pub fn client_type_of(request: &RequestSpec) -> Option<String> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("client-type"))
        .and_then(|(_, v)| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.get(0).and_then(Value::as_str).map(str::to_owned))
        })
        .filter(|c| !c.is_empty())
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
    let client_type = client_type_of(request).unwrap_or_default();
    json!({
        "request": req,
        "user": { "id": user_id, "properties": properties, "groups": groups, "bindings": bindings, "roles": roles },
        "clientType": client_type,
    })
}

/// A JSON value in the Rego engine's form, converted directly (no serde round trip).
pub fn rego_of(v: &Value) -> RegoValue {
    match v {
        Value::Null => RegoValue::Null,
        Value::Bool(b) => RegoValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                RegoValue::from(i)
            } else if let Some(u) = n.as_u64() {
                RegoValue::from(u)
            } else {
                RegoValue::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => RegoValue::from(s.as_str()),
        Value::Array(items) => RegoValue::from(items.iter().map(rego_of).collect::<Vec<_>>()),
        Value::Object(map) => RegoValue::from(
            map.iter()
                .map(|(k, v)| (RegoValue::from(k.as_str()), rego_of(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

/// Header or query values as lists, in the engine's form.
fn rego_lists(map: &Map<String, Value>) -> RegoValue {
    RegoValue::from(
        map.iter()
            .map(|(k, v)| {
                let list = match v {
                    Value::Array(items) => items.iter().map(rego_of).collect(),
                    other => vec![rego_of(other)],
                };
                (RegoValue::from(k.as_str()), RegoValue::from(list))
            })
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
}

/// The same input document as [`input_document`], built for the Rego engine directly: the
/// user's bindings and roles are shared, not converted, so the cost does not grow with their
/// size. This is the decision path's form.
pub fn input_value(
    request: &RequestSpec,
    user_id: &str,
    properties: &Value,
    groups: &[String],
    user: &UserRond<'_>,
    resource_permissions_map: Option<Value>,
) -> RegoValue {
    use std::collections::BTreeMap;
    let key = |k: &str| RegoValue::from(k);
    let method = request.method.to_uppercase();
    let mut req: BTreeMap<RegoValue, RegoValue> = BTreeMap::new();
    req.insert(key("path"), RegoValue::from(request.path.as_str()));
    req.insert(key("headers"), rego_lists(&request.headers));
    req.insert(key("query"), rego_lists(&request.query));
    req.insert(
        key("pathParams"),
        rego_of(&Value::Object(request.path_params.clone())),
    );
    if matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
        && let Some(body) = &request.body
    {
        req.insert(key("body"), rego_of(body));
    }
    req.insert(key("method"), RegoValue::from(method));
    let mut user_map: BTreeMap<RegoValue, RegoValue> = BTreeMap::new();
    user_map.insert(key("id"), RegoValue::from(user_id));
    user_map.insert(key("properties"), rego_of(properties));
    user_map.insert(
        key("groups"),
        RegoValue::from(
            groups
                .iter()
                .map(|g| RegoValue::from(g.as_str()))
                .collect::<Vec<_>>(),
        ),
    );
    user_map.insert(key("bindings"), RegoValue::from(user.bindings_rego()));
    user_map.insert(key("roles"), RegoValue::from(user.roles_rego()));
    if let Some(map) = resource_permissions_map {
        user_map.insert(key("resourcePermissionsMap"), rego_of(&map));
    }
    let mut root: BTreeMap<RegoValue, RegoValue> = BTreeMap::new();
    root.insert(key("request"), RegoValue::from(req));
    root.insert(
        key("clientType"),
        RegoValue::from(client_type_of(request).unwrap_or_default()),
    );
    root.insert(key("user"), RegoValue::from(user_map));
    RegoValue::from(root)
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
    fn the_engine_form_of_the_input_is_the_same_document() {
        let doc = |id: &str, document: Value| RondDocument {
            id: id.into(),
            document,
            created_at: portcullis_model::Timestamp(0),
            updated_at: portcullis_model::Timestamp(0),
        };
        let index = RondIndex::build(vec![
            (
                "o".into(),
                RondKind::Role,
                doc("r1", json!({"roleId": "r1", "permissions": ["p"]})),
            ),
            (
                "o".into(),
                RondKind::Binding,
                doc(
                    "b1",
                    json!({"bindingId": "b1", "subjects": ["u1"], "roles": ["r1", "gone"]}),
                ),
            ),
            (
                "o".into(),
                RondKind::Binding,
                doc(
                    "b2",
                    json!({"bindingId": "b2", "groups": ["g"], "roles": ["r1"],
                "resource": {"resourceType": "project", "resourceId": "x"}}),
                ),
            ),
            (
                "o".into(),
                RondKind::Binding,
                doc("b3", json!({"bindingId": "b3", "subjects": ["someone"]})),
            ),
        ]);
        let request: RequestSpec = serde_json::from_value(json!({
            "method": "post", "path": "/a", "headers": {"Client-Type": "cms", "x": ["1", "2"]},
            "query": {"q": "v"}, "pathParams": {"id": "7"}, "body": {"k": [1, 2.5, null]}
        }))
        .unwrap();
        let groups = vec!["g".to_owned()];
        let user = index.user("o", &["u1"], &groups);
        let props = json!({"email": "u1@example.com"});
        let map = resource_permissions_map(&user.bindings_json(), &user.roles_json());
        let mut expected = input_document(
            &request,
            "u1",
            props.clone(),
            &groups,
            user.bindings_json(),
            user.roles_json(),
        );
        expected["user"]["resourcePermissionsMap"] = map.clone();
        let built = input_value(&request, "u1", &props, &groups, &user, Some(map));
        assert_eq!(built, RegoValue::from(expected));
        assert_eq!(user.bindings_json().len(), 2);
        assert_eq!(user.roles_json().len(), 1, "unknown roles are left out");
    }

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
