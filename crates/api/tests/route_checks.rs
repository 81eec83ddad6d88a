//! Route rules through `POST /api/v1/check` with `route: true`: the gateway's decision for a
//! caller and a request. Routes come from the configuration and from a backend's OpenAPI
//! document (`x-rond`, legacy `x-permission`); the Rego policies are seed 003's plus one that
//! reads Rönd's `resourcePermissionsMap`.

use std::path::Path;
use std::time::Duration;

use portcullis_api::rbac::routes::OpenApiSource;
use portcullis_api::{RbacSettings, ServerConfig};
use portcullis_authz::route_rules::RouteSpec;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "route-checks-test-admin-key-0123456789abcdef";

const ROUTES: &str = r#"
- path: /control-plane
  methods: [GET]
  policy: fd_control_plane_allow_view
- path: /control-plane/*
  methods: [POST, PUT]
  policy: fd.control_plane.allow_edit
- path: /public/*
  auth: none
- path: /admin/*
  groups: 'groups.platform-admins || "auditors" in groups'
- path: /policies
  permission: policy.entity.read
  action: read
- path: /projects/{project}/deploy
  methods: [POST]
  policy: project_admin
  resource_permissions_map: true
- path: /optional
  auth: optional
  groups: "true"
"#;

fn openapi() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "runtime", "version": "1"},
        "paths": {
            "/runtime/{id}": {
                "get": {"x-rond": {"requestFlow": {"policyName": "fd_control_plane_allow_view"}}},
                "post": {"x-rond": {"requestFlow": {"policyName": "fd_control_plane_allow_edit"}}}
            },
            "/legacy": {"get": {"x-permission": {"allow": "allow_all"}}},
            "/undeclared-policy": {"get": {}}
        }
    })
}

struct Env {
    running: portcullis_api::Running,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The gateway's decision for `principal` (None: anonymous) on `method path`.
    async fn route(&self, principal: Option<&str>, method: &str, path: &str) -> Value {
        let mut item = json!({"route": true, "request": {"method": method, "path": path}});
        match principal {
            Some(p) => item["principal"] = json!(p),
            None => item["anonymous"] = json!(true),
        }
        let (status, answer) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/check?explain=true",
                json!({"items": [item]}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["items"][0].clone()
    }
}

fn settings(dir: &Path) -> RbacSettings {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rego");
    std::fs::copy(
        examples.join("policies.rego"),
        policies.join("policies.rego"),
    )
    .unwrap();
    std::fs::write(
        policies.join("projects.rego"),
        "package policies\nproject_admin {\n  input.user.resourcePermissionsMap[sprintf(\"project.manage:project:%s\", [input.request.pathParams.project])]\n}\n",
    )
    .unwrap();
    let openapi_file = dir.join("runtime-openapi.json");
    std::fs::write(&openapi_file, openapi().to_string()).unwrap();
    let routes: Vec<RouteSpec> = yaml_serde::from_str(ROUTES).unwrap();
    RbacSettings {
        rego_policies_dir: Some(policies),
        rego_time_limit: Some(Duration::from_millis(200)),
        routes,
        openapi: vec![OpenApiSource {
            backend: Some("runtime".into()),
            file: openapi_file,
        }],
        ..Default::default()
    }
}

/// A server in `dir` with `rbac`, its database there too.
fn config(dir: &Path, rbac: RbacSettings) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some(ADMIN_KEY.into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: None,
        // The OpenAPI document's routes forward to this backend (never contacted here).
        gateway: portcullis_api::gateway::GatewaySettings {
            backends: vec![portcullis_gateway::Backend::new(
                "runtime",
                "http://127.0.0.1:9".parse().unwrap(),
                Duration::from_secs(1),
            )],
            ..Default::default()
        },
        auth: Default::default(),
        rbac,
    }
}

/// Why a server with `rbac` refuses to start.
async fn refusal(dir: &Path, rbac: RbacSettings) -> String {
    portcullis_api::start(config(dir, rbac))
        .await
        .err()
        .expect("refused")
        .to_string()
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let running = portcullis_api::start(config(dir.path(), settings(dir.path())))
        .await
        .unwrap();
    Env {
        base: format!("http://{}", running.addr),
        running,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// (caller, method, path, result, status, part of `deniedBy`).
type Row<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, u16, &'a str);

#[tokio::test]
async fn routes_decide_as_the_gateway_would() {
    let env = start().await;
    let post = reqwest::Method::POST;
    // Alice views the control plane (seed roles and bindings); Bob has nothing.
    let (s, _) = env
        .send(
            post.clone(),
            "/api/v1/orgs/default/roles",
            json!([
                {"roleId": "viewer", "name": "Viewer", "permissions": ["console.data-fabric.control-plane.view"]},
                {"roleId": "project-admin", "name": "Project admin", "permissions": ["project.manage"]}
            ]),
        )
        .await;
    assert_eq!(s, 201);
    let mut ids = Vec::new();
    for email in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        let (s, user) = env
            .send(
                post.clone(),
                "/api/v1/orgs/default/users",
                json!({"email": email}),
            )
            .await;
        assert_eq!(s, 201, "{user}");
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    let (s, b) = env
        .send(
            post.clone(),
            "/api/v1/orgs/default/bindings",
            json!([
                {"bindingId": "viewers", "subjects": [ids[0]], "roles": ["viewer"]},
                {"bindingId": "staging-admins", "subjects": [ids[0]], "roles": ["project-admin"],
                 "resource": {"resourceType": "project", "resourceId": "staging"}}
            ]),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = env
        .send(
            post.clone(),
            "/api/v1/orgs/default/groups",
            json!({"name": "platform-admins"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, g) = env
        .send(
            post.clone(),
            "/api/v1/orgs/default/groups/platform-admins/members",
            json!({"userId": ids[2]}),
        )
        .await;
    assert!(s == 201 || s == 200 || s == 204, "{s} {g}");

    let (alice, bob, carol) = (
        Some("user:default/alice"),
        Some("user:default/bob"),
        Some("user:default/carol"),
    );
    // (caller, method, path, result, status, deniedBy contains)
    let table: &[Row] = &[
        (alice, "GET", "/control-plane", "ALLOW", 200, ""),
        (
            bob,
            "GET",
            "/control-plane",
            "DENY",
            403,
            "policy fd_control_plane_allow_view",
        ),
        (None, "GET", "/control-plane", "UNAUTHENTICATED", 401, ""),
        (
            alice,
            "POST",
            "/control-plane/pause",
            "DENY",
            403,
            "policy fd_control_plane_allow_edit",
        ),
        (
            alice,
            "DELETE",
            "/control-plane/pause",
            "NOT_FOUND",
            404,
            "",
        ),
        (None, "GET", "/public/logo.png", "ALLOW", 200, ""),
        (bob, "GET", "/nowhere", "NOT_FOUND", 404, ""),
        // Spellings of a path reach exactly the rule of their normalised form.
        (
            bob,
            "GET",
            "/public/../control-plane",
            "DENY",
            403,
            "policy",
        ),
        (alice, "GET", "//control-plane", "ALLOW", 200, ""),
        (alice, "GET", "/%63ontrol-plane", "ALLOW", 200, ""),
        (
            bob,
            "GET",
            "/public/..%2Fcontrol-plane",
            "BAD_PATH",
            400,
            "",
        ),
        (alice, "GET", "/Control-Plane", "NOT_FOUND", 404, ""),
        // Groups expressions.
        (carol, "GET", "/admin/users", "ALLOW", 200, ""),
        (
            alice,
            "GET",
            "/admin/users",
            "DENY",
            403,
            "groups expression",
        ),
        // RBAC permission: nobody but policy admins holds policy.entity.read.
        (
            alice,
            "GET",
            "/policies",
            "DENY",
            403,
            "permission policy.entity.read",
        ),
        // resourcePermissionsMap: Alice administers project staging only.
        (alice, "POST", "/projects/staging/deploy", "ALLOW", 200, ""),
        (
            alice,
            "POST",
            "/projects/prod/deploy",
            "DENY",
            403,
            "policy project_admin",
        ),
        // auth: optional lets anonymous callers through the remaining checks.
        (None, "GET", "/optional", "ALLOW", 200, ""),
        // From the backend's OpenAPI document.
        (alice, "GET", "/runtime/42", "ALLOW", 200, ""),
        (
            alice,
            "POST",
            "/runtime/42",
            "DENY",
            403,
            "policy fd_control_plane_allow_edit",
        ),
        (bob, "GET", "/legacy", "ALLOW", 200, ""),
        (alice, "GET", "/undeclared-policy", "DENY", 403, "no policy"),
    ];
    for (caller, method, path, result, status, denied) in table {
        let d = env.route(*caller, method, path).await;
        let context = format!("{caller:?} {method} {path}: {d}");
        assert_eq!(d["result"], *result, "{context}");
        assert_eq!(d["status"], *status, "{context}");
        if !denied.is_empty() {
            assert!(
                d["deniedBy"].as_str().unwrap_or("").contains(denied),
                "{context}"
            );
        }
    }

    let found = env.route(alice, "GET", "/runtime/42").await;
    assert_eq!(found["backend"], "runtime");
    assert_eq!(found["template"], "/runtime/{id}");
    assert_eq!(
        found["explanation"]["bindings"],
        json!(["staging-admins", "viewers"])
    );
    let normalised = env.route(alice, "GET", "/a/../control-plane").await;
    assert_eq!(normalised["path"], "/control-plane");
    let missing = env.route(bob, "GET", "/nowhere").await;
    assert_eq!(
        missing["body"]["message"],
        "The request doesn't match any known API"
    );
    let refused = env.route(bob, "GET", "/control-plane").await;
    assert_eq!(refused["body"]["statusCode"], 403);
    assert_eq!(
        refused["body"]["message"],
        "You do not have permissions to access this feature, contact the administrator for more information."
    );

    // Bad questions are 400s that say what is missing.
    let (s, e) = env
        .send(
            post.clone(),
            "/api/v1/check",
            json!({"items": [{"route": true}]}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("request"));
    let (s, _) = env
        .send(
            post,
            "/api/v1/check",
            json!({"items": [{"route": true, "rule": "allow_all", "request": {"method": "GET", "path": "/"}}]}),
        )
        .await;
    assert_eq!(s, 400);
    env.running.shutdown().await;
}

#[tokio::test]
async fn a_route_naming_an_unknown_policy_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut rbac = settings(dir.path());
    rbac.routes
        .push(yaml_serde::from_str("{path: /x, policy: no_such_rule}").unwrap());
    let text = refusal(dir.path(), rbac).await;
    assert!(text.contains("no_such_rule"), "{text}");
}

/// Rönd's response filtering and row-filter queries are refused at start rather than skipped:
/// skipped, the backend's unfiltered answer would reach the caller.
#[tokio::test]
async fn an_operation_asking_for_filtering_stops_the_start() {
    let cases = [
        (
            json!({"requestFlow": {"policyName": "allow_all"}, "responseFlow": {"policyName": "allow_all"}}),
            "responseFlow.policyName",
        ),
        (
            json!({"requestFlow": {"policyName": "allow_all", "generateQuery": true}}),
            "requestFlow.generateQuery",
        ),
    ];
    for (x_rond, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut rbac = settings(dir.path());
        let file = dir.path().join("filtering-openapi.json");
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "filtering", "version": "1"},
            "paths": {"/filtered": {"get": {"x-rond": x_rond}}}
        });
        std::fs::write(&file, doc.to_string()).unwrap();
        rbac.openapi.push(OpenApiSource {
            backend: Some("runtime".into()),
            file,
        });
        let text = refusal(dir.path(), rbac).await;
        assert!(
            text.contains(expected) && text.contains("/filtered") && text.contains("not supported"),
            "{text}"
        );
    }
}
