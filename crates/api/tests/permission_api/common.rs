//! Helpers of the permission API tests: the Backstage error shape, a server started with RBAC
//! settings (policy administrators from configuration), and shortcuts for roles, policies,
//! conditions and decisions.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_EMAIL, Reply, Server};

/// Asserts an error answer in the Backstage shape
/// `{"error":{"name","message"},"request":{"method","url"},"response":{"statusCode"}}` with this
/// status, error name, request method and URL (path and query, as sent), and returns the message.
#[track_caller]
pub fn backstage(reply: &Reply, status: u16, name: &str, method: &str, url: &str) -> String {
    let body = reply.json_with(status);
    let keys: Vec<&String> = body
        .as_object()
        .unwrap_or_else(|| panic!("an object, got {body}"))
        .keys()
        .collect();
    assert_eq!(keys, ["error", "request", "response"], "the keys of {body}");
    assert_eq!(body["error"]["name"], name, "error name of {body}");
    assert_eq!(
        body["request"]["method"], method,
        "request method of {body}"
    );
    assert_eq!(body["request"]["url"], url, "request url of {body}");
    assert_eq!(
        body["response"]["statusCode"], status,
        "response status code of {body}"
    );
    assert!(
        body.get("code").is_none() && body["error"].get("code").is_none(),
        "no trace of our own error shape in {body}"
    );
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a string error message in {body}"))
        .to_owned();
    assert!(!message.is_empty(), "an empty message in {body}");
    message
}

/// Asserts a success answer without a body (201 of roles and policies, 204 of deletions).
#[track_caller]
pub fn empty(reply: &Reply, status: u16) {
    reply.expect(status);
    assert_eq!(reply.text, "", "no body with {status}");
}

/// `POST /api/permission/roles` as `key`, expecting 201.
pub async fn create_role(s: &Server, key: &str, name: &str, members: &[&str]) {
    let r = s
        .post(
            key,
            "/api/permission/roles",
            json!({ "name": name, "memberReferences": members }),
        )
        .await;
    empty(&r, 201);
}

/// `POST /api/permission/policies` with one policy as the admin, expecting 201.
pub async fn add_policy(s: &Server, subject: &str, permission: &str, action: &str, effect: &str) {
    let r = s
        .post(
            s.admin(),
            "/api/permission/policies",
            json!([{ "entityReference": subject, "permission": permission, "policy": action, "effect": effect }]),
        )
        .await;
    empty(&r, 201);
}

/// The path of a role or a subject's policies: `role:default/dev` -> `role/default/dev`.
pub fn ref_path(reference: &str) -> String {
    reference.replacen(':', "/", 1)
}

/// A resource permission as Backstage sends it.
pub fn resource(name: &str, resource_type: &str, action: &str) -> Value {
    json!({ "type": "resource", "name": name, "resourceType": resource_type, "attributes": { "action": action } })
}

/// A basic permission as Backstage sends it (without action: `use`).
pub fn basic(name: &str, action: Option<&str>) -> Value {
    match action {
        Some(a) => json!({ "type": "basic", "name": name, "attributes": { "action": a } }),
        None => json!({ "type": "basic", "name": name, "attributes": {} }),
    }
}

/// `catalog.entity.read` on `catalog-entity`.
pub fn catalog_read() -> Value {
    resource("catalog.entity.read", "catalog-entity", "read")
}

/// `POST /api/permission/authorize` with one item as `key`; returns the answered item.
pub async fn authorize(s: &Server, key: &str, permission: Value) -> Value {
    let body = s
        .post(
            key,
            "/api/permission/authorize",
            json!({ "items": [{ "id": "q1", "permission": permission }] }),
        )
        .await
        .json_with(200);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["id"], "q1", "{body}");
    items[0].clone()
}

/// The result (`ALLOW`, `DENY`, `CONDITIONAL`) of one authorize item.
pub async fn result_of(s: &Server, key: &str, permission: Value) -> String {
    authorize(s, key, permission).await["result"]
        .as_str()
        .expect("a result")
        .to_owned()
}

/// `POST /api/v1/check?explain=true` with one item as `key`; returns the answered item.
pub async fn check(s: &Server, key: &str, item: Value) -> Value {
    let body = s
        .post(
            key,
            "/api/v1/check?explain=true",
            json!({ "items": [item] }),
        )
        .await
        .json_with(200);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    items[0].clone()
}

/// A conditional policy of `role` for catalog entities.
pub fn condition(role: &str, actions: &[&str], conditions: Value) -> Value {
    json!({
        "result": "CONDITIONAL",
        "roleEntityRef": role,
        "pluginId": "catalog",
        "resourceType": "catalog-entity",
        "permissionMapping": actions,
        "conditions": conditions,
    })
}

/// `IS_ENTITY_OWNER` with these claims.
pub fn owner_rule(claims: &[&str]) -> Value {
    json!({ "rule": "IS_ENTITY_OWNER", "resourceType": "catalog-entity", "params": { "claims": claims } })
}

/// Stores a conditional policy as the admin, expecting 201 `{"id": n}`; returns the id.
pub async fn add_condition(s: &Server, body: Value) -> i64 {
    let answer = s
        .post(s.admin(), "/api/permission/roles/conditions", body)
        .await
        .json_with(201);
    let id = answer["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("an id in {answer}"));
    assert_eq!(answer, json!({ "id": id }));
    id
}

/// A catalog entity owned by `owner`.
pub fn entity_owned_by(owner: &str) -> Value {
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": { "name": "svc", "namespace": "default" },
        "spec": { "owner": owner, "lifecycle": "production", "type": "service" },
        "relations": [{ "type": "ownedBy", "targetRef": owner }],
    })
}

/// A server started with RBAC settings (e.g. `permission.rbac.admin.users`), with the few
/// request helpers the tests that need it use.
pub struct RbacServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bootstrap admin's key.
    pub admin_key: String,
    http: reqwest::Client,
    _running: portcullis_api::Running,
    _dir: tempfile::TempDir,
}

impl RbacServer {
    /// Starts a fresh server on an empty database with `rbac`.
    pub async fn start(rbac: portcullis_api::RbacSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = portcullis_api::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}/p.db", dir.path().display()),
            admin_email: ADMIN_EMAIL.into(),
            admin_api_key: None,
            activity_flush_interval: Duration::from_millis(100),
            tls: None,
            gateway: Default::default(),
            auth: Default::default(),
            rbac,
        };
        let running = portcullis_api::start(config).await.unwrap();
        let admin_key = running
            .bootstrap_key
            .clone()
            .expect("a fresh database generates the admin's key");
        Self {
            base: format!("http://{}", running.addr),
            admin_key,
            http: reqwest::Client::new(),
            _running: running,
            _dir: dir,
        }
    }

    /// Starts a server whose policy administrators (`permission.rbac.admin.users`) are `users`.
    pub async fn with_admin_users(users: &[&str]) -> Self {
        Self::start(portcullis_api::RbacSettings {
            admin_users: users.iter().map(|u| (*u).to_owned()).collect(),
            ..Default::default()
        })
        .await
    }

    /// The admin's key.
    pub fn admin(&self) -> &str {
        &self.admin_key
    }

    /// Sends a request with `key` as bearer and `body` as JSON.
    pub async fn call(&self, method: Method, key: &str, path: &str, body: Option<Value>) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("a readable body");
        Reply {
            status,
            headers,
            text,
        }
    }

    /// `GET`.
    pub async fn get(&self, key: &str, path: &str) -> Reply {
        self.call(Method::GET, key, path, None).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, key: &str, path: &str, body: Value) -> Reply {
        self.call(Method::POST, key, path, Some(body)).await
    }

    /// `PUT` with a JSON body.
    pub async fn put(&self, key: &str, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, key, path, Some(body)).await
    }

    /// `DELETE`.
    pub async fn delete(&self, key: &str, path: &str) -> Reply {
        self.call(Method::DELETE, key, path, None).await
    }

    /// A machine user of `org` with `role` and an API key bound to `org`: (id, key).
    pub async fn machine(&self, org: &str, email: &str, role: &str) -> (String, String) {
        let user = self
            .post(
                self.admin(),
                &format!("/api/v1/orgs/{org}/users"),
                json!({ "email": email, "kind": "machine", "orgRole": role }),
            )
            .await
            .json_with(201);
        let id = user["id"].as_str().unwrap().to_owned();
        let key = self
            .post(
                self.admin(),
                &format!("/api/v1/orgs/{org}/users/{id}/keys"),
                json!({ "name": "ci" }),
            )
            .await
            .json_with(201);
        (id, key["key"].as_str().unwrap().to_owned())
    }
}
