//! The catalog's condition rules, evaluated over a Backstage entity (JSON), so that Portcullis
//! can resolve a CONDITIONAL decision itself when the caller passes the resource.

use portcullis_model::Condition;
use serde_json::Value;

/// Decides one catalog condition for `entity`; `None` for an unknown rule or parameters the rule
/// cannot use (treated as deny by callers).
pub fn evaluate_catalog_rule(condition: &Condition, entity: &Value) -> Option<bool> {
    let param = |name: &str| condition.params.get(name);
    let text = |name: &str| param(name).and_then(Value::as_str);
    let list = |name: &str| -> Option<Vec<&str>> {
        param(name)?.as_array()?.iter().map(Value::as_str).collect()
    };
    // As the catalog: with a value, the field equals it (or, for an array, contains it); without,
    // the field is truthy.
    let holds = |found: Option<&Value>, wanted: Option<&Value>| match (found, wanted) {
        (None, _) => false,
        (Some(v), None) => truthy(v),
        (Some(Value::Array(items)), Some(w)) => items.contains(w),
        (Some(v), Some(w)) => v == w,
    };
    match condition.rule.as_str() {
        "HAS_ANNOTATION" => {
            let key = text("annotation")?;
            let wanted = value_param(condition)?;
            Some(holds(
                entity
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(key)),
                wanted,
            ))
        }
        "HAS_LABEL" => {
            let key = text("label")?;
            Some(
                entity
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(key))
                    .is_some(),
            )
        }
        "HAS_METADATA" => {
            let key = text("key")?;
            let wanted = value_param(condition)?;
            Some(holds(
                entity.get("metadata").and_then(|m| dotted(m, key)),
                wanted,
            ))
        }
        "HAS_SPEC" => {
            let key = text("key")?;
            let wanted = value_param(condition)?;
            Some(holds(
                entity.get("spec").and_then(|s| dotted(s, key)),
                wanted,
            ))
        }
        "IS_ENTITY_KIND" => {
            let kinds = list("kinds")?;
            let kind = entity.get("kind").and_then(Value::as_str)?.to_lowercase();
            Some(kinds.iter().any(|k| k.to_lowercase() == kind))
        }
        "IS_ENTITY_OWNER" => {
            let claims = list("claims")?;
            let relations = entity.get("relations").and_then(Value::as_array);
            Some(relations.is_some_and(|rels| {
                rels.iter().any(|r| {
                    r.get("type").and_then(Value::as_str) == Some("ownedBy")
                        && r.get("targetRef")
                            .and_then(Value::as_str)
                            .is_some_and(|t| claims.contains(&t))
                })
            }))
        }
        _ => None,
    }
}

/// The optional `value` parameter: absent is `Some(None)`; a value the rule cannot compare
/// (an object or array) makes the condition undecidable (`None`).
fn value_param(condition: &Condition) -> Option<Option<&Value>> {
    match condition.params.get("value") {
        None | Some(Value::Null) => Some(None),
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => Some(Some(v)),
        Some(_) => None,
    }
}

/// A field by dotted path (`profile.email`), as lodash's `get` reads it.
fn dotted<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    object.get(path).or_else(|| {
        path.split('.').try_fold(object, |v, key| match v {
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            other => other.get(key),
        })
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cond(rule: &str, params: Value) -> Condition {
        Condition {
            rule: rule.into(),
            resource_type: "catalog-entity".into(),
            params: params.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn catalog_rules_table() {
        let entity = json!({
            "kind": "Component",
            "metadata": {"name": "svc", "annotations": {"keycloak.org/realm": "prod"}, "labels": {"tier": "1"}, "tags": ["java", "web"]},
            "spec": {"lifecycle": "production", "owner": "team-a", "profile": {"email": "a@x"}, "empty": ""},
            "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}]
        });
        let table = [
            (
                cond(
                    "HAS_ANNOTATION",
                    json!({"annotation": "keycloak.org/realm"}),
                ),
                Some(true),
            ),
            (
                cond(
                    "HAS_ANNOTATION",
                    json!({"annotation": "keycloak.org/realm", "value": "dev"}),
                ),
                Some(false),
            ),
            (
                cond("HAS_ANNOTATION", json!({"annotation": "x"})),
                Some(false),
            ),
            (cond("HAS_LABEL", json!({"label": "tier"})), Some(true)),
            (
                cond("HAS_METADATA", json!({"key": "name", "value": "svc"})),
                Some(true),
            ),
            (
                cond(
                    "HAS_SPEC",
                    json!({"key": "lifecycle", "value": "production"}),
                ),
                Some(true),
            ),
            (cond("HAS_SPEC", json!({"key": "type"})), Some(false)),
            (
                cond("HAS_SPEC", json!({"key": "profile.email"})),
                Some(true),
            ),
            (cond("HAS_SPEC", json!({"key": "empty"})), Some(false)),
            (
                cond("HAS_METADATA", json!({"key": "tags", "value": "java"})),
                Some(true),
            ),
            (
                cond("HAS_METADATA", json!({"key": "tags", "value": "go"})),
                Some(false),
            ),
            (
                cond(
                    "HAS_ANNOTATION",
                    json!({"annotation": "keycloak.org/realm", "value": {"x": 1}}),
                ),
                None,
            ),
            (
                cond(
                    "IS_ENTITY_OWNER",
                    json!({"claims": ["group:default/Team-A"]}),
                ),
                Some(false),
            ),
            (
                cond("IS_ENTITY_KIND", json!({"kinds": ["component", "API"]})),
                Some(true),
            ),
            (
                cond("IS_ENTITY_KIND", json!({"kinds": ["Group"]})),
                Some(false),
            ),
            (
                cond(
                    "IS_ENTITY_OWNER",
                    json!({"claims": ["group:default/team-a"]}),
                ),
                Some(true),
            ),
            (
                cond("IS_ENTITY_OWNER", json!({"claims": ["user:default/tom"]})),
                Some(false),
            ),
            (
                cond("IS_ENTITY_OWNER", json!({"claims": "group:default/team-a"})),
                None,
            ),
            (cond("HAS_ANNOTATION", json!({})), None),
            (cond("NO_SUCH_RULE", json!({})), None),
        ];
        for (c, want) in table {
            assert_eq!(evaluate_catalog_rule(&c, &entity), want, "{c:?}");
        }
    }
}
