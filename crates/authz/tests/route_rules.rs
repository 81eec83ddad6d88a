//! Route rules as tables: configuration errors, Rönd's OpenAPI extensions and path rules, hostile
//! spellings of paths, every combination of checks, and the 404/403 bodies.

use std::cell::RefCell;

use portcullis_authz::rbac::Action;
use portcullis_authz::route_match::PathError;
use portcullis_authz::route_rules::{
    Auth, DeniedBy, RouteLookupError, RouteRules, RouteRulesError, RouteSpec, RuleChecks,
    RuleContext, RuleOutcome, RuleUser, bad_path_body, forbidden_body, not_found_body,
};
use serde_json::{Value, json};

fn specs(routes: Value) -> Result<Vec<RouteSpec>, String> {
    serde_json::from_value(routes).map_err(|e| e.to_string())
}

fn compile(routes: Value) -> Result<RouteRules, String> {
    RouteRules::compile(&specs(routes)?, &[]).map_err(|e| e.to_string())
}

#[test]
fn configuration_errors_name_the_route_and_the_field() {
    let table: Vec<(Value, &str)> = vec![
        (
            json!([{"path": "/a"}, {"path": "/b"}, {"path": "/c", "groups": "groups.admin || "}]),
            "routes[2].groups: column 17: expected an expression, found the end (route '/c')",
        ),
        (
            json!([{"path": "/c", "groups": "admin"}]),
            "routes[0].groups: column 1: unknown name 'admin': expected true, false, groups, \
             permissions or clientType (route '/c')",
        ),
        (
            json!([{"path": "/c", "groups": "groups.admin & groups.ops"}]),
            "routes[0].groups: column 14: '&' must be doubled ('&&') (route '/c')",
        ),
        (
            json!([{"path": "/c", "policy": "allow-all"}]),
            "routes[0].policy: 'allow-all' is not a Rego rule name: letters, digits, '_' and '.' \
             only, not starting with a digit (route '/c')",
        ),
        (
            json!([{"path": "/c", "action": "read"}]),
            "routes[0].action: the action 'read' needs a permission beside it (route '/c')",
        ),
        (
            json!([{"path": "/c", "permission": "catalog.entity.read", "action": "write"}]),
            "routes[0].action: 'write' is not an action: expected create, read, update, delete \
             or use (route '/c')",
        ),
        (
            json!([{"path": "/c", "permission": " "}]),
            "routes[0].permission: ' ' is not a permission name (empty or with spaces) \
             (route '/c')",
        ),
        (
            json!([{"path": "/c", "auth": "none", "policy": "allow_all"}]),
            "routes[0].policy: auth 'none' makes the route public, so this would never be \
             checked; use auth 'optional' to check anonymous requests (route '/c')",
        ),
        (
            json!([{"path": "/c", "methods": []}]),
            "routes[0].methods: the list is empty, so the route would match nothing; leave \
             methods out for ALL (route '/c')",
        ),
        (
            json!([{"path": "/c", "methods": ["GET", "get"]}]),
            "routes[0].methods: GET is listed twice (route '/c')",
        ),
        (
            json!([{"path": "/c", "methods": ["GET", "ALL"]}]),
            "routes[0].methods: ALL is written alone (methods: ALL), not in a list (route '/c')",
        ),
        (
            json!([{"path": "/c", "methods": ["GE T"]}]),
            "routes[0].methods: 'GE T' is not an HTTP method (route '/c')",
        ),
        (
            json!([{"path": "/c", "backend": ""}]),
            "routes[0].backend: the backend name is empty (route '/c')",
        ),
        (
            json!([{"path": "/a/*/b"}]),
            "routes[0].path: route '/a/*/b': '*' is allowed only at the end",
        ),
        (
            json!([{"path": "admin"}]),
            "routes[0].path: route 'admin': the path must start with '/'",
        ),
        (
            json!([{"path": "/a%2Fb"}]),
            "routes[0].path: route '/a%2Fb': encoded slashes and backslashes (%2F, %5C) are not \
             allowed in paths",
        ),
        (
            json!([{"path": "/a/x{id}"}]),
            "routes[0].path: route '/a/x{id}': a parameter must fill a whole segment, like /{id}/",
        ),
        // Duplicates: the same shape (parameter names do not count) and a shared method.
        (
            json!([{"path": "/a", "methods": ["GET"]}, {"path": "/a"}]),
            "GET /a is defined twice: by routes[0] ('/a') and by routes[1] ('/a')",
        ),
        (
            json!([{"path": "/u/{id}"}, {"path": "/u/:name", "methods": ["DELETE"]}]),
            "DELETE /u/{name} is defined twice: by routes[0] ('/u/{id}') and by routes[1] \
             ('/u/{name}')",
        ),
        (
            json!([{"path": "/a"}, {"path": "/a/", "ignore_trailing_slash": true}]),
            "ALL /a/ is defined twice: by routes[0] ('/a') and by routes[1] ('/a/')",
        ),
        (
            json!([{"path": "/a/./b"}, {"path": "/a/b"}]),
            "ALL /a/b is defined twice: by routes[0] ('/a/./b') and by routes[1] ('/a/b')",
        ),
    ];
    for (routes, want) in table {
        assert_eq!(
            compile(routes.clone()).err().as_deref(),
            Some(want),
            "{routes}"
        );
    }
}

#[test]
fn shapes_that_do_not_collide_compile() {
    let ok = [
        json!([{"path": "/u/{id}", "methods": ["GET"]}, {"path": "/u/{id}", "methods": ["POST"]}]),
        json!([{"path": "/a"}, {"path": "/a/"}]),
        json!([{"path": "/a/*"}, {"path": "/a/{x}"}, {"path": "/a/b"}, {"path": "/a"}]),
        json!([{"path": "/{x}/b"}, {"path": "/a/{y}"}]),
        json!([]),
    ];
    for routes in ok {
        assert!(compile(routes.clone()).is_ok(), "{routes}");
    }
}

#[test]
fn deserialisation_errors() {
    let table = [
        (
            json!([{"path": "/a", "group": "true"}]),
            "unknown field `group`",
        ),
        (
            json!([{"path": "/a", "auth": "sometimes"}]),
            "unknown variant `sometimes`",
        ),
        (
            json!([{"path": "/a", "methods": "GET"}]),
            "expected \"ALL\" or a list",
        ),
        (json!([{"path": "/a", "methods": [1]}]), "expected a string"),
        (json!([{"methods": "ALL"}]), "missing field `path`"),
    ];
    for (routes, want) in table {
        let err = specs(routes.clone()).unwrap_err();
        assert!(err.contains(want), "{routes}: {err}");
    }
}

/// A backend document in Rönd's style: `x-permission` (v1), `x-rond` (v2), `all`, `{p}`, `:p`,
/// trailing `*`, `ignoreTrailingSlash`, an operation without an extension.
fn users_openapi() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "users", "version": "1"},
        "paths": {
            "/users/": {
                "get": {"x-permission": {"allow": "todo"}, "summary": "list"},
                "head": {"x-permission": {"allow": "todo"}}
            },
            "/users/{id}": {
                "parameters": [{"name": "id", "in": "path"}],
                "get": {"x-rond": {"requestFlow": {"policyName": "user.read"}}},
                "delete": {"x-rond": {
                    "requestFlow": {"policyName": "user_delete"},
                    "options": {"ignoreTrailingSlash": true}
                }}
            },
            "/users/me": {"get": {"x-rond": {"requestFlow": {"policyName": "allow_all"}}}},
            "/items/*": {
                "all": {"x-rond": {"requestFlow": {"policyName": "items_any"}}},
                "post": {"x-rond": {"requestFlow": {"policyName": "items_create"}}}
            },
            "/items/{id}/tags": {"all": {"x-rond": {"requestFlow": {"policyName": "tags"}}}},
            "/no-permission": {
                "get": {},
                "post": {"x-rond": {"requestFlow": {"policyName": ""}}}
            },
            "/lax": {"get": {"x-rond": {
                "requestFlow": {"policyName": "lax"},
                "options": {"ignoreTrailingSlash": true}
            }}},
            "/strict": {"get": {"x-rond": {"requestFlow": {"policyName": "strict"}}}},
            "/fd/:id/feedback": {"get": {"x-permission": {
                "allow": "fd_view",
                "responseFilter": {"policy": "fd.filter"},
                "resourceFilter": {"rowFilter": {"enabled": true, "headerKey": "x-filter"}}
            }}}
        }
    })
}

#[derive(Debug, PartialEq)]
enum Found {
    /// A rule with this policy, and these parameters (sorted).
    Policy(String, Vec<(String, String)>),
    /// An operation declared without a policy: always 403.
    Refused,
    /// 404.
    None,
    /// 400.
    BadPath,
}

fn lookup(rules: &RouteRules, method: &str, path: &str) -> Found {
    match rules.find(method, path) {
        Ok(m) if m.rule.has_no_policy() => Found::Refused,
        Ok(m) => {
            let mut params: Vec<(String, String)> = m.params.into_iter().collect();
            params.sort();
            Found::Policy(m.rule.policy().unwrap_or("-").to_owned(), params)
        }
        Err(RouteLookupError::NoRoute) => Found::None,
        Err(RouteLookupError::BadPath(_)) => Found::BadPath,
    }
}

#[test]
fn openapi_extensions_and_ronds_path_rules() {
    let rules = RouteRules::compile(&[], &[(Some("users".into()), users_openapi())]).unwrap();
    let p = |policy: &str| Found::Policy(policy.into(), vec![]);
    let id = |policy: &str, v: &str| Found::Policy(policy.into(), vec![("id".into(), v.into())]);
    let table = [
        // x-permission (v1), and the trailing slash of the document's path is kept.
        ("GET", "/users/", p("todo")),
        ("HEAD", "/users/", p("todo")),
        ("GET", "/users", Found::None),
        ("DELETE", "/users/", Found::None),
        // x-rond (v2), `.` becomes `_`, `{p}`; a static segment beats a parameter.
        ("GET", "/users/42", id("user_read", "42")),
        ("GET", "/users/me", p("allow_all")),
        ("GET", "/users/m%65", p("allow_all")),
        ("GET", "/users/ME", id("user_read", "ME")),
        ("GET", "/users/a%20b", id("user_read", "a b")),
        ("POST", "/users/42", Found::None),
        // A GET operation also decides HEAD, unless the path declares its own HEAD.
        ("HEAD", "/users/42", id("user_read", "42")),
        // ignoreTrailingSlash is per operation: on for DELETE, off for GET.
        ("DELETE", "/users/42/", id("user_delete", "42")),
        ("GET", "/users/42/", Found::None),
        ("GET", "/lax/", p("lax")),
        ("GET", "/lax", p("lax")),
        ("GET", "/strict", p("strict")),
        ("GET", "/strict/", Found::None),
        // `all` with a trailing `*`: Rönd's six methods, minus the explicit `post`.
        ("GET", "/items/a/b", p("items_any")),
        ("DELETE", "/items/x", p("items_any")),
        ("HEAD", "/items/x", p("items_any")),
        ("POST", "/items/x", p("items_create")),
        ("OPTIONS", "/items/x", Found::None),
        ("TRACE", "/items/x", Found::None),
        // A more specific template wins over the wildcard.
        ("PUT", "/items/7/tags", id("tags", "7")),
        ("PUT", "/items/7/tags/", p("items_any")),
        // Declared without a policy: a rule that always refuses (Rönd's 403), not a 404.
        ("GET", "/no-permission", Found::Refused),
        ("POST", "/no-permission", Found::Refused),
        ("PUT", "/no-permission", Found::None),
        // `:id` is a parameter, as in Rönd.
        ("GET", "/fd/9/feedback", id("fd_view", "9")),
        ("GET", "/nothing", Found::None),
        ("GET", "/users/%2F", Found::BadPath),
    ];
    for (method, path, want) in table {
        assert_eq!(lookup(&rules, method, path), want, "{method} {path}");
    }
    let fd = rules.find("GET", "/fd/1/feedback").unwrap().rule;
    assert_eq!(fd.backend(), Some("users"));
    assert_eq!(fd.auth(), Auth::Required);
    let flow = fd.rond().unwrap();
    assert_eq!(flow.response_policy.as_deref(), Some("fd_filter"));
    assert!(flow.generate_query);
    assert_eq!(flow.query_header.as_deref(), Some("x-filter"));
    assert_eq!(
        rules.policies(),
        [
            "allow_all",
            "fd_filter",
            "fd_view",
            "items_any",
            "items_create",
            "lax",
            "strict",
            "tags",
            "todo",
            "user_delete",
            "user_read"
        ]
    );
}

#[test]
fn openapi_errors_name_the_document_path_and_verb() {
    let one = |doc: Value| {
        RouteRules::compile(&[], &[(Some("b".into()), doc)])
            .err()
            .map(|e| e.to_string())
    };
    let table = [
        (
            json!([]),
            "openapi[0]: expected an OpenAPI document (a JSON object)",
        ),
        (
            json!({"paths": []}),
            "openapi[0].paths: expected an object of paths",
        ),
        (
            json!({"paths": {"/a": {"get": {"x-rond": {"requestFlow": {"policyName": 5}}}}}}),
            "openapi[0].paths[\"/a\"].get.x-rond: invalid type: integer `5`, expected a string",
        ),
        (
            json!({"paths": {"/a": {"get": {"x-permission": {"allow": "a b"}}}}}),
            "openapi[0].paths[\"/a\"].get.x-permission: request policy: 'a b' is not a Rego rule \
             name: letters, digits, '_' and '.' only, not starting with a digit",
        ),
        (
            json!({"paths": {"/a": {"get": {"x-rond": {
                "requestFlow": {"policyName": "ok"}, "responseFlow": {"policyName": "9x"}}}}}}),
            "openapi[0].paths[\"/a\"].get.x-rond: response policy: '9x' is not a Rego rule name: \
             letters, digits, '_' and '.' only, not starting with a digit",
        ),
        (
            json!({"paths": {"/a": {"get": "nope"}}}),
            "openapi[0].paths[\"/a\"].get: expected an operation (an object)",
        ),
        (
            json!({"paths": {"a": {"get": {}}}}),
            "openapi[0].paths[\"a\"]: a path must start with '/'",
        ),
        (
            json!({"paths": {"/a/*/b": {"get": {}}}}),
            "openapi[0].paths[\"/a/*/b\"].get (backend 'b'): route '/a/*/b': '*' is allowed \
             only at the end",
        ),
        (
            json!({"paths": {
                "/a": {"get": {"x-rond": {"requestFlow": {"policyName": "x"},
                                          "options": {"ignoreTrailingSlash": true}}}},
                "/a/": {"all": {}}
            }}),
            "GET /a/ is defined twice: by openapi[0].paths[\"/a\"].get (backend 'b') and by \
             openapi[0].paths[\"/a/\"].all (backend 'b')",
        ),
    ];
    for (doc, want) in table {
        assert_eq!(one(doc.clone()).as_deref(), Some(want), "{doc}");
    }
    // Nothing to route: no paths at all, or none with operations.
    assert!(one(json!({"openapi": "3.0.0"})).is_none());
    assert!(one(json!({"paths": {"/a": {"summary": "x", "$ref": "#/x"}}})).is_none());
}

#[test]
fn configuration_and_documents_share_one_table() {
    let doc = json!({"paths": {"/orders/{id}": {"get": {"x-rond": {
        "requestFlow": {"policyName": "orders_read"}}}}}});
    let routes = specs(json!([{"path": "/orders/:n", "methods": ["GET", "PUT"]}])).unwrap();
    let err = RouteRules::compile(&routes, &[(Some("shop".into()), doc.clone())]).unwrap_err();
    assert_eq!(
        err,
        RouteRulesError::Duplicate {
            method: "GET".into(),
            path: "/orders/{id}".into(),
            first: "routes[0] ('/orders/{n}')".into(),
            second: "openapi[0].paths[\"/orders/{id}\"].get (backend 'shop')".into(),
        }
    );
    // Two documents declaring the same operation are refused too.
    let err = RouteRules::compile(&[], &[(Some("a".into()), doc.clone()), (None, doc.clone())])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "GET /orders/{id} is defined twice: by openapi[0].paths[\"/orders/{id}\"].get (backend \
         'a') and by openapi[1].paths[\"/orders/{id}\"].get"
    );
    let routes = specs(json!([{"path": "/orders/:n", "methods": ["PUT"], "backend": "admin"}]));
    let rules = RouteRules::compile(&routes.unwrap(), &[(Some("shop".into()), doc)]).unwrap();
    assert_eq!(rules.rules().len(), 2);
    let put = rules.find("PUT", "/orders/3").unwrap();
    assert_eq!(
        (put.rule.backend(), put.params["n"].as_str()),
        (Some("admin"), "3")
    );
    let get = rules.find("GET", "/orders/3").unwrap();
    assert_eq!(
        (get.rule.backend(), get.rule.policy()),
        (Some("shop"), Some("orders_read"))
    );
}

fn hostile_table_rules() -> RouteRules {
    compile(json!([
        {"path": "/admin", "groups": "groups.admin", "backend": "admin"},
        {"path": "/admin/*", "groups": "groups.admin", "backend": "admin-tree"},
        {"path": "/public/*", "auth": "none", "backend": "public"},
        {"path": "/api/{tenant}/items", "methods": ["GET"], "backend": "items"},
        {"path": "/api/acme/items", "methods": ["GET"], "backend": "acme-items"},
        {"path": "/wiki/\u{dc}bersicht", "groups": "groups.admin", "backend": "wiki-index"},
        {"path": "/*", "auth": "none", "backend": "catch-all"}
    ]))
    .unwrap()
}

#[test]
fn no_spelling_reaches_a_rule_its_normalised_path_would_not() {
    let rules = hostile_table_rules();
    let bad = Err("400");
    let table: [(&str, &str, Result<&str, &str>); 35] = [
        ("GET", "/admin", Ok("admin")),
        ("GET", "/public/x", Ok("public")),
        ("GET", "/a/../admin", Ok("admin")),
        ("GET", "/public/../admin", Ok("admin")),
        ("GET", "/public/x/../../admin", Ok("admin")),
        ("GET", "/%2e%2e/admin", Ok("admin")),
        ("GET", "/public/%2e%2e/admin", Ok("admin")),
        ("GET", "/public/%2E%2e/admin/users", Ok("admin-tree")),
        ("GET", "/public/.%2e/admin", Ok("admin")),
        ("GET", "/public/./../admin", Ok("admin")),
        ("GET", "//admin", Ok("admin")),
        ("GET", "///admin//", Ok("admin-tree")),
        ("GET", "/public//admin", Ok("public")),
        ("GET", "/admin/", Ok("admin-tree")),
        ("GET", "/adm%69n", Ok("admin")),
        ("GET", "/admin?/public/x", Ok("admin")),
        ("GET", "/public/x?/../../admin", Ok("public")),
        // Encoded separators and controls never reach a rule.
        ("GET", "/public%2F..%2Fadmin", bad),
        ("GET", "/public/..%2fadmin", bad),
        ("GET", "/public/..%5Cadmin", bad),
        ("GET", "/admin%00", bad),
        ("GET", "/admin%zz", bad),
        ("GET", "admin", bad),
        // Matching is case-sensitive: a different spelling is a different path.
        ("GET", "/ADMIN", Ok("catch-all")),
        ("GET", "/Admin/users", Ok("catch-all")),
        ("GET", "/PUBLIC/../ADMIN", Ok("catch-all")),
        ("GET", "/api/ACME/items", Ok("items")),
        ("GET", "/api/%61cme/items", Ok("acme-items")),
        ("GET", "/api/acme/items", Ok("acme-items")),
        ("POST", "/api/acme/items", Ok("catch-all")),
        // Outside ASCII, raw or escaped (either case), a path is one path.
        ("GET", "/wiki/\u{dc}bersicht", Ok("wiki-index")),
        ("GET", "/wiki/%C3%9Cbersicht", Ok("wiki-index")),
        ("GET", "/wiki/%c3%9cbersicht", Ok("wiki-index")),
        ("GET", "/wiki/%C3%9Cbersicht2", Ok("catch-all")),
        // HEAD is GET without a body: it is decided by the GET rule, not the public catch-all.
        ("HEAD", "/api/acme/items", Ok("acme-items")),
    ];
    for (method, raw, want) in table {
        let got = match rules.find(method, raw) {
            Ok(m) => Ok(m.rule.backend().unwrap_or("-")),
            Err(RouteLookupError::BadPath(_)) => bad,
            Err(RouteLookupError::NoRoute) => Err("404"),
        };
        assert_eq!(got, want, "{method} {raw}");
        // And the rule is the one the normalised path finds, whatever the spelling.
        if let Ok(m) = rules.find(method, raw) {
            let again = rules.find(method, &m.path).unwrap();
            assert_eq!(again.rule, m.rule, "{method} {raw} -> {}", m.path);
        }
    }
    let m = rules.find("GET", "/public/%2e%2e/adm%69n/").unwrap();
    assert_eq!(m.path, "/admin/");
    let err = rules.find("GET", "/a%2Fb").unwrap_err();
    assert_eq!(err, RouteLookupError::BadPath(PathError::EncodedSeparator));
    assert_eq!(err.status(), 400);
    let empty = RouteRules::compile(&[], &[]).unwrap();
    assert_eq!(
        empty.find("GET", "/").unwrap_err(),
        RouteLookupError::NoRoute
    );
    assert_eq!(RouteLookupError::NoRoute.status(), 404);
}

#[test]
fn a_get_rule_decides_head_unless_head_has_its_own() {
    let rules = compile(json!([
        {"path": "/report", "methods": ["GET"], "groups": "groups.admin", "backend": "get"},
        {"path": "/report", "methods": ["head"], "auth": "none", "backend": "head"},
        {"path": "/doc", "methods": ["GET", "POST"], "backend": "doc"},
        {"path": "/doc/", "methods": ["HEAD"], "backend": "doc-slash-head"},
        {"path": "/*", "auth": "none", "backend": "catch-all"}
    ]))
    .unwrap();
    let table = [
        ("GET", "/report", "get"),
        ("HEAD", "/report", "head"),
        ("HEAD", "/doc", "doc"),
        ("HEAD", "/doc/", "doc-slash-head"),
        ("GET", "/doc/", "catch-all"),
        ("OPTIONS", "/doc", "catch-all"),
    ];
    for (method, path, want) in table {
        let got = rules.find(method, path).ok().and_then(|m| m.rule.backend());
        assert_eq!(got, Some(want), "{method} {path}");
    }
    let methods: Vec<String> = rules
        .rules()
        .iter()
        .map(|r| format!("{:?}", r.methods()))
        .collect();
    assert_eq!(
        methods,
        [
            "Only([\"GET\"])",
            "Only([\"HEAD\"])",
            "Only([\"GET\", \"POST\", \"HEAD\"])",
            "Only([\"HEAD\"])",
            "All"
        ]
    );
}

#[test]
fn specificity_static_beats_parameter_beats_wildcard() {
    let rules = compile(json!([
        {"path": "/v/*", "backend": "wild"},
        {"path": "/v/{a}/{b}", "backend": "two-params"},
        {"path": "/v/{a}/x", "backend": "param-static"},
        {"path": "/v/x/{b}", "backend": "static-param"},
        {"path": "/v/x/y", "backend": "static"},
        {"path": "/v/{a}", "backend": "one-param"}
    ]))
    .unwrap();
    let table = [
        ("/v/x/y", "static"),
        ("/v/x/z", "static-param"),
        ("/v/z/x", "param-static"),
        // Equal specificity: the static segment earlier in the path wins.
        ("/v/x/x", "static-param"),
        ("/v/q/r", "two-params"),
        ("/v/q", "one-param"),
        ("/v/q/r/s", "wild"),
        ("/v", "wild"),
    ];
    for (path, want) in table {
        let got = rules.find("GET", path).ok().and_then(|m| m.rule.backend());
        assert_eq!(got, Some(want), "{path}");
    }
}

/// Checks that pass for `perm.ok` / `policy_ok` and record what they were asked.
#[derive(Default)]
struct Recorder {
    asked: RefCell<Vec<String>>,
}

impl RuleChecks for Recorder {
    fn policy(&self, rule_name: &str) -> bool {
        self.asked.borrow_mut().push(format!("policy {rule_name}"));
        rule_name == "policy_ok"
    }

    fn permission(&self, permission: &str, action: Option<Action>) -> bool {
        let action = action.map_or("use", Action::as_str);
        self.asked
            .borrow_mut()
            .push(format!("permission {permission} {action}"));
        permission == "perm.ok"
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    Unset,
    Pass,
    Fail,
}

const CHECKS: [Check; 3] = [Check::Unset, Check::Pass, Check::Fail];

fn rule_for(auth: &str, groups: Check, permission: Check, policy: Check) -> RouteRules {
    let mut route = json!({"path": "/r", "auth": auth});
    match groups {
        Check::Unset => {}
        Check::Pass => route["groups"] = json!("groups.admin || \"ops\" in groups"),
        Check::Fail => route["groups"] = json!("[\"ops\", \"qa\"] in groups"),
    }
    match permission {
        Check::Unset => {}
        Check::Pass => {
            route["permission"] = json!("perm.ok");
            route["action"] = json!("read");
        }
        Check::Fail => route["permission"] = json!("perm.no"),
    }
    match policy {
        Check::Unset => {}
        Check::Pass => route["policy"] = json!("policy.ok"),
        Check::Fail => route["policy"] = json!("policy.no"),
    }
    compile(json!([route])).unwrap()
}

#[test]
fn each_check_denies_alone_and_all_must_pass() {
    use Check::{Fail, Pass, Unset};
    let admin = vec!["admin".to_string()];
    let user = RuleContext {
        user: Some(RuleUser {
            groups: &admin,
            permissions: &[],
        }),
        client_type: None,
    };
    let anonymous = RuleContext::default();
    let allow = Ok(RuleOutcome::Allow);
    let denied = |by| Ok(RuleOutcome::Denied { by });
    let policy_no = || DeniedBy::Policy("policy_no".into());
    let perm_no = || DeniedBy::Permission("perm.no".into());
    // (auth, groups, permission, policy, caller) → outcome, and the checks asked, in order.
    type Row<'a> = (
        &'a str,
        [Check; 3],
        &'a RuleContext<'a>,
        Result<RuleOutcome, ()>,
        &'a [&'a str],
    );
    let table: Vec<Row<'_>> = vec![
        ("required", [Unset, Unset, Unset], &user, allow.clone(), &[]),
        (
            "required",
            [Unset, Unset, Unset],
            &anonymous,
            Ok(RuleOutcome::Unauthenticated),
            &[],
        ),
        (
            "required",
            [Pass, Pass, Pass],
            &anonymous,
            Ok(RuleOutcome::Unauthenticated),
            &[],
        ),
        ("required", [Pass, Unset, Unset], &user, allow.clone(), &[]),
        (
            "required",
            [Fail, Unset, Unset],
            &user,
            denied(DeniedBy::Groups),
            &[],
        ),
        (
            "required",
            [Unset, Pass, Unset],
            &user,
            allow.clone(),
            &["permission perm.ok read"],
        ),
        (
            "required",
            [Unset, Fail, Unset],
            &user,
            denied(perm_no()),
            &["permission perm.no use"],
        ),
        (
            "required",
            [Unset, Unset, Pass],
            &user,
            allow.clone(),
            &["policy policy_ok"],
        ),
        (
            "required",
            [Unset, Unset, Fail],
            &user,
            denied(policy_no()),
            &["policy policy_no"],
        ),
        (
            "required",
            [Pass, Pass, Pass],
            &user,
            allow.clone(),
            &["permission perm.ok read", "policy policy_ok"],
        ),
        (
            "required",
            [Fail, Pass, Pass],
            &user,
            denied(DeniedBy::Groups),
            &[],
        ),
        (
            "required",
            [Pass, Fail, Pass],
            &user,
            denied(perm_no()),
            &["permission perm.no use"],
        ),
        (
            "required",
            [Pass, Pass, Fail],
            &user,
            denied(policy_no()),
            &["permission perm.ok read", "policy policy_no"],
        ),
        // Optional: anonymous callers go through the checks without groups.
        (
            "optional",
            [Unset, Unset, Unset],
            &anonymous,
            allow.clone(),
            &[],
        ),
        (
            "optional",
            [Pass, Unset, Unset],
            &anonymous,
            denied(DeniedBy::Groups),
            &[],
        ),
        ("optional", [Pass, Unset, Unset], &user, allow.clone(), &[]),
        (
            "optional",
            [Unset, Unset, Pass],
            &anonymous,
            allow.clone(),
            &["policy policy_ok"],
        ),
        (
            "optional",
            [Unset, Fail, Unset],
            &anonymous,
            denied(perm_no()),
            &["permission perm.no use"],
        ),
        // None: public, nothing is asked.
        (
            "none",
            [Unset, Unset, Unset],
            &anonymous,
            allow.clone(),
            &[],
        ),
        ("none", [Unset, Unset, Unset], &user, allow.clone(), &[]),
    ];
    for (auth, [g, p, q], ctx, want, asked) in table {
        let rules = rule_for(auth, g, p, q);
        let rule = rules.find("GET", "/r").unwrap().rule;
        let checks = Recorder::default();
        assert_eq!(
            Ok(rule.evaluate(ctx, &checks)),
            want,
            "{auth} {g:?} {p:?} {q:?} {:?}",
            ctx.user.is_some()
        );
        assert_eq!(checks.asked.into_inner(), asked, "{auth} {g:?} {p:?} {q:?}");
    }
}

#[test]
fn every_combination_allows_exactly_when_every_set_check_passes() {
    let admin = vec!["admin".to_string()];
    let callers = [
        RuleContext::default(),
        RuleContext {
            user: Some(RuleUser {
                groups: &admin,
                permissions: &[],
            }),
            client_type: Some("cms"),
        },
    ];
    let mut cases = 0;
    for auth in ["required", "optional", "none"] {
        for g in CHECKS {
            for p in CHECKS {
                for q in CHECKS {
                    let set = [g, p, q].iter().any(|c| *c != Check::Unset);
                    if auth == "none" && set {
                        // Refused at compile: a public route checks nothing.
                        let route = rule_for_json(auth, g, p, q);
                        assert!(compile(json!([route])).is_err());
                        continue;
                    }
                    let rules = rule_for(auth, g, p, q);
                    let rule = rules.find("GET", "/r").unwrap().rule;
                    for ctx in &callers {
                        cases += 1;
                        let anonymous = ctx.user.is_none();
                        // Anonymous callers have no groups, so even the passing expression fails.
                        let groups_ok = match g {
                            Check::Unset => true,
                            Check::Pass => !anonymous,
                            Check::Fail => false,
                        };
                        let want = if auth == "none" {
                            RuleOutcome::Allow
                        } else if auth == "required" && anonymous {
                            RuleOutcome::Unauthenticated
                        } else if !groups_ok {
                            RuleOutcome::Denied {
                                by: DeniedBy::Groups,
                            }
                        } else if p == Check::Fail {
                            RuleOutcome::Denied {
                                by: DeniedBy::Permission("perm.no".into()),
                            }
                        } else if q == Check::Fail {
                            RuleOutcome::Denied {
                                by: DeniedBy::Policy("policy_no".into()),
                            }
                        } else {
                            RuleOutcome::Allow
                        };
                        let got = rule.evaluate(ctx, &Recorder::default());
                        assert_eq!(got, want, "{auth} {g:?} {p:?} {q:?} anonymous={anonymous}");
                        assert_eq!(
                            got.status(),
                            match want {
                                RuleOutcome::Allow => 200,
                                RuleOutcome::Unauthenticated => 401,
                                RuleOutcome::Denied { .. } => 403,
                            }
                        );
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * (27 + 27 + 1));
}

fn rule_for_json(auth: &str, g: Check, p: Check, q: Check) -> Value {
    let mut route = json!({"path": "/r", "auth": auth});
    if g != Check::Unset {
        route["groups"] = json!("true");
    }
    if p != Check::Unset {
        route["permission"] = json!("perm.ok");
    }
    if q != Check::Unset {
        route["policy"] = json!("policy_ok");
    }
    route
}

#[test]
fn an_operation_without_a_policy_refuses_everyone_but_asks_for_a_login_first() {
    let rules = RouteRules::compile(&[], &[(None, users_openapi())]).unwrap();
    let rule = rules.find("GET", "/no-permission").unwrap().rule;
    let admin = vec!["admin".to_string()];
    let user = RuleContext {
        user: Some(RuleUser {
            groups: &admin,
            permissions: &[],
        }),
        client_type: None,
    };
    let checks = Recorder::default();
    assert_eq!(
        rule.evaluate(&user, &checks),
        RuleOutcome::Denied {
            by: DeniedBy::NoPolicy
        }
    );
    assert!(checks.asked.borrow().is_empty());
    assert_eq!(
        rule.evaluate(&RuleContext::default(), &checks),
        RuleOutcome::Unauthenticated
    );
    let rule = rules.find("GET", "/users/me").unwrap().rule;
    assert_eq!(
        rule.evaluate(&user, &checks),
        RuleOutcome::Denied {
            by: DeniedBy::Policy("allow_all".into())
        }
    );
}

#[test]
fn ronds_response_bodies() {
    let table = [
        (
            not_found_body("GET", "/not-existing-path"),
            json!({
                "error": "not found oas definition: GET /not-existing-path",
                "message": "The request doesn't match any known API",
                "statusCode": 404
            }),
        ),
        (
            forbidden_body(&DeniedBy::Policy("allow_view".into())),
            json!({
                "error": "RBAC policy evaluation failed",
                "message": "You do not have permissions to access this feature, contact the \
                            administrator for more information.",
                "statusCode": 403
            }),
        ),
        (
            forbidden_body(&DeniedBy::Groups),
            forbidden_body(&DeniedBy::Permission("x".into())),
        ),
        (
            forbidden_body(&DeniedBy::NoPolicy),
            json!({
                "error": "",
                "message": "User is not allowed to request the API",
                "statusCode": 403
            }),
        ),
        (
            bad_path_body(&PathError::EncodedSeparator),
            json!({
                "error": "encoded slashes and backslashes (%2F, %5C) are not allowed in paths",
                "message": "The request path is not valid",
                "statusCode": 400
            }),
        ),
    ];
    for (got, want) in table {
        assert_eq!(got, want);
    }
    assert_eq!(
        forbidden_body(&DeniedBy::Groups)["message"],
        forbidden_body(&DeniedBy::Policy("p".into()))["message"]
    );
}
