//! The permissions and condition rules plugins declare. The defaults are those of the catalog,
//! scaffolder, RBAC, Kubernetes, OCM, topology and bulk-import plugins (seed 002, chapter 6);
//! `permission.rbac.plugins` in the configuration adds plugins or replaces one by its id.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One permission of a plugin, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionSpec {
    /// Permission name, e.g. `catalog.entity.read`.
    pub name: String,
    /// Resource type of a resource permission.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// Action: create, read, update, delete or use.
    pub policy: String,
}

/// One condition rule of a plugin, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Rule name, e.g. `IS_ENTITY_OWNER`.
    pub name: String,
    /// What it allows.
    #[serde(default)]
    pub description: String,
    /// The resource type it applies to.
    pub resource_type: String,
    /// JSON schema of its parameters.
    #[serde(default)]
    pub params_schema: Value,
}

/// A plugin's permissions and rules, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSpec {
    /// Plugin id, e.g. `catalog`.
    pub plugin_id: String,
    /// Its permissions.
    #[serde(default)]
    pub permissions: Vec<PermissionSpec>,
    /// Its condition rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One permission in `GET /api/permission/plugins/policies`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginPermission {
    /// Whether it is a resource permission (then `permission` is its resource type).
    pub is_resourced: bool,
    /// The permission name, or the resource type for resource permissions.
    pub permission: String,
    /// The action.
    pub policy: String,
}

/// The permissions of one plugin in `GET /api/permission/plugins/policies`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginPolicies {
    /// Plugin id.
    pub plugin_id: String,
    /// Its permissions.
    pub policies: Vec<PluginPermission>,
}

/// (plugin, permission name, resource type, action)
const DEFAULT_PERMISSIONS: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "catalog",
        "catalog.entity.read",
        Some("catalog-entity"),
        "read",
    ),
    ("catalog", "catalog.entity.create", None, "create"),
    (
        "catalog",
        "catalog.entity.refresh",
        Some("catalog-entity"),
        "update",
    ),
    (
        "catalog",
        "catalog.entity.delete",
        Some("catalog-entity"),
        "delete",
    ),
    ("catalog", "catalog.location.read", None, "read"),
    ("catalog", "catalog.location.create", None, "create"),
    ("catalog", "catalog.location.delete", None, "delete"),
    (
        "scaffolder",
        "scaffolder.action.execute",
        Some("scaffolder-action"),
        "use",
    ),
    (
        "scaffolder",
        "scaffolder.template.parameter.read",
        Some("scaffolder-template"),
        "read",
    ),
    (
        "scaffolder",
        "scaffolder.template.step.read",
        Some("scaffolder-template"),
        "read",
    ),
    ("scaffolder", "scaffolder.task.create", None, "create"),
    ("scaffolder", "scaffolder.task.cancel", None, "use"),
    ("scaffolder", "scaffolder.task.read", None, "read"),
    (
        "permission",
        "policy.entity.read",
        Some("policy-entity"),
        "read",
    ),
    (
        "permission",
        "policy.entity.create",
        Some("policy-entity"),
        "create",
    ),
    (
        "permission",
        "policy.entity.update",
        Some("policy-entity"),
        "update",
    ),
    (
        "permission",
        "policy.entity.delete",
        Some("policy-entity"),
        "delete",
    ),
    ("kubernetes", "kubernetes.proxy", None, "use"),
    ("ocm", "ocm.entity.read", None, "read"),
    ("ocm", "ocm.cluster.read", None, "read"),
    ("topology", "topology.view.read", None, "read"),
    ("topology", "kubernetes.proxy", None, "use"),
    ("bulk-import", "bulk.import", None, "use"),
];

fn schema(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "$schema": "http://json-schema.org/draft-07/schema#"
    })
}

fn default_rules(plugin: &str) -> Vec<RuleSpec> {
    let text = |d: &str| json!({ "type": "string", "description": d });
    let list =
        |d: &str| json!({ "type": "array", "items": { "type": "string" }, "description": d });
    let rule =
        |name: &str, description: &str, resource_type: &str, params_schema: Value| RuleSpec {
            name: name.into(),
            description: description.into(),
            resource_type: resource_type.into(),
            params_schema,
        };
    match plugin {
        "catalog" => vec![
            rule(
                "HAS_ANNOTATION",
                "Allow entities with the specified annotation",
                "catalog-entity",
                schema(
                    json!({ "annotation": text("Name of the annotation to match on"), "value": text("Value of the annotation to match on") }),
                    &["annotation"],
                ),
            ),
            rule(
                "HAS_LABEL",
                "Allow entities with the specified label",
                "catalog-entity",
                schema(
                    json!({ "label": text("Name of the label to match on") }),
                    &["label"],
                ),
            ),
            rule(
                "HAS_METADATA",
                "Allow entities with the specified metadata subfield",
                "catalog-entity",
                schema(
                    json!({ "key": text("Property within the entities metadata to match on"), "value": text("Value of the given property to match on") }),
                    &["key"],
                ),
            ),
            rule(
                "HAS_SPEC",
                "Allow entities with the specified spec subfield",
                "catalog-entity",
                schema(
                    json!({ "key": text("Property within the entities spec to match on"), "value": text("Value of the given property to match on") }),
                    &["key"],
                ),
            ),
            rule(
                "IS_ENTITY_KIND",
                "Allow entities matching a specified kind",
                "catalog-entity",
                schema(
                    json!({ "kinds": list("List of kinds to match at least one of") }),
                    &["kinds"],
                ),
            ),
            rule(
                "IS_ENTITY_OWNER",
                "Allow entities owned by a specified claim",
                "catalog-entity",
                schema(
                    json!({ "claims": list("List of claims to match at least one on within ownedBy") }),
                    &["claims"],
                ),
            ),
        ],
        "scaffolder" => vec![
            rule(
                "HAS_ACTION_ID",
                "Match on action ID",
                "scaffolder-action",
                schema(
                    json!({ "actionId": text("Name of the actionId to match on") }),
                    &["actionId"],
                ),
            ),
            rule(
                "HAS_TAG",
                "Match parameters or steps with the given tag",
                "scaffolder-template",
                schema(
                    json!({ "tag": text("Name of the tag to match on") }),
                    &["tag"],
                ),
            ),
        ],
        _ => Vec::new(),
    }
}

/// The default plugins.
pub fn defaults() -> Vec<PluginSpec> {
    let mut out: Vec<PluginSpec> = Vec::new();
    for &(plugin, name, resource_type, action) in DEFAULT_PERMISSIONS {
        let permission = PermissionSpec {
            name: name.into(),
            resource_type: resource_type.map(Into::into),
            policy: action.into(),
        };
        match out.iter_mut().find(|p| p.plugin_id == plugin) {
            Some(p) => p.permissions.push(permission),
            None => out.push(PluginSpec {
                plugin_id: plugin.into(),
                permissions: vec![permission],
                rules: default_rules(plugin),
            }),
        }
    }
    out
}

/// The plugins in force: the defaults, with configured plugins added or replacing one by id.
#[derive(Debug, Clone)]
pub struct Catalogue {
    plugins: Vec<PluginSpec>,
}

impl Catalogue {
    /// The defaults merged with `configured`.
    pub fn with(configured: &[PluginSpec]) -> Self {
        let mut plugins = defaults();
        for c in configured {
            match plugins.iter_mut().find(|p| p.plugin_id == c.plugin_id) {
                Some(p) => *p = c.clone(),
                None => plugins.push(c.clone()),
            }
        }
        Self { plugins }
    }

    /// `GET /api/permission/plugins/policies`.
    pub fn plugin_policies(&self) -> Vec<PluginPolicies> {
        self.plugins
            .iter()
            .map(|p| PluginPolicies {
                plugin_id: p.plugin_id.clone(),
                policies: p
                    .permissions
                    .iter()
                    .map(|perm| PluginPermission {
                        is_resourced: perm.resource_type.is_some(),
                        permission: perm
                            .resource_type
                            .clone()
                            .unwrap_or_else(|| perm.name.clone()),
                        policy: perm.policy.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every permission with its plugin id.
    pub fn permissions(&self) -> impl Iterator<Item = (&str, &PermissionSpec)> {
        self.plugins.iter().flat_map(|p| {
            p.permissions
                .iter()
                .map(move |perm| (p.plugin_id.as_str(), perm))
        })
    }

    /// `GET /api/permission/plugins/condition-rules`.
    pub fn condition_rules(&self) -> Value {
        Value::Array(
            self.plugins
                .iter()
                .filter(|p| !p.rules.is_empty())
                .map(|p| json!({ "pluginId": p.plugin_id, "rules": p.rules }))
                .collect(),
        )
    }

    /// Whether `plugin` declares a rule named `rule` for `resource_type`.
    pub fn has_rule(&self, plugin: &str, rule: &str, resource_type: &str) -> bool {
        self.plugins.iter().any(|p| {
            p.plugin_id == plugin
                && p.rules
                    .iter()
                    .any(|r| r.name == rule && r.resource_type == resource_type)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_plugins_add_or_replace_defaults() {
        let custom = PluginSpec {
            plugin_id: "acme".into(),
            permissions: vec![PermissionSpec {
                name: "acme.deploy".into(),
                resource_type: None,
                policy: "use".into(),
            }],
            rules: vec![],
        };
        let replaced = PluginSpec {
            plugin_id: "kubernetes".into(),
            permissions: vec![],
            rules: vec![],
        };
        let c = Catalogue::with(&[custom, replaced]);
        let ids: Vec<_> = c
            .plugin_policies()
            .into_iter()
            .map(|p| p.plugin_id)
            .collect();
        assert!(ids.contains(&"acme".to_string()) && ids.contains(&"catalog".to_string()));
        assert!(
            c.permissions()
                .any(|(p, perm)| p == "acme" && perm.name == "acme.deploy")
        );
        assert!(!c.permissions().any(|(p, _)| p == "kubernetes"));
        assert!(c.has_rule("catalog", "IS_ENTITY_OWNER", "catalog-entity"));
        assert!(!c.has_rule("catalog", "IS_ENTITY_OWNER", "scaffolder-action"));
        let rules = c.condition_rules();
        assert_eq!(
            rules[0]["rules"][0]["paramsSchema"]["required"][0],
            "annotation"
        );
    }
}
