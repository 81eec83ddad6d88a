//! Route rules: which checks a request must pass, chosen by its method and path. Rules come
//! from the configuration (`routes:`, see [`RouteSpec`]) and from backends' OpenAPI documents
//! with Rönd's `x-rond` / `x-permission` extensions (see the `openapi` submodule for Rönd's
//! reading of them). Everything here is pure: the caller hands over the parsed documents and
//! implements the Rego and RBAC checks ([`RuleChecks`]).
//!
//! Matching: the path is normalised once ([`normalize_path`]), then the most specific rule for the
//! method wins ([`RouteTable`]'s order: no wildcard, more static segments, more segments; ties
//! go to the rule whose static segments come first, then to the template text). Matching is
//! case-sensitive, and a trailing slash matters unless the rule ignores it (or ends in `*`).
//! A rule for GET also decides HEAD unless a rule of the same shape names HEAD itself. Two rules
//! that accept the same paths for the same method are refused at compile.

mod openapi;
mod rule;
mod spec;

use std::collections::HashMap;

use serde_json::{Value, json};

pub use rule::{
    DeniedBy, RondFlow, Rule, RuleChecks, RuleContext, RuleOutcome, RuleSource, RuleUser,
};
pub use spec::{Auth, MethodsSpec, RouteSpec};

use crate::route_match::{Methods, PathError, RouteTable, Template, normalize_path};

/// The message of Rönd's 404 for a request no rule describes.
pub const NO_ROUTE_MESSAGE: &str = "The request doesn't match any known API";
/// The message of Rönd's 403 when a check refuses the request.
pub const NO_PERMISSIONS_MESSAGE: &str = concat!(
    "You do not have permissions to access this feature, ",
    "contact the administrator for more information."
);
/// The message of Rönd's 403 for an operation declared without a policy.
pub const NOT_ALLOWED_MESSAGE: &str = "User is not allowed to request the API";
/// The technical error of Rönd's 403 when a check refuses the request.
const POLICY_FAILED: &str = "RBAC policy evaluation failed";

/// Route rules that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRulesError {
    /// A field is wrong.
    #[error("{at}: {message}{}", route_suffix(path))]
    Invalid {
        /// The field: `routes[2].groups`, `openapi[0].paths["/a"].get.x-rond`.
        at: String,
        /// The route's path, when `at` does not show it.
        path: Option<String>,
        /// What is wrong (for an expression, with its column).
        message: String,
    },
    /// Two rules accept the same requests.
    #[error("{method} {path} is defined twice: by {first} and by {second}")]
    Duplicate {
        /// A method both rules apply to (`ALL` when both apply to every method).
        method: String,
        /// The path of the second rule, as written.
        path: String,
        /// The rule defined first.
        first: String,
        /// The rule defined second.
        second: String,
    },
}

/// ` (route '/a')` after an error whose location does not show the path.
fn route_suffix(path: &Option<String>) -> String {
    path.as_ref()
        .map(|p| format!(" (route '{p}')"))
        .unwrap_or_default()
}

/// Why a request has no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteLookupError {
    /// The path does not normalise (bad escape, `%2F`, control character): a 400.
    #[error("invalid request path: {0}")]
    BadPath(#[from] PathError),
    /// No rule for this method and path: a 404 [`NO_ROUTE_MESSAGE`].
    #[error("{NO_ROUTE_MESSAGE}")]
    NoRoute,
}

impl RouteLookupError {
    /// The HTTP status the gateway answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadPath(_) => 400,
            Self::NoRoute => 404,
        }
    }
}

/// The rule a request matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched<'a> {
    /// The rule.
    pub rule: &'a Rule,
    /// The normalised path: the one decided on, and so the one to forward.
    pub path: String,
    /// The template's parameters, percent-decoded.
    pub params: HashMap<String, String>,
}

/// The compiled rules, ready for lookups.
#[derive(Debug, Clone)]
pub struct RouteRules {
    rules: Vec<Rule>,
    /// Rules a path with a trailing slash may reach (the tables match segments only; which
    /// table is asked is how a trailing slash is decided, rule by rule).
    with_slash: RouteTable<usize>,
    /// Rules a path without a trailing slash may reach.
    without_slash: RouteTable<usize>,
    /// Some rule names a Rego policy (only then does a request's input need its headers).
    any_policy: bool,
    /// Some rule's `groups` expression compares the client type (a request header).
    any_client_type: bool,
}

impl Default for RouteRules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            with_slash: RouteTable::new(true),
            without_slash: RouteTable::new(true),
            any_policy: false,
            any_client_type: false,
        }
    }
}

/// Reads Rönd's `:name` segments as `{name}` (Rönd's `ConvertPathVariablesToBrackets`), so both
/// spellings mean a parameter; anything else is kept as written.
pub(crate) fn template_text(written: &str) -> String {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    written
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) if word(name) => format!("{{{name}}}"),
            _ => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A segment of a template, with parameter names erased: two templates with the same shape
/// accept the same paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Seg {
    Static(String),
    Param,
}

/// A rule's template with what duplicate detection and ordering need.
struct Compiled {
    template: Template,
    shape: Vec<Seg>,
    wildcard: bool,
    /// Accepts paths ending in a slash / not ending in one.
    slash: bool,
    plain: bool,
}

fn compile_template(rule: &Rule) -> Result<Compiled, RouteRulesError> {
    let fail = |message: String| RouteRulesError::Invalid {
        at: match &rule.source {
            RuleSource::Config { index } => format!("routes[{index}].path"),
            other => other.to_string(),
        },
        path: None,
        message,
    };
    let template = Template::parse(&rule.path).map_err(|e| fail(e.to_string()))?;
    let (body, wildcard) = match rule.path.strip_suffix('*') {
        Some(body) => (body, true),
        None => (rule.path.as_str(), false),
    };
    // The same normalisation `Template::parse` applied: it keeps the final slash, which the
    // template's segments do not record.
    let normal = normalize_path(if body.is_empty() { "/" } else { body })
        .map_err(|e| fail(e.to_string()))?;
    let trailing = normal.len() > 1 && normal.ends_with('/');
    let shape = normal
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                Seg::Param
            } else {
                Seg::Static(s.to_owned())
            }
        })
        .collect();
    let lax = wildcard || rule.ignore_trailing_slash;
    Ok(Compiled {
        template,
        shape,
        wildcard,
        slash: lax || trailing,
        plain: lax || !trailing,
    })
}

/// A method both sets contain, if any.
fn shared_method(a: &Methods, b: &Methods) -> Option<String> {
    match (a, b) {
        (Methods::All, Methods::All) => Some("ALL".into()),
        (Methods::All, Methods::Only(list)) | (Methods::Only(list), Methods::All) => {
            list.first().cloned()
        }
        (Methods::Only(x), Methods::Only(y)) => x.iter().find(|m| y.contains(m)).cloned(),
    }
}

/// Whether `m` names `method` explicitly (`ALL` does not count).
fn lists(m: &Methods, method: &str) -> bool {
    matches!(m, Methods::Only(list) if list.iter().any(|x| x == method))
}

fn label(rule: &Rule) -> String {
    match &rule.source {
        RuleSource::Config { index } => format!("routes[{index}] ('{}')", rule.path),
        other => other.to_string(),
    }
}

impl RouteRules {
    /// Compiles the configured routes and the rules of each `(backend, OpenAPI document)`.
    pub fn compile(
        specs: &[RouteSpec],
        openapi: &[(Option<String>, Value)],
    ) -> Result<Self, RouteRulesError> {
        let mut rules = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            rules.push(spec::compile_spec(index, spec)?);
        }
        for (document, (backend, doc)) in openapi.iter().enumerate() {
            rules.extend(openapi::rules_from_openapi(
                document,
                backend.as_deref(),
                doc,
            )?);
        }
        let compiled = rules
            .iter()
            .map(compile_template)
            .collect::<Result<Vec<_>, _>>()?;
        // Rules that accept the same paths: same shape, and a trailing-slash spelling in common.
        let mut by_shape: HashMap<(&[Seg], bool), Vec<usize>> = HashMap::new();
        for (i, c) in compiled.iter().enumerate() {
            by_shape.entry((&c.shape, c.wildcard)).or_default().push(i);
        }
        let overlap = |i: usize, j: usize| {
            let (a, b) = (&compiled[i], &compiled[j]);
            (a.slash && b.slash) || (a.plain && b.plain)
        };
        // HEAD is GET without a body (RFC 9110, 9.3.2) and backends answer it with their GET
        // handler; a GET rule therefore covers HEAD, or a HEAD request would fall through to a
        // less specific rule. A HEAD rule of the same shape keeps its own decision.
        let implied: Vec<usize> = by_shape
            .values()
            .flat_map(|bucket| bucket.iter().map(move |&i| (bucket, i)))
            .filter(|&(bucket, i)| {
                lists(&rules[i].methods, "GET")
                    && !lists(&rules[i].methods, "HEAD")
                    && !bucket
                        .iter()
                        .any(|&j| j != i && overlap(i, j) && lists(&rules[j].methods, "HEAD"))
            })
            .map(|(_, i)| i)
            .collect();
        for i in implied {
            if let Methods::Only(list) = &mut rules[i].methods {
                list.push("HEAD".into());
            }
        }
        for (i, c) in compiled.iter().enumerate() {
            let Some(bucket) = by_shape.get(&(c.shape.as_slice(), c.wildcard)) else {
                continue;
            };
            for &j in bucket.iter().take_while(|&&j| j < i) {
                if !overlap(i, j) {
                    continue;
                }
                if let Some(method) = shared_method(&rules[j].methods, &rules[i].methods) {
                    return Err(RouteRulesError::Duplicate {
                        method,
                        path: rules[i].path.clone(),
                        first: label(&rules[j]),
                        second: label(&rules[i]),
                    });
                }
            }
        }
        // Insertion order breaks `RouteTable`'s specificity ties (its sort is stable): static
        // segments earlier in the path first, as a router's trie would, then the text.
        let mut order: Vec<usize> = (0..rules.len()).collect();
        order.sort_by(|&a, &b| {
            let kinds = |i: usize| -> Vec<bool> {
                compiled[i]
                    .shape
                    .iter()
                    .map(|s| matches!(s, Seg::Param))
                    .collect()
            };
            kinds(a)
                .cmp(&kinds(b))
                .then_with(|| rules[a].path.cmp(&rules[b].path))
                .then(a.cmp(&b))
        });
        let mut out = Self::default();
        for i in order {
            let c = &compiled[i];
            if c.slash {
                out.with_slash
                    .add(c.template.clone(), rules[i].methods.clone(), i);
            }
            if c.plain {
                out.without_slash
                    .add(c.template.clone(), rules[i].methods.clone(), i);
            }
        }
        out.any_policy = rules.iter().any(|r| r.policy().is_some());
        out.any_client_type = rules.iter().any(Rule::reads_client_type);
        out.rules = rules;
        Ok(out)
    }

    /// Whether some rule names a Rego policy.
    pub fn any_policy(&self) -> bool {
        self.any_policy
    }

    /// Whether some rule's `groups` expression compares the client type.
    pub fn any_client_type(&self) -> bool {
        self.any_client_type
    }

    /// The rule for a request: `raw_path` is the request target's path (a query string is cut
    /// off), normalised here once.
    pub fn find(&self, method: &str, raw_path: &str) -> Result<Matched<'_>, RouteLookupError> {
        let raw = raw_path.split_once('?').map_or(raw_path, |(p, _)| p);
        let path = normalize_path(raw)?;
        let table = if path.len() > 1 && path.ends_with('/') {
            &self.with_slash
        } else {
            &self.without_slash
        };
        let found = table.find(method, &path).ok_or(RouteLookupError::NoRoute)?;
        let rule = self
            .rules
            .get(*found.route)
            .ok_or(RouteLookupError::NoRoute)?;
        Ok(Matched {
            rule,
            params: found.params,
            path,
        })
    }

    /// Every rule, configured ones first, in definition order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every Rego rule the rules name (request and response policies), sorted, without
    /// repeats: to check at load time that the policies define them.
    pub fn policies(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .flat_map(|r| {
                r.policy()
                    .into_iter()
                    .chain(r.rond().and_then(|f| f.response_policy.as_deref()))
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Rönd's 404 body: `{"error": "not found oas definition: GET /x", "message", "statusCode"}`.
pub fn not_found_body(method: &str, path: &str) -> Value {
    json!({
        "error": format!("not found oas definition: {method} {path}"),
        "message": NO_ROUTE_MESSAGE,
        "statusCode": 404,
    })
}

/// Rönd's 403 body. The check that refused is not named: the audit trail has it, the caller
/// learns no more than from Rönd.
pub fn forbidden_body(by: &DeniedBy) -> Value {
    let (error, message) = match by {
        DeniedBy::NoPolicy => ("", NOT_ALLOWED_MESSAGE),
        DeniedBy::Groups | DeniedBy::Permission(_) | DeniedBy::Policy(_) => {
            (POLICY_FAILED, NO_PERMISSIONS_MESSAGE)
        }
    };
    json!({"error": error, "message": message, "statusCode": 403})
}

/// The 400 body for a path that does not normalise, in the same shape.
pub fn bad_path_body(err: &PathError) -> Value {
    json!({
        "error": err.to_string(),
        "message": "The request path is not valid",
        "statusCode": 400,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_parameters_become_braces() {
        let table = [
            ("/a/:id/b", "/a/{id}/b"),
            ("/a/:id", "/a/{id}"),
            ("/:x_1/*", "/{x_1}/*"),
            ("/a/:", "/a/:"),
            ("/a/:id.json", "/a/:id.json"),
            ("/a/b:c", "/a/b:c"),
            ("/a/{id}", "/a/{id}"),
        ];
        for (written, want) in table {
            assert_eq!(template_text(written), want, "{written}");
        }
    }

    #[test]
    fn shared_methods() {
        let only = |l: &[&str]| Methods::Only(l.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            shared_method(&Methods::All, &Methods::All).as_deref(),
            Some("ALL")
        );
        assert_eq!(
            shared_method(&Methods::All, &only(&["PUT"])).as_deref(),
            Some("PUT")
        );
        assert_eq!(
            shared_method(&only(&["GET", "POST"]), &only(&["POST"])).as_deref(),
            Some("POST")
        );
        assert_eq!(shared_method(&only(&["GET"]), &only(&["POST"])), None);
    }

    #[test]
    fn a_trailing_slash_is_decided_rule_by_rule() {
        let spec = |path: &str, lax: bool| RouteSpec {
            path: path.into(),
            methods: MethodsSpec::All,
            auth: Auth::None,
            groups: None,
            policy: None,
            permission: None,
            action: None,
            backend: Some(path.into()),
            ignore_trailing_slash: lax,
            resource_permissions_map: false,
        };
        let rules = RouteRules::compile(
            &[
                spec("/strict", false),
                spec("/strict-slash/", false),
                spec("/lax", true),
                spec("/tree/*", false),
            ],
            &[],
        )
        .unwrap();
        let table = [
            ("/strict", Some("/strict")),
            ("/strict/", None),
            ("/strict-slash/", Some("/strict-slash/")),
            ("/strict-slash", None),
            ("/lax", Some("/lax")),
            ("/lax/", Some("/lax")),
            ("/tree/", Some("/tree/*")),
            ("/tree/x/", Some("/tree/*")),
        ];
        for (path, want) in table {
            let got = rules.find("GET", path).ok().and_then(|m| m.rule.backend());
            assert_eq!(got, want, "{path}");
        }
    }

    /// A method spelt in lower case is still the method a rule names: a `delete` must not
    /// slip past a rule for `DELETE` to a broader one behind it.
    #[test]
    fn a_method_in_any_case_meets_the_rule_for_it() {
        let spec = |path: &str, methods: MethodsSpec, backend: &str| RouteSpec {
            path: path.into(),
            methods,
            auth: Auth::None,
            groups: None,
            policy: None,
            permission: None,
            action: None,
            backend: Some(backend.into()),
            ignore_trailing_slash: false,
            resource_permissions_map: false,
        };
        let rules = RouteRules::compile(
            &[
                spec(
                    "/jobs/{id}",
                    MethodsSpec::List(vec!["DELETE".into()]),
                    "deleting",
                ),
                spec("/jobs/*", MethodsSpec::All, "any"),
            ],
            &[],
        )
        .unwrap();
        for (method, want) in [
            ("DELETE", "deleting"),
            ("delete", "deleting"),
            ("Delete", "deleting"),
            ("GET", "any"),
        ] {
            let got = rules
                .find(method, "/jobs/1")
                .ok()
                .and_then(|m| m.rule.backend());
            assert_eq!(got, Some(want), "{method}");
        }
    }
}
