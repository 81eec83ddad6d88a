//! A compiled route rule and its evaluation: a request must pass every check that is set.

use std::fmt;

use super::spec::Auth;
use crate::access_expr::{AccessContext, AccessExpr};
use crate::rbac::Action;
use crate::route_match::Methods;

/// Where a rule was defined, for error messages, the audit trail and explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// `routes[index]` of the configuration.
    Config {
        /// Its position in `routes:`.
        index: usize,
    },
    /// An operation of a backend's OpenAPI document.
    OpenApi {
        /// The document's position in the list given to `compile`.
        document: usize,
        /// The backend the document describes, if named.
        backend: Option<String>,
        /// The path as written in the document.
        path: String,
        /// The operation's key (`get`, …, or `all`).
        verb: String,
    },
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { index } => write!(f, "routes[{index}]"),
            Self::OpenApi {
                document,
                backend,
                path,
                verb,
            } => {
                write!(f, "openapi[{document}].paths[{path:?}].{verb}")?;
                if let Some(b) = backend {
                    write!(f, " (backend '{b}')")?;
                }
                Ok(())
            }
        }
    }
}

/// The rest of an x-rond (or x-permission) extension, carried along for the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RondFlow {
    /// `responseFlow.policyName` (`.` read as `_`): filters the backend's response.
    pub response_policy: Option<String>,
    /// `requestFlow.generateQuery`: the policy produces a row-filter query.
    pub generate_query: bool,
    /// `requestFlow.queryOptions.headerName`: the header the query is sent in.
    pub query_header: Option<String>,
    /// `requestFlow.preventBodyLoad`: the body is not given to the policy.
    pub prevent_body_load: bool,
    /// `options.enableResourcePermissionsMapOptimization`.
    pub resource_permissions_map: bool,
}

/// A compiled route rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(super) source: RuleSource,
    /// `source` as text, made once (every decision names it).
    pub(super) label: String,
    pub(super) path: String,
    pub(super) methods: Methods,
    pub(super) auth: Auth,
    pub(super) groups: Option<(String, AccessExpr)>,
    pub(super) policy: Option<String>,
    pub(super) permission: Option<(String, Option<Action>)>,
    pub(super) backend: Option<String>,
    pub(super) ignore_trailing_slash: bool,
    /// An OpenAPI operation without a policy: Rönd answers it with 403, never lets it through.
    pub(super) no_policy: bool,
    pub(super) rond: Option<RondFlow>,
}

/// The authenticated caller, as the checks see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleUser<'a> {
    /// The caller's groups.
    pub groups: &'a [String],
    /// The caller's permissions (the expression language's `permissions["x"]`).
    pub permissions: &'a [String],
}

/// What a rule is evaluated against.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleContext<'a> {
    /// The authenticated caller; `None` for an anonymous request.
    pub user: Option<RuleUser<'a>>,
    /// The request's client type (`client-type` header), if any.
    pub client_type: Option<&'a str>,
}

/// The checks a rule delegates: the caller's implementation knows the request and the principal.
pub trait RuleChecks {
    /// Whether Rego rule `rule_name` (of package `policies`) is true for this request.
    fn policy(&self, rule_name: &str) -> bool;
    /// Whether the caller holds RBAC `permission` with `action` (`None`: `use`).
    fn permission(&self, permission: &str, action: Option<Action>) -> bool;
}

/// Which check refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeniedBy {
    /// An OpenAPI operation declared without a policy (Rönd: "User is not allowed to request the
    /// API").
    NoPolicy,
    /// The `groups` expression is false.
    Groups,
    /// The caller lacks this RBAC permission.
    Permission(String),
    /// This Rego rule is not true.
    Policy(String),
}

/// The result of evaluating a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Every check that is set passed.
    Allow,
    /// The route needs an authenticated caller and the request has none (401).
    Unauthenticated,
    /// A check refused the request (403).
    Denied {
        /// The first check that failed.
        by: DeniedBy,
    },
}

impl RuleOutcome {
    /// The HTTP status the gateway answers with (200 when allowed).
    pub fn status(&self) -> u16 {
        match self {
            Self::Allow => 200,
            Self::Unauthenticated => 401,
            Self::Denied { .. } => 403,
        }
    }
}

impl Rule {
    /// Decides a request: auth first, then groups, permission and policy, each only if set.
    ///
    /// The checks run cheapest first (an in-memory expression, an RBAC hash lookup, then a Rego
    /// evaluation), so a request refused by a cheap check never costs a Rego evaluation; the
    /// first failure is the one reported.
    pub fn evaluate(
        &self,
        ctx: &RuleContext<'_>,
        checks: &(impl RuleChecks + ?Sized),
    ) -> RuleOutcome {
        let denied = |by| RuleOutcome::Denied { by };
        match (self.auth, ctx.user) {
            // Compile refuses checks beside `none`, so there is nothing else to run.
            (Auth::None, _) => return RuleOutcome::Allow,
            (Auth::Required, None) => return RuleOutcome::Unauthenticated,
            _ => {}
        }
        if self.no_policy {
            return denied(DeniedBy::NoPolicy);
        }
        if let Some((_, expr)) = &self.groups {
            // An anonymous caller (auth optional) is a caller without groups or permissions.
            let user = ctx.user.unwrap_or_default();
            let access = AccessContext {
                groups: user.groups,
                permissions: user.permissions,
                client_type: ctx.client_type,
            };
            if !expr.allows(&access) {
                return denied(DeniedBy::Groups);
            }
        }
        if let Some((name, action)) = &self.permission
            && !checks.permission(name, *action)
        {
            return denied(DeniedBy::Permission(name.clone()));
        }
        if let Some(name) = &self.policy
            && !checks.policy(name)
        {
            return denied(DeniedBy::Policy(name.clone()));
        }
        RuleOutcome::Allow
    }

    /// Where the rule was defined.
    pub fn source(&self) -> &RuleSource {
        &self.source
    }

    /// Where the rule was defined, as text (`routes[2]`, `openapi[0].paths["/x"].get`).
    pub fn source_label(&self) -> &str {
        &self.label
    }

    /// The path template (`:p` segments written as `{p}`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The methods it applies to.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// Whether an authenticated caller is needed.
    pub fn auth(&self) -> Auth {
        self.auth
    }

    /// The `groups` expression as written.
    pub fn groups(&self) -> Option<&str> {
        self.groups.as_ref().map(|(text, _)| text.as_str())
    }

    /// Whether the `groups` expression compares the request's client type.
    pub fn reads_client_type(&self) -> bool {
        self.groups
            .as_ref()
            .is_some_and(|(_, expr)| expr.reads_client_type())
    }

    /// The Rego rule that must be true (already with `.` rewritten to `_`).
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// The RBAC permission and action that must be held.
    pub fn permission(&self) -> Option<(&str, Option<Action>)> {
        self.permission.as_ref().map(|(p, a)| (p.as_str(), *a))
    }

    /// The backend the gateway forwards to.
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// Whether a trailing slash is ignored when matching this rule.
    pub fn ignore_trailing_slash(&self) -> bool {
        self.ignore_trailing_slash
    }

    /// Whether this is an OpenAPI operation without a policy (always 403).
    pub fn has_no_policy(&self) -> bool {
        self.no_policy
    }

    /// The rest of the Rönd extension (response policy, row filter), for OpenAPI rules.
    pub fn rond(&self) -> Option<&RondFlow> {
        self.rond.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        policy: bool,
        permission: bool,
    }

    impl RuleChecks for Fixed {
        fn policy(&self, _: &str) -> bool {
            self.policy
        }
        fn permission(&self, _: &str, _: Option<Action>) -> bool {
            self.permission
        }
    }

    fn rule(auth: Auth) -> Rule {
        Rule {
            label: "routes[0]".into(),
            source: RuleSource::Config { index: 0 },
            path: "/a".into(),
            methods: Methods::All,
            auth,
            groups: None,
            policy: None,
            permission: None,
            backend: None,
            ignore_trailing_slash: false,
            no_policy: false,
            rond: None,
        }
    }

    #[test]
    fn the_first_failing_check_is_reported_in_order() {
        let groups = vec!["ops".to_string()];
        let ctx = RuleContext {
            user: Some(RuleUser {
                groups: &groups,
                permissions: &[],
            }),
            client_type: None,
        };
        let mut r = rule(Auth::Required);
        r.groups = Some(("groups.admin".into(), AccessExpr::InGroup("admin".into())));
        r.permission = Some(("p".into(), None));
        r.policy = Some("x".into());
        let none = Fixed {
            policy: false,
            permission: false,
        };
        assert_eq!(
            r.evaluate(&ctx, &none),
            RuleOutcome::Denied {
                by: DeniedBy::Groups
            }
        );
        r.groups = None;
        assert_eq!(
            r.evaluate(&ctx, &none),
            RuleOutcome::Denied {
                by: DeniedBy::Permission("p".into())
            }
        );
        let dyn_checks: &dyn RuleChecks = &Fixed {
            policy: true,
            permission: true,
        };
        assert_eq!(r.evaluate(&ctx, dyn_checks), RuleOutcome::Allow);
        assert_eq!(r.evaluate(&ctx, dyn_checks).status(), 200);
    }

    #[test]
    fn sources_name_themselves() {
        assert_eq!(RuleSource::Config { index: 3 }.to_string(), "routes[3]");
        let s = RuleSource::OpenApi {
            document: 1,
            backend: Some("users".into()),
            path: "/u/{id}".into(),
            verb: "get".into(),
        };
        assert_eq!(
            s.to_string(),
            "openapi[1].paths[\"/u/{id}\"].get (backend 'users')"
        );
    }
}
