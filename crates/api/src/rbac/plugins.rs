//! The permissions and condition rules plugins declare: the defaults are those of the catalog,
//! scaffolder, RBAC, Kubernetes, OCM, topology and bulk-import plugins (seed 002, chapter 6).

use serde::Serialize;
use serde_json::{Value, json};

/// One permission of a plugin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginPermission {
    /// Whether it is a resource permission (then `permission` is its resource type in listings).
    pub is_resourced: bool,
    /// The permission name, or the resource type for resource permissions.
    pub permission: String,
    /// The action.
    pub policy: String,
    /// The permission name (also for resource permissions).
    #[serde(skip)]
    pub name: String,
}

/// The permissions of one plugin.
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

/// The permissions of every plugin, grouped by plugin in declaration order.
pub fn plugin_policies() -> Vec<PluginPolicies> {
    let mut out: Vec<PluginPolicies> = Vec::new();
    for &(plugin, name, resource_type, action) in DEFAULT_PERMISSIONS {
        let permission = PluginPermission {
            is_resourced: resource_type.is_some(),
            permission: resource_type.unwrap_or(name).to_owned(),
            policy: action.to_owned(),
            name: name.to_owned(),
        };
        match out.iter_mut().find(|p| p.plugin_id == plugin) {
            Some(p) => p.policies.push(permission),
            None => out.push(PluginPolicies {
                plugin_id: plugin.to_owned(),
                policies: vec![permission],
            }),
        }
    }
    out
}

/// Every permission with its plugin: (plugin, name, resource type, action).
pub fn all_permissions() -> impl Iterator<
    Item = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    ),
> {
    DEFAULT_PERMISSIONS.iter().copied()
}

fn schema(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "$schema": "http://json-schema.org/draft-07/schema#"
    })
}

/// The condition rules of every plugin with their parameter schemas.
pub fn condition_rules() -> Value {
    let text = |d: &str| json!({ "type": "string", "description": d });
    let list =
        |d: &str| json!({ "type": "array", "items": { "type": "string" }, "description": d });
    let rule = |name: &str, description: &str, resource_type: &str, params: Value| json!({ "name": name, "description": description, "resourceType": resource_type, "paramsSchema": params });
    json!([
        {
            "pluginId": "catalog",
            "rules": [
                rule("HAS_ANNOTATION", "Allow entities with the specified annotation", "catalog-entity",
                    schema(json!({ "annotation": text("Name of the annotation to match on"), "value": text("Value of the annotation to match on") }), &["annotation"])),
                rule("HAS_LABEL", "Allow entities with the specified label", "catalog-entity",
                    schema(json!({ "label": text("Name of the label to match on") }), &["label"])),
                rule("HAS_METADATA", "Allow entities with the specified metadata subfield", "catalog-entity",
                    schema(json!({ "key": text("Property within the entities metadata to match on"), "value": text("Value of the given property to match on") }), &["key"])),
                rule("HAS_SPEC", "Allow entities with the specified spec subfield", "catalog-entity",
                    schema(json!({ "key": text("Property within the entities spec to match on"), "value": text("Value of the given property to match on") }), &["key"])),
                rule("IS_ENTITY_KIND", "Allow entities matching a specified kind", "catalog-entity",
                    schema(json!({ "kinds": list("List of kinds to match at least one of") }), &["kinds"])),
                rule("IS_ENTITY_OWNER", "Allow entities owned by a specified claim", "catalog-entity",
                    schema(json!({ "claims": list("List of claims to match at least one on within ownedBy") }), &["claims"])),
            ]
        },
        {
            "pluginId": "scaffolder",
            "rules": [
                rule("HAS_ACTION_ID", "Match on action ID", "scaffolder-action",
                    schema(json!({ "actionId": text("Name of the actionId to match on") }), &["actionId"])),
                rule("HAS_TAG", "Match parameters or steps with the given tag", "scaffolder-template",
                    schema(json!({ "tag": text("Name of the tag to match on") }), &["tag"])),
            ]
        }
    ])
}

/// Whether `plugin` declares a rule named `rule` for `resource_type`.
pub fn has_rule(plugin: &str, rule: &str, resource_type: &str) -> bool {
    condition_rules().as_array().into_iter().flatten().any(|p| {
        p["pluginId"] == plugin
            && p["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["name"] == rule && r["resourceType"] == resource_type)
    })
}
