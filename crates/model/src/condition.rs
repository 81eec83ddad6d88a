//! Conditional criteria of the Backstage permission framework: a rule with parameters, or
//! `allOf` / `anyOf` / `not` of criteria, one criterion per level.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Deepest nesting of criteria accepted.
pub const MAX_DEPTH: usize = 12;
/// Most nodes (criteria and conditions) in one tree.
pub const MAX_NODES: usize = 256;
/// Most items in one `allOf` / `anyOf` list.
pub const MAX_LIST: usize = 64;

/// One rule of a plugin applied with parameters, e.g. `IS_ENTITY_OWNER` with `claims`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Rule name.
    pub rule: String,
    /// The resource type the rule applies to.
    pub resource_type: String,
    /// Parameters of the rule.
    pub params: Map<String, Value>,
}

/// A tree of conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum Criteria {
    /// A single condition.
    Condition(Condition),
    /// Every item must hold.
    AllOf(Vec<Criteria>),
    /// At least one item must hold.
    AnyOf(Vec<Criteria>),
    /// The item must not hold.
    Not(Box<Criteria>),
}

impl Serialize for Criteria {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Condition(c) => c.serialize(s),
            Self::AllOf(items) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("allOf", items)?;
                m.end()
            }
            Self::AnyOf(items) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("anyOf", items)?;
                m.end()
            }
            Self::Not(item) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("not", item)?;
                m.end()
            }
        }
    }
}

/// Why a criteria document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CriteriaError(pub String);

impl Criteria {
    /// Reads and checks criteria from JSON: one criterion per level, at most 12 levels, 256
    /// nodes and 64 items per list; conditions need `rule` and `resourceType`, and `params` must
    /// be an object when present.
    pub fn from_json(value: &Value) -> Result<Self, CriteriaError> {
        let mut nodes = 0;
        Self::read(value, 1, &mut nodes, "conditions")
    }

    fn read(
        value: &Value,
        depth: usize,
        nodes: &mut usize,
        at: &str,
    ) -> Result<Self, CriteriaError> {
        if depth > MAX_DEPTH {
            return Err(CriteriaError(format!(
                "{at}: criteria are nested deeper than {MAX_DEPTH} levels"
            )));
        }
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(CriteriaError(format!(
                "conditions: more than {MAX_NODES} criteria and conditions in one tree"
            )));
        }
        let Value::Object(obj) = value else {
            return Err(CriteriaError(format!("{at}: must be an object")));
        };
        let criteria: Vec<&str> = ["allOf", "anyOf", "not", "rule"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        match criteria.as_slice() {
            [] => Err(CriteriaError(format!(
                "{at}: must have one of 'rule', 'allOf', 'anyOf' or 'not'"
            ))),
            [_, _, ..] => Err(CriteriaError(format!(
                "{at}: has {} at the same level; put one criterion per level and nest the others",
                criteria.join(" and ")
            ))),
            ["not"] => {
                Self::only_keys(obj, &["not"], at)?;
                Ok(Self::Not(Box::new(Self::read(
                    &obj["not"],
                    depth + 1,
                    nodes,
                    &format!("{at}.not"),
                )?)))
            }
            [list @ ("allOf" | "anyOf")] => {
                Self::only_keys(obj, &[list], at)?;
                let Value::Array(items) = &obj[*list] else {
                    return Err(CriteriaError(format!("{at}.{list}: must be an array")));
                };
                if items.is_empty() {
                    return Err(CriteriaError(format!("{at}.{list}: must not be empty")));
                }
                if items.len() > MAX_LIST {
                    return Err(CriteriaError(format!(
                        "{at}.{list}: has more than {MAX_LIST} items"
                    )));
                }
                let read = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Self::read(item, depth + 1, nodes, &format!("{at}.{list}[{i}]"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if *list == "allOf" {
                    Self::AllOf(read)
                } else {
                    Self::AnyOf(read)
                })
            }
            _ => {
                Self::only_keys(obj, &["rule", "resourceType", "params"], at)?;
                let text = |key: &str| match obj.get(key) {
                    Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(CriteriaError(format!(
                        "{at}.{key}: must be a non-empty string"
                    ))),
                };
                let params = match obj.get("params") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(p)) => p.clone(),
                    Some(_) => {
                        return Err(CriteriaError(format!("{at}.params: must be an object")));
                    }
                };
                Ok(Self::Condition(Condition {
                    rule: text("rule")?,
                    resource_type: text("resourceType")?,
                    params,
                }))
            }
        }
    }

    fn only_keys(
        obj: &Map<String, Value>,
        allowed: &[&str],
        at: &str,
    ) -> Result<(), CriteriaError> {
        match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(extra) => Err(CriteriaError(format!("{at}: unexpected field '{extra}'"))),
            None => Ok(()),
        }
    }

    /// The same criteria with the aliases `$currentUser` and `$ownerRefs` replaced in every
    /// parameter (as a value or inside an array).
    pub fn with_aliases(&self, current_user: &str, owner_refs: &[String]) -> Self {
        match self {
            Self::Condition(c) => {
                let params = c
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), replace_alias(v, current_user, owner_refs)))
                    .collect();
                Self::Condition(Condition {
                    params,
                    ..c.clone()
                })
            }
            Self::AllOf(items) => Self::AllOf(
                items
                    .iter()
                    .map(|i| i.with_aliases(current_user, owner_refs))
                    .collect(),
            ),
            Self::AnyOf(items) => Self::AnyOf(
                items
                    .iter()
                    .map(|i| i.with_aliases(current_user, owner_refs))
                    .collect(),
            ),
            Self::Not(item) => Self::Not(Box::new(item.with_aliases(current_user, owner_refs))),
        }
    }

    /// Evaluates the tree with `rule` deciding single conditions; a condition `rule` cannot
    /// decide (unknown rule, bad parameters) makes the whole tree undecided (`None`), which
    /// callers treat as deny.
    pub fn evaluate(&self, rule: &impl Fn(&Condition) -> Option<bool>) -> Option<bool> {
        match self {
            Self::Condition(c) => rule(c),
            Self::AllOf(items) => {
                let mut all = true;
                for item in items {
                    all &= item.evaluate(rule)?;
                }
                Some(all)
            }
            Self::AnyOf(items) => {
                let mut any = false;
                for item in items {
                    any |= item.evaluate(rule)?;
                }
                Some(any)
            }
            Self::Not(item) => item.evaluate(rule).map(|b| !b),
        }
    }
}

fn replace_alias(value: &Value, current_user: &str, owner_refs: &[String]) -> Value {
    match value {
        Value::String(s) if s == "$currentUser" => Value::String(current_user.to_owned()),
        // As the reference: `$ownerRefs` expands inside arrays only.
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if s == "$currentUser" => {
                        out.push(Value::String(current_user.to_owned()))
                    }
                    Value::String(s) if s == "$ownerRefs" => {
                        out.extend(owner_refs.iter().cloned().map(Value::String))
                    }
                    other => out.push(other.clone()),
                }
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn owner(claims: Value) -> Value {
        json!({"rule": "IS_ENTITY_OWNER", "resourceType": "catalog-entity", "params": {"claims": claims}})
    }

    #[test]
    fn reads_and_writes_the_wire_shape() {
        let doc = json!({"anyOf": [owner(json!(["group:default/team-a"])), {"not": {"rule": "IS_ENTITY_KIND", "resourceType": "catalog-entity", "params": {"kinds": ["Api"]}}}]});
        let c = Criteria::from_json(&doc).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), doc);
    }

    #[test]
    fn refuses_what_the_rules_forbid() {
        let table = [
            (
                json!({"anyOf": [owner(json!([]))], "not": owner(json!([]))}),
                "anyOf and not at the same level",
            ),
            (json!({"allOf": []}), "must not be empty"),
            (
                json!({"rule": "X"}),
                "conditions.resourceType: must be a non-empty string",
            ),
            (
                json!({"rule": "X", "resourceType": "r", "params": 3}),
                "params: must be an object",
            ),
            (
                json!({"rule": "X", "resourceType": "r", "extra": 1}),
                "unexpected field 'extra'",
            ),
            (json!([]), "must be an object"),
            (json!({}), "must have one of"),
            (
                json!({"anyOf": vec![owner(json!([])); 65]}),
                "more than 64 items",
            ),
        ];
        for (doc, want) in table {
            let err = Criteria::from_json(&doc).unwrap_err();
            assert!(err.0.contains(want), "{doc}: {err}");
        }
        let mut deep = owner(json!([]));
        for _ in 0..12 {
            deep = json!({ "not": deep });
        }
        assert!(
            Criteria::from_json(&deep)
                .unwrap_err()
                .0
                .contains("deeper than 12")
        );
        let wide = json!({"anyOf": (0..5).map(|_| json!({"anyOf": vec![owner(json!([])); 60]})).collect::<Vec<_>>()});
        assert!(
            Criteria::from_json(&wide)
                .unwrap_err()
                .0
                .contains("more than 256")
        );
    }

    #[test]
    fn aliases_are_replaced_everywhere() {
        let doc = json!({"allOf": [owner(json!(["$currentUser", "group:default/x"])), owner(json!(["$ownerRefs"])), owner(json!("$currentUser"))]});
        let c = Criteria::from_json(&doc).unwrap().with_aliases(
            "user:default/tom",
            &["user:default/tom".into(), "group:default/team-a".into()],
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v["allOf"][0]["params"]["claims"],
            json!(["user:default/tom", "group:default/x"])
        );
        assert_eq!(
            v["allOf"][1]["params"]["claims"],
            json!(["user:default/tom", "group:default/team-a"])
        );
        assert_eq!(v["allOf"][2]["params"]["claims"], json!("user:default/tom"));
    }

    #[test]
    fn evaluation_follows_the_criteria_and_unknown_rules_undecide() {
        let t = json!({"rule": "T", "resourceType": "r"});
        let f = json!({"rule": "F", "resourceType": "r"});
        let u = json!({"rule": "U", "resourceType": "r"});
        let rule = |c: &Condition| match c.rule.as_str() {
            "T" => Some(true),
            "F" => Some(false),
            _ => None,
        };
        let table = [
            (json!({"allOf": [t, t]}), Some(true)),
            (json!({"allOf": [t, f]}), Some(false)),
            (json!({"anyOf": [f, t]}), Some(true)),
            (json!({"not": f}), Some(true)),
            (json!({"not": {"anyOf": [f, f]}}), Some(true)),
            (json!({"anyOf": [t, u]}), None),
        ];
        for (doc, want) in table {
            assert_eq!(
                Criteria::from_json(&doc).unwrap().evaluate(&rule),
                want,
                "{doc}"
            );
        }
    }
}
