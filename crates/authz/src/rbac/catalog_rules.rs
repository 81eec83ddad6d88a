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
    let matches_value = |found: Option<&Value>, wanted: Option<&str>| match (found, wanted) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(v), Some(w)) => v.as_str() == Some(w),
    };
    match condition.rule.as_str() {
        "HAS_ANNOTATION" => {
            let key = text("annotation")?;
            Some(matches_value(
                entity
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(key)),
                text("value"),
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
            Some(matches_value(
                entity.get("metadata").and_then(|m| m.get(key)),
                text("value"),
            ))
        }
        "HAS_SPEC" => {
            let key = text("key")?;
            Some(matches_value(
                entity.get("spec").and_then(|s| s.get(key)),
                text("value"),
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
                            .is_some_and(|t| claims.iter().any(|c| c.eq_ignore_ascii_case(t)))
                })
            }))
        }
        _ => None,
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
            "metadata": {"name": "svc", "annotations": {"keycloak.org/realm": "prod"}, "labels": {"tier": "1"}},
            "spec": {"lifecycle": "production", "owner": "team-a"},
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
