//! Rego decisions through the HTTP decision path: the seed 003 policies, its roles and bindings
//! imported from its JSON arrays, and the viewer / editor / manager table for Alice.

use std::path::Path;
use std::time::Duration;

use portcullis_api::{RbacSettings, ServerConfig};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "rego-decisions-test-admin-key-0123456789";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Decides `rule` for `principal` on a GET of `path`, with explain.
    async fn decide(&self, principal: &str, rule: &str) -> Value {
        let body = json!({"items": [{"principal": principal, "rule": rule, "request": {"method": "GET", "path": "/control-plane"}}]});
        let (status, answer) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/check?explain=true",
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["items"][0].clone()
    }
}

async fn start(dir: &tempfile::TempDir) -> (portcullis_api::Running, Client) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rego");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.path().display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some(ADMIN_KEY.into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: None,
        gateway: Default::default(),
        auth: Default::default(),
        rbac: RbacSettings {
            rego_policies_dir: Some(examples),
            rego_time_limit: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    };
    let running = portcullis_api::start(config).await.unwrap();
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
    };
    (running, client)
}

fn seed_roles() -> Value {
    json!([
        {"roleId": "control-plane-viewer", "name": "Viewer", "description": "views", "permissions": ["console.data-fabric.control-plane.view"], "__STATE__": "PUBLIC"},
        {"roleId": "control-plane-editor", "name": "Editor", "description": "edits", "permissions": ["console.data-fabric.control-plane.view", "console.data-fabric.control-plane.edit"], "__STATE__": "PUBLIC"},
        {"roleId": "control-plane-users-manager", "name": "Manager", "description": "manages", "permissions": ["console.data-fabric.control-plane.manage"], "__STATE__": "PUBLIC"}
    ])
}

fn seed_bindings() -> Value {
    json!([
        {"bindingId": "control-plane-users-managers", "subjects": [], "roles": ["control-plane-users-manager"], "__STATE__": "PUBLIC"},
        {"bindingId": "control-plane-editors", "subjects": [], "roles": ["control-plane-viewer", "control-plane-editor"], "__STATE__": "PUBLIC"},
        {"bindingId": "control-plane-viewers", "subjects": [], "roles": ["control-plane-viewer"], "__STATE__": "PUBLIC"}
    ])
}

#[tokio::test]
async fn the_alice_table_holds_through_the_decision_path() {
    let dir = tempfile::tempdir().unwrap();
    let (running, c) = start(&dir).await;
    assert_eq!(
        c.send(
            reqwest::Method::POST,
            "/api/v1/orgs/default/roles",
            Some(seed_roles())
        )
        .await
        .0,
        201
    );
    assert_eq!(
        c.send(
            reqwest::Method::POST,
            "/api/v1/orgs/default/bindings",
            Some(seed_bindings())
        )
        .await
        .0,
        201
    );
    let (_, alice) = c
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/default/users",
            Some(json!({"email": "alice@platform.world", "name": "Alice"})),
        )
        .await;
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    let principal = "user:default/alice";

    // Before any binding names her, only allow_all lets her in.
    assert_eq!(c.decide(principal, "allow_all").await["result"], "ALLOW");
    assert_eq!(
        c.decide(principal, "fd_control_plane_allow_view").await["result"],
        "DENY"
    );

    // Alice becomes a viewer: the seed's table.
    let viewers = json!({"subjects": [alice_id], "roles": ["control-plane-viewer"]});
    assert_eq!(
        c.send(
            reqwest::Method::PUT,
            "/api/v1/orgs/default/bindings/control-plane-viewers",
            Some(viewers)
        )
        .await
        .0,
        200
    );
    let table = [
        ("allow_all", "ALLOW"),
        ("allow_manage_cp_users", "DENY"),
        ("fd_control_plane_allow_view", "ALLOW"),
        ("fd_control_plane_allow_edit", "DENY"),
    ];
    for (rule, want) in table {
        let d = c.decide(principal, rule).await;
        assert_eq!(d["result"], want, "{rule}: {d}");
    }
    let explained = c.decide(principal, "fd_control_plane_allow_view").await;
    assert_eq!(
        explained["explanation"]["bindings"],
        json!(["control-plane-viewers"])
    );
    assert_eq!(
        explained["explanation"]["roles"],
        json!(["control-plane-viewer"])
    );

    // As an editor she may edit; a dotted rule name is read as Rönd does ('.' becomes '_').
    let editors =
        json!({"subjects": [alice_id], "roles": ["control-plane-viewer", "control-plane-editor"]});
    assert_eq!(
        c.send(
            reqwest::Method::PUT,
            "/api/v1/orgs/default/bindings/control-plane-editors",
            Some(editors)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.decide(principal, "fd_control_plane_allow_edit").await["result"],
        "ALLOW"
    );
    let dotted = c.decide(principal, "fd.control_plane.allow_edit").await;
    assert_eq!(
        (dotted["rule"].as_str(), dotted["result"].as_str()),
        (Some("fd_control_plane_allow_edit"), Some("ALLOW"))
    );
    assert_eq!(
        c.decide(principal, "allow_manage_cp_users").await["result"],
        "DENY"
    );

    // Bindings by group: members of group 'admins' manage users.
    assert_eq!(
        c.send(
            reqwest::Method::POST,
            "/api/v1/orgs/default/groups",
            Some(json!({"name": "admins"}))
        )
        .await
        .0,
        201
    );
    let (_, bob) = c
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/default/users",
            Some(json!({"email": "bob@platform.world"})),
        )
        .await;
    let bob_id = bob["id"].as_str().unwrap();
    assert_eq!(
        c.send(
            reqwest::Method::POST,
            "/api/v1/orgs/default/groups/admins/members",
            Some(json!({"userId": bob_id}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.decide("user:default/bob", "allow_manage_cp_users").await["result"],
        "DENY"
    );
    let managers = json!({"groups": ["admins"], "roles": ["control-plane-users-manager"]});
    assert_eq!(
        c.send(
            reqwest::Method::PUT,
            "/api/v1/orgs/default/bindings/control-plane-users-managers",
            Some(managers)
        )
        .await
        .0,
        200
    );
    let d = c.decide("user:default/bob", "allow_manage_cp_users").await;
    assert_eq!(d["result"], "ALLOW", "{d}");
    assert_eq!(d["explanation"]["groups"], json!(["admins"]));
    running.shutdown().await;
}

#[tokio::test]
async fn the_input_document_is_built_as_rond_builds_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policies");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(
        policy.join("input.rego"),
        "package policies\nimport rego.v1\n\
         header_ok if get_header(\"X-Tenant\", input.request.headers) == \"acme\"\n\
         body_seen if input.request.body.name == \"svc\"\n\
         query_ok if input.request.query.page[0] == \"2\"\n\
         client_ok if input.clientType == \"cms\"\n\
         user_ok if { input.user.properties.email == \"admin@localhost\"; count(input.user.bindings) == 0 }\n",
    )
    .unwrap();
    let examples_dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", examples_dir.path().display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some(ADMIN_KEY.into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: None,
        gateway: Default::default(),
        auth: Default::default(),
        rbac: RbacSettings {
            rego_policies_dir: Some(policy),
            ..Default::default()
        },
    };
    let running = portcullis_api::start(config).await.unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
    };
    let request = json!({"method": "post", "path": "/x", "headers": {"x-tenant": "acme", "client-type": "cms"}, "query": {"page": "2"}, "body": {"name": "svc"}});
    for rule in ["header_ok", "body_seen", "query_ok", "client_ok", "user_ok"] {
        let body = json!({"items": [{"principal": "user:default/admin", "rule": rule, "request": request}]});
        let (status, answer) = c
            .send(reqwest::Method::POST, "/api/v1/check", Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["items"][0]["result"], "ALLOW", "{rule}: {answer}");
    }
    // The body goes to the policy only for POST/PUT/PATCH/DELETE.
    let get = json!({"items": [{"principal": "user:default/admin", "rule": "body_seen", "request": {"method": "GET", "path": "/x", "body": {"name": "svc"}}}]});
    assert_eq!(
        c.send(reqwest::Method::POST, "/api/v1/check", Some(get))
            .await
            .1["items"][0]["result"],
        "DENY"
    );
    // Both or neither of permission and rule: 400.
    let neither = json!({"items": [{"principal": "user:default/admin"}]});
    assert_eq!(
        c.send(reqwest::Method::POST, "/api/v1/check", Some(neither))
            .await
            .0,
        400
    );
    running.shutdown().await;
}
