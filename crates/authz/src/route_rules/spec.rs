//! The configuration shape of a route (`routes:` in the YAML file) and its validation into a
//! [`Rule`]. Deserialising only checks the shape; [`compile_spec`] checks the values, so a spec
//! built in code is held to the same rules as one read from a file.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};

use super::{RondFlow, RouteRulesError, Rule, RuleSource, template_text};
use crate::access_expr::AccessExpr;
use crate::rbac::Action;
use crate::route_match::Methods;

/// One configured route: `{path, methods, auth, groups, policy, permission, action, backend}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The template: `/api/{tenant}/items`, `/static/*` (`:tenant` is read as `{tenant}`).
    pub path: String,
    /// The methods the route applies to; `ALL` when left out.
    #[serde(default)]
    pub methods: MethodsSpec,
    /// Whether a caller must be authenticated; `required` when left out.
    #[serde(default)]
    pub auth: Auth,
    /// An access expression over the caller's groups (`groups.admin && …`).
    pub groups: Option<String>,
    /// A Rego rule of package `policies` that must be true (`.` is read as `_`, as in Rönd).
    pub policy: Option<String>,
    /// An RBAC permission the caller must hold.
    pub permission: Option<String>,
    /// The permission's action (`create`, `read`, `update`, `delete`, `use`); only with
    /// `permission`.
    pub action: Option<String>,
    /// The backend the gateway forwards to; carried along, not interpreted here.
    pub backend: Option<String>,
    /// Whether `/a/` also reaches a route written `/a` (and the reverse), as Rönd's option.
    #[serde(default)]
    pub ignore_trailing_slash: bool,
    /// Give the policy Rönd's `input.user.resourcePermissionsMap` (Rönd's
    /// `enableResourcePermissionsMapOptimization`).
    #[serde(default)]
    pub resource_permissions_map: bool,
}

/// `methods:` as written: the string `ALL` or a list of methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MethodsSpec {
    /// Every method.
    #[default]
    All,
    /// These methods, as written (validated and upper-cased at compile).
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for MethodsSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MethodsVisitor;

        impl<'de> Visitor<'de> for MethodsVisitor {
            type Value = MethodsSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"ALL\" or a list of HTTP methods, like [GET, HEAD]")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<MethodsSpec, E> {
                if v.eq_ignore_ascii_case("all") {
                    Ok(MethodsSpec::All)
                } else {
                    // A lone method is refused rather than guessed: the list form says what
                    // is meant.
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MethodsSpec, A::Error> {
                let mut list = Vec::new();
                while let Some(method) = seq.next_element::<String>()? {
                    list.push(method);
                }
                Ok(MethodsSpec::List(list))
            }
        }

        deserializer.deserialize_any(MethodsVisitor)
    }
}

/// Whether a route needs an authenticated caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// An anonymous request is refused (401) before any other check.
    #[default]
    Required,
    /// Anonymous requests are let through to the other checks, as a caller without groups.
    Optional,
    /// The route is public: nothing else is checked (and nothing else may be set).
    None,
}

/// RFC 9110 `tchar`: what a method name may be made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A Rego rule name as Rönd queries it (`data.policies.<name>`): `.` becomes `_`, and what is
/// left must be an identifier, or the query would mean something else.
pub(super) fn rego_rule_name(written: &str) -> Result<String, String> {
    let name = written.replace('.', "_");
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "'{written}' is not a Rego rule name: letters, digits, '_' and '.' only, not starting \
             with a digit"
        ))
    }
}

/// Validates route `index` into a rule.
pub(super) fn compile_spec(index: usize, spec: &RouteSpec) -> Result<Rule, RouteRulesError> {
    let fail = |field: &str, message: String| RouteRulesError::Invalid {
        at: format!("routes[{index}].{field}"),
        path: (field != "path").then(|| spec.path.clone()),
        message,
    };
    let path = template_text(&spec.path);
    let methods = match &spec.methods {
        MethodsSpec::All => Methods::All,
        MethodsSpec::List(list) => {
            if list.is_empty() {
                return Err(fail(
                    "methods",
                    "the list is empty, so the route would match nothing; leave methods out \
                     for ALL"
                        .into(),
                ));
            }
            let mut upper: Vec<String> = Vec::with_capacity(list.len());
            for m in list {
                if m.eq_ignore_ascii_case("all") {
                    return Err(fail(
                        "methods",
                        "ALL is written alone (methods: ALL), not in a list".into(),
                    ));
                }
                if !is_token(m) {
                    return Err(fail("methods", format!("'{m}' is not an HTTP method")));
                }
                let m = m.to_ascii_uppercase();
                if upper.contains(&m) {
                    return Err(fail("methods", format!("{m} is listed twice")));
                }
                upper.push(m);
            }
            Methods::Only(upper)
        }
    };
    if spec.auth == Auth::None
        && let Some(field) = [
            ("groups", spec.groups.is_some()),
            ("policy", spec.policy.is_some()),
            ("permission", spec.permission.is_some()),
        ]
        .into_iter()
        .find_map(|(f, set)| set.then_some(f))
    {
        // A public route checks nothing; a check written beside it would be silently ignored.
        return Err(fail(
            field,
            "auth 'none' makes the route public, so this would never be checked; use auth \
             'optional' to check anonymous requests"
                .into(),
        ));
    }
    let groups = match &spec.groups {
        Some(text) => {
            let expr = AccessExpr::parse(text).map_err(|e| fail("groups", e.to_string()))?;
            Some((text.clone(), expr))
        }
        None => None,
    };
    let policy = match &spec.policy {
        Some(p) => Some(rego_rule_name(p).map_err(|m| fail("policy", m))?),
        None => None,
    };
    let action = match &spec.action {
        Some(a) if spec.permission.is_none() => {
            return Err(fail(
                "action",
                format!("the action '{a}' needs a permission beside it"),
            ));
        }
        Some(a) => Some(Action::parse(a).ok_or_else(|| {
            fail(
                "action",
                format!("'{a}' is not an action: expected create, read, update, delete or use"),
            )
        })?),
        None => None,
    };
    let permission = match &spec.permission {
        Some(p) if p.trim().is_empty() || p.chars().any(char::is_whitespace) => {
            return Err(fail(
                "permission",
                format!("'{p}' is not a permission name (empty or with spaces)"),
            ));
        }
        Some(p) => Some((p.clone(), action)),
        None => None,
    };
    if let Some(b) = &spec.backend
        && b.trim().is_empty()
    {
        return Err(fail("backend", "the backend name is empty".into()));
    }
    Ok(Rule {
        label: RuleSource::Config { index }.to_string(),
        source: RuleSource::Config { index },
        path,
        methods,
        auth: spec.auth,
        groups,
        policy,
        permission,
        backend: spec.backend.clone(),
        ignore_trailing_slash: spec.ignore_trailing_slash,
        no_policy: false,
        rond: spec.resource_permissions_map.then(|| RondFlow {
            resource_permissions_map: true,
            ..RondFlow::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<RouteSpec, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_shapes() {
        let s = spec(serde_json::json!({"path": "/a"})).unwrap();
        assert_eq!(s.methods, MethodsSpec::All);
        assert_eq!(s.auth, Auth::Required);
        assert!(!s.ignore_trailing_slash);
        let s = spec(serde_json::json!({"path": "/a", "methods": "all", "auth": "none"})).unwrap();
        assert_eq!((s.methods, s.auth), (MethodsSpec::All, Auth::None));
        let s = spec(serde_json::json!({"path": "/a", "methods": ["get", "POST"]})).unwrap();
        assert_eq!(
            s.methods,
            MethodsSpec::List(vec!["get".into(), "POST".into()])
        );
        let table = [
            (
                serde_json::json!({"path": "/a", "methods": "GET"}),
                "expected \"ALL\"",
            ),
            (
                serde_json::json!({"path": "/a", "methods": 3}),
                "expected \"ALL\"",
            ),
            (
                serde_json::json!({"path": "/a", "auth": "maybe"}),
                "unknown variant `maybe`",
            ),
            (
                serde_json::json!({"path": "/a", "group": "true"}),
                "unknown field `group`",
            ),
            (
                serde_json::json!({"methods": "ALL"}),
                "missing field `path`",
            ),
        ];
        for (json, want) in table {
            let err = spec(json.clone()).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn rule_names_follow_ronds_rewrite() {
        assert_eq!(rego_rule_name("allow.view").as_deref(), Ok("allow_view"));
        assert_eq!(rego_rule_name("_x1").as_deref(), Ok("_x1"));
        for bad in ["", "1a", "a-b", "a b", "data[\"x\"]", "é"] {
            assert!(rego_rule_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn method_tokens() {
        assert!(is_token("GET") && is_token("M-SEARCH") && is_token("PROPFIND"));
        assert!(!is_token("") && !is_token("GE T") && !is_token("GET/"));
    }
}
