//! A fresh server: health, readiness, metrics, the OpenAPI document, authentication with the
//! bootstrap key, answers for unknown paths and methods, and restarts.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_fresh_server_is_healthy_and_documented() {
    let s = Server::start().await;

    let health = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.json_with(200), json!({ "status": "ok" }));
    let id = health.header("x-request-id").expect("a request id header");
    assert_eq!(id.len(), 36, "a generated request id is a UUID: {id}");

    let ready = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.json_with(200), json!({ "status": "ready" }));

    let metrics = s.call(Method::GET, "/metrics", None, None).await;
    metrics.expect(200);
    assert_contains(metrics.header("content-type").unwrap(), "text/plain");
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("portcullis_http_requests_total{")
                && l.contains(r#"route="/healthz""#)
                && l.contains(r#"status="200""#)),
        "the /healthz request is counted: {}",
        metrics.text
    );
    assert_contains(&metrics.text, "portcullis_directory_keys");

    let doc = s
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .json_with(200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Portcullis admin API");
    // Every route of the server is documented, with its methods, and nothing else.
    let documented: Vec<(String, Vec<String>)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> = item.as_object().unwrap().keys().cloned().collect();
            methods.sort();
            (path.clone(), methods)
        })
        .collect();
    let expected: Vec<(String, Vec<String>)> = [
        ("/api/licensed-users-info/users", &["get"][..]),
        ("/api/licensed-users-info/users/quantity", &["get"]),
        ("/api/permission/", &["get"]),
        ("/api/permission/authorize", &["post"]),
        ("/api/permission/plugins/condition-rules", &["get"]),
        ("/api/permission/plugins/policies", &["get"]),
        ("/api/permission/policies", &["get", "post"]),
        (
            "/api/permission/policies/{kind}/{namespace}/{name}",
            &["delete", "get", "put"],
        ),
        ("/api/permission/roles", &["get", "post"]),
        ("/api/permission/roles/conditions", &["get", "post"]),
        (
            "/api/permission/roles/conditions/{id}",
            &["delete", "get", "put"],
        ),
        (
            "/api/permission/roles/{kind}/{namespace}/{name}",
            &["delete", "get", "post", "put"],
        ),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/check", &["post"]),
        ("/api/v1/me", &["get"]),
        ("/api/v1/me/keys", &["get", "post"]),
        ("/api/v1/me/keys/{keyId}", &["delete"]),
        ("/api/v1/me/permissions", &["get"]),
        ("/api/v1/orgs", &["get", "post"]),
        ("/api/v1/orgs/{org}", &["get", "patch"]),
        ("/api/v1/orgs/{org}/bindings", &["get", "post"]),
        (
            "/api/v1/orgs/{org}/bindings/{bindingId}",
            &["delete", "get", "put"],
        ),
        ("/api/v1/orgs/{org}/groups", &["get", "post"]),
        ("/api/v1/orgs/{org}/groups/{group}", &["delete", "get"]),
        (
            "/api/v1/orgs/{org}/groups/{group}/members",
            &["get", "post"],
        ),
        (
            "/api/v1/orgs/{org}/groups/{group}/members/groups/{child}",
            &["delete"],
        ),
        (
            "/api/v1/orgs/{org}/groups/{group}/members/users/{userId}",
            &["delete"],
        ),
        ("/api/v1/orgs/{org}/members", &["post"]),
        ("/api/v1/orgs/{org}/projects", &["get", "post"]),
        (
            "/api/v1/orgs/{org}/projects/{project}",
            &["delete", "get", "patch"],
        ),
        ("/api/v1/orgs/{org}/projects/{project}/members", &["get"]),
        (
            "/api/v1/orgs/{org}/projects/{project}/members/{userId}",
            &["delete", "put"],
        ),
        ("/api/v1/orgs/{org}/roles", &["get", "post"]),
        (
            "/api/v1/orgs/{org}/roles/{roleId}",
            &["delete", "get", "put"],
        ),
        ("/api/v1/orgs/{org}/users", &["get", "post"]),
        (
            "/api/v1/orgs/{org}/users/{userId}",
            &["delete", "get", "patch"],
        ),
        ("/api/v1/orgs/{org}/users/{userId}/deactivate", &["post"]),
        ("/api/v1/orgs/{org}/users/{userId}/keys", &["get", "post"]),
        (
            "/api/v1/orgs/{org}/users/{userId}/keys/{keyId}",
            &["delete"],
        ),
        ("/api/v1/orgs/{org}/users/{userId}/reactivate", &["post"]),
        ("/api/v1/orgs/{org}/users/{userId}/unlock", &["post"]),
        (
            "/api/v1/orgs/{org}/users/{userId}/sessions",
            &["delete", "get"],
        ),
        (
            "/api/v1/orgs/{org}/users/{userId}/sessions/{sessionId}",
            &["delete"],
        ),
        (
            "/api/v1/orgs/{org}/users/{userId}/temporary-password",
            &["post"],
        ),
        ("/api/v1/orgs/{org}/users/{userId}/mfa", &["delete"]),
        ("/api/v1/me/password", &["post"]),
        ("/api/v1/me/mfa", &["get"]),
        ("/api/v1/me/mfa/totp", &["delete", "post"]),
        ("/api/v1/me/mfa/totp/confirm", &["post"]),
        ("/api/v1/me/sessions", &["get"]),
        ("/api/v1/me/sessions/{sessionId}", &["delete"]),
        ("/api/v1/password-reset", &["post"]),
        ("/api/v1/password-reset/confirm", &["post"]),
        ("/oauth/token", &["post"]),
        ("/refreshtoken", &["post"]),
        ("/userinfo", &["get"]),
        ("/logout", &["get", "post"]),
        ("/apps", &["get"]),
        ("/.well-known/jwks.json", &["get"]),
        ("/web-login", &["get", "post"]),
        ("/web-login/totp", &["post"]),
        ("/web-login/password", &["get", "post"]),
        ("/web-login/mfa", &["get", "post"]),
        ("/web-login/forgot", &["get", "post"]),
        ("/web-login/reset", &["get", "post"]),
        ("/grant/bindings", &["post"]),
        ("/grant/bindings/resource/{resourceType}", &["post"]),
        ("/healthz", &["get"]),
        ("/metrics", &["get"]),
        ("/readyz", &["get"]),
        ("/revoke/bindings", &["post"]),
        ("/revoke/bindings/resource/{resourceType}", &["post"]),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.iter().map(|s| s.to_string()).collect()))
    .collect();
    let (mut documented, mut expected) = (documented, expected);
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "X-API-KEY");
    s.stop().await;
}

#[tokio::test]
async fn the_bootstrap_key_authenticates_in_both_header_styles_and_nothing_else_does() {
    let s = Server::start().await;
    assert!(s.admin().starts_with("pcl_"), "{}", s.admin());

    let me = s.get(s.admin(), "/api/v1/me").await.json_with(200);
    assert!(!me["id"].as_str().unwrap().is_empty());
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["username"], "admin");
    assert_eq!(me["kind"], "local");
    assert_eq!(me["consoleAccess"], true);
    assert_eq!(me["platformAdmin"], true);
    assert_eq!(me["credentialOrg"], json!(null));
    assert_eq!(
        me["orgs"],
        json!([{ "slug": "default", "name": "Default", "role": "admin", "status": "active", "groups": [], "projects": [] }])
    );

    let by_header = s
        .send(
            s.request(Method::GET, "/api/v1/me")
                .header("X-API-KEY", s.admin()),
        )
        .await
        .json_with(200);
    assert_eq!(by_header["id"], me["id"]);
    let lower_case_scheme = s
        .send(
            s.request(Method::GET, "/api/v1/me")
                .header("authorization", format!("bearer {}", s.admin())),
        )
        .await
        .json_with(200);
    assert_eq!(lower_case_scheme["email"], ADMIN_EMAIL);

    let missing = s.call(Method::GET, "/api/v1/me", None, None).await;
    assert_contains(&missing.error(401, "unauthenticated"), "Authorization");

    let unknown = format!("pcl_{}", "A".repeat(43));
    let wrong = s.get(&unknown, "/api/v1/me").await;
    assert_contains(&wrong.error(401, "unauthenticated"), "invalid");

    // The right key with its last character changed.
    let mut tampered = s.admin().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'x' { 'y' } else { 'x' });
    s.get(&tampered, "/api/v1/me")
        .await
        .error(401, "unauthenticated");

    let wrong_header = s
        .send(
            s.request(Method::GET, "/api/v1/me")
                .header("X-API-KEY", &unknown),
        )
        .await;
    wrong_header.error(401, "unauthenticated");
    let empty_header = s
        .send(s.request(Method::GET, "/api/v1/me").header("X-API-KEY", ""))
        .await;
    empty_header.error(401, "unauthenticated");
    let basic = s
        .send(
            s.request(Method::GET, "/api/v1/me")
                .basic_auth("admin", Some(s.admin())),
        )
        .await;
    basic.error(401, "unauthenticated");

    // A credential header twice is refused whichever of the two is good: which one counts
    // would be a guess (a proxy in front may have read the other).
    for (header, value) in [
        ("X-API-KEY", s.admin().to_owned()),
        ("authorization", format!("Bearer {}", s.admin())),
    ] {
        let other = if header == "X-API-KEY" {
            unknown.clone()
        } else {
            format!("Bearer {unknown}")
        };
        for (first, second) in [(&value, &other), (&other, &value)] {
            let twice = s
                .send(
                    s.request(Method::GET, "/api/v1/me")
                        .header(header, first)
                        .header(header, second),
                )
                .await;
            assert_contains(&twice.error(400, "bad_request"), "more than one");
        }
    }

    // Every authenticated endpoint refuses anonymous callers the same way.
    for (method, path) in [
        (Method::GET, "/api/v1/orgs"),
        (Method::GET, "/api/v1/orgs/default/users"),
        (Method::GET, "/api/v1/me/keys"),
        (Method::GET, "/api/v1/audit"),
        (Method::DELETE, "/api/v1/orgs/default/projects/x"),
    ] {
        s.call(method.clone(), path, None, None)
            .await
            .error(401, "unauthenticated");
    }
    s.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let s = Server::start().await;
    let nowhere = s.get(s.admin(), "/api/v1/nowhere").await;
    nowhere.error(404, "not_found");
    s.call(Method::GET, "/favicon.ico", None, None)
        .await
        .error(404, "not_found");

    let wrong = s.delete(s.admin(), "/api/v1/me").await;
    wrong.error(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("GET,HEAD"));
    s.put(s.admin(), "/api/v1/orgs", json!({ "slug": "x" }))
        .await
        .error(405, "method_not_allowed");
    s.call(Method::POST, "/healthz", None, None)
        .await
        .error(405, "method_not_allowed");

    // Unknown paths are counted under one label, not one series per path.
    let metrics = s.call(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("portcullis_http_requests_total{")
                && l.contains(r#"route="unmatched""#)
                && l.contains(r#"status="404""#)),
        "{}",
        metrics.text
    );
    assert!(!metrics.text.contains("favicon"), "paths are not labels");
    s.stop().await;
}

#[tokio::test]
async fn a_configured_admin_key_is_installed_not_shown_and_survives_a_restart() {
    let configured = "portcullis-test-admin-key-0123456789abcdef";
    let (mut s, shown) = Server::start_with_admin_key(configured).await;
    assert_eq!(shown, None, "a configured key is never echoed");

    let me = s.get(configured, "/api/v1/me").await.json_with(200);
    assert_eq!(me["email"], ADMIN_EMAIL);
    let keys = s.get(configured, "/api/v1/me/keys").await.json_with(200);
    assert_eq!(strings(&keys, "name"), ["bootstrap"]);
    assert_eq!(
        keys[0]["prefix"], "(configured)",
        "none of an operator-chosen key is stored in clear"
    );
    assert_eq!(keys[0]["org"], json!(null));

    let bob = s
        .create_user(configured, "default", json!({ "email": "bob@example.com" }))
        .await;
    let (bot_id, bot_key) = s.machine("default", "bot@example.com", "member").await;
    s.get(&bot_key, "/api/v1/orgs/default").await.expect(200);

    let shown_again = s.restart().await;
    assert_eq!(shown_again, None, "a second start creates nothing");
    let me_again = s.get(configured, "/api/v1/me").await.json_with(200);
    assert_eq!(me_again["id"], me["id"]);
    s.get(&bot_key, "/api/v1/orgs/default").await.expect(200);
    let bob_again = s
        .get(
            configured,
            &format!("/api/v1/orgs/default/users/{}", bob["id"].as_str().unwrap()),
        )
        .await
        .json_with(200);
    assert_eq!(bob_again["email"], "bob@example.com");
    // Shutting down flushed the activity of the requests made before the restart.
    let bot = s
        .get(configured, &format!("/api/v1/orgs/default/users/{bot_id}"))
        .await
        .json_with(200);
    assert!(is_timestamp(&bot["lastAccessAt"]), "{bot}");
    s.stop().await;
}

#[tokio::test]
async fn a_too_short_admin_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = portcullis_api::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.path().display()),
        admin_email: ADMIN_EMAIL.into(),
        admin_api_key: Some("too-short".into()),
        activity_flush_interval: std::time::Duration::from_millis(100),
        tls: None,
        gateway: Default::default(),
        auth: Default::default(),
        rbac: Default::default(),
    };
    match portcullis_api::start(config).await {
        Ok(_) => panic!("a 9-character admin key was accepted"),
        Err(e) => assert_contains(&e.to_string(), "32"),
    }
}
