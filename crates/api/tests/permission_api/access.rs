//! Who may use the RBAC API: 401 without a valid key, 403 for users who are not policy
//! administrators, and policy administrators by platform role, by `role:default/rbac_admin`
//! membership from configuration, or by a REST role holding `policy-entity` permissions.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

/// Every endpoint reserved to policy administrators: (method, path, body, action needed).
fn admin_endpoints(condition_id: i64) -> Vec<(Method, String, Option<Value>, &'static str)> {
    let cond = format!("/api/permission/roles/conditions/{condition_id}");
    let cond_body = condition(
        "role:default/dev",
        &["delete"],
        owner_rule(&["$currentUser"]),
    );
    vec![
        (Method::GET, "/api/permission/".into(), None, "read"),
        (Method::GET, "/api/permission/roles".into(), None, "read"),
        (
            Method::POST,
            "/api/permission/roles".into(),
            Some(json!({ "name": "role:default/mine", "memberReferences": ["user:default/bot"] })),
            "create",
        ),
        (
            Method::GET,
            "/api/permission/roles/role/default/dev".into(),
            None,
            "read",
        ),
        (
            Method::POST,
            "/api/permission/roles/role/default/mine".into(),
            Some(json!({ "memberReferences": ["user:default/bot"] })),
            "create",
        ),
        (
            Method::PUT,
            "/api/permission/roles/role/default/dev".into(),
            Some(json!({
                "oldRole": { "name": "role:default/dev", "memberReferences": ["user:default/alice"] },
                "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/bot"] },
            })),
            "update",
        ),
        (
            Method::DELETE,
            "/api/permission/roles/role/default/dev?memberReferences=user:default/alice".into(),
            None,
            "delete",
        ),
        (
            Method::DELETE,
            "/api/permission/roles/role/default/dev".into(),
            None,
            "delete",
        ),
        (Method::GET, "/api/permission/policies".into(), None, "read"),
        (
            Method::POST,
            "/api/permission/policies".into(),
            Some(json!([{ "entityReference": "user:default/bot", "permission": "catalog-entity", "policy": "delete", "effect": "allow" }])),
            "create",
        ),
        (
            Method::GET,
            "/api/permission/policies/role/default/dev".into(),
            None,
            "read",
        ),
        (
            Method::PUT,
            "/api/permission/policies/role/default/dev".into(),
            Some(json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "delete", "effect": "allow" }],
            })),
            "update",
        ),
        (
            Method::DELETE,
            "/api/permission/policies/role/default/dev?permission=catalog-entity&policy=read&effect=allow".into(),
            None,
            "delete",
        ),
        (
            Method::DELETE,
            "/api/permission/policies/role/default/dev".into(),
            None,
            "delete",
        ),
        (
            Method::GET,
            "/api/permission/roles/conditions".into(),
            None,
            "read",
        ),
        (
            Method::POST,
            "/api/permission/roles/conditions".into(),
            Some(cond_body.clone()),
            "create",
        ),
        (Method::GET, cond.clone(), None, "read"),
        (Method::PUT, cond.clone(), Some(cond_body), "update"),
        (Method::DELETE, cond, None, "delete"),
        (
            Method::GET,
            "/api/permission/plugins/policies".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/api/permission/plugins/condition-rules".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/api/licensed-users-info/users/quantity".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/api/licensed-users-info/users".into(),
            None,
            "read",
        ),
    ]
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401_in_the_backstage_shape() {
    let s = Server::start().await;
    let cases = [
        (Method::GET, "/api/permission/roles", None),
        (Method::GET, "/api/permission/policies", None),
        (
            Method::POST,
            "/api/permission/authorize",
            Some(json!({ "items": [{ "id": "a", "permission": catalog_read() }] })),
        ),
        (Method::GET, "/api/permission/plugins/policies", None),
        (Method::GET, "/api/licensed-users-info/users", None),
        (Method::GET, "/api/licensed-users-info/users/quantity", None),
    ];
    for (method, path, body) in cases {
        let missing = s.call(method.clone(), path, None, body.as_ref()).await;
        let message = backstage(&missing, 401, "AuthenticationError", method.as_str(), path);
        assert_contains(&message, "missing credentials");

        let wrong = s
            .call(
                method.clone(),
                path,
                Some("pcl_not_a_real_key_0123456789"),
                body.as_ref(),
            )
            .await;
        let message = backstage(&wrong, 401, "AuthenticationError", method.as_str(), path);
        assert_eq!(message, "invalid, expired or revoked API key");
    }

    // The decision endpoints of our own API keep our error shape.
    let r = s
        .call(
            Method::POST,
            "/api/v1/check",
            None,
            Some(&json!({ "items": [{ "permission": catalog_read() }] })),
        )
        .await;
    assert_contains(&r.error(401, "unauthenticated"), "missing credentials");
    s.call(Method::GET, "/api/v1/me/permissions", None, None)
        .await
        .error(401, "unauthenticated");
}

#[tokio::test]
async fn a_member_gets_403_on_the_rbac_api_and_user_statistics_and_changes_nothing() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    // An org admin is no policy administrator either.
    let (_, boss) = s.machine("default", "boss@example.com", "admin").await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/alice"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    let id = add_condition(
        &s,
        condition(
            "role:default/dev",
            &["update"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    let roles_before = s
        .get(s.admin(), "/api/permission/roles")
        .await
        .json_with(200);
    let policies_before = s
        .get(s.admin(), "/api/permission/policies")
        .await
        .json_with(200);
    let conditions_before = s
        .get(s.admin(), "/api/permission/roles/conditions")
        .await
        .json_with(200);

    for key in [&bot, &boss] {
        for (method, path, body, action) in admin_endpoints(id) {
            let r = s
                .call(method.clone(), &path, Some(key), body.as_ref())
                .await;
            let message = backstage(&r, 403, "NotAllowedError", method.as_str(), &path);
            assert_eq!(
                message,
                format!(
                    "this needs the policy.entity.{action} permission (a policy administrator)"
                ),
                "{method} {path}"
            );
        }
    }

    assert_eq!(
        s.get(s.admin(), "/api/permission/roles")
            .await
            .json_with(200),
        roles_before
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/policies")
            .await
            .json_with(200),
        policies_before
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles/conditions")
            .await
            .json_with(200),
        conditions_before
    );

    // Deciding for oneself needs no administration.
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    let mine = s.get(&bot, "/api/v1/me/permissions").await.json_with(200);
    assert_eq!(mine["principal"], "user:default/bot");
}

#[tokio::test]
async fn the_bootstrap_platform_admin_is_a_policy_administrator() {
    let s = Server::start().await;
    for path in [
        "/api/permission/roles",
        "/api/permission/policies",
        "/api/permission/roles/conditions",
        "/api/permission/plugins/policies",
        "/api/permission/plugins/condition-rules",
        "/api/licensed-users-info/users",
    ] {
        let list = s.get(s.admin(), path).await.json_with(200);
        assert!(list.is_array(), "{path}: {list}");
    }
    // The platform admin has no RBAC role: it administers policies without holding any.
    let me = check(&s, s.admin(), json!({ "permission": catalog_read() })).await;
    assert_eq!(me["principal"], "user:default/admin");
    assert_eq!(me["explanation"]["roles"], json!([]));
}

#[tokio::test]
async fn a_configured_rbac_admin_user_administers_policies() {
    let s = RbacServer::with_admin_users(&["user:default/Boss"]).await;
    let (_, boss) = s.machine("default", "boss@example.com", "member").await;
    let (_, eve) = s.machine("default", "eve@example.com", "member").await;

    // The configured user holds role:default/rbac_admin (the reference lower-cases user refs).
    let roles = s.get(&boss, "/api/permission/roles").await.json_with(200);
    let admin_role = roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "role:default/rbac_admin")
        .unwrap_or_else(|| panic!("role:default/rbac_admin in {roles}"));
    assert_eq!(admin_role["memberReferences"], json!(["user:default/boss"]));
    assert_eq!(admin_role["metadata"]["source"], "configuration");

    // Its default policies: policy-entity CRUD and catalog-entity read.
    let policies = s
        .get(&boss, "/api/permission/policies/role/default/rbac_admin")
        .await
        .json_with(200);
    let mut lines: Vec<String> = policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["entityReference"], "role:default/rbac_admin");
            assert_eq!(p["effect"], "allow");
            assert_eq!(p["metadata"], json!({ "source": "configuration" }));
            format!(
                "{} {}",
                p["permission"].as_str().unwrap(),
                p["policy"].as_str().unwrap()
            )
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "catalog-entity read",
            "policy-entity create",
            "policy-entity delete",
            "policy-entity read",
            "policy-entity update",
        ]
    );

    // The administrator creates, changes and deletes; authorship is recorded.
    let r = s
        .post(
            &boss,
            "/api/permission/roles",
            json!({ "name": "role:default/team", "memberReferences": ["user:default/eve"] }),
        )
        .await;
    empty(&r, 201);
    let team = s
        .get(&boss, "/api/permission/roles/role/default/team")
        .await
        .json_with(200);
    assert_eq!(team[0]["metadata"]["author"], "user:default/boss");
    assert_eq!(team[0]["metadata"]["modifiedBy"], "user:default/boss");
    assert_eq!(team[0]["metadata"]["source"], "rest");
    let r = s
        .post(
            &boss,
            "/api/permission/policies",
            json!([{ "entityReference": "role:default/team", "permission": "catalog-entity", "policy": "read", "effect": "allow" }]),
        )
        .await;
    empty(&r, 201);
    let r = s
        .put(
            &boss,
            "/api/permission/policies/role/default/team",
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }],
            }),
        )
        .await;
    empty(&r, 200);
    empty(
        &s.delete(&boss, "/api/permission/roles/role/default/team")
            .await,
        204,
    );
    s.get(&boss, "/api/licensed-users-info/users/quantity")
        .await
        .expect(200);
    s.get(&boss, "/api/permission/plugins/condition-rules")
        .await
        .expect(200);

    // Decisions follow the role's policies.
    let allowed = s
        .post(
            &boss,
            "/api/permission/authorize",
            json!({ "items": [
                { "id": "p", "permission": resource("policy.entity.create", "policy-entity", "create") },
                { "id": "c", "permission": catalog_read() },
                { "id": "d", "permission": resource("catalog.entity.delete", "catalog-entity", "delete") },
            ] }),
        )
        .await
        .json_with(200);
    assert_eq!(
        allowed,
        json!({ "items": [
            { "id": "p", "result": "ALLOW" },
            { "id": "c", "result": "ALLOW" },
            { "id": "d", "result": "DENY" },
        ] })
    );

    // A policy administrator may check others; a plain member may not.
    let other = s
        .post(
            &boss,
            "/api/v1/check",
            json!({ "items": [{ "principal": "user:default/eve", "permission": catalog_read() }] }),
        )
        .await
        .json_with(200);
    assert_eq!(other["items"][0]["principal"], "user:default/eve");
    assert_eq!(other["items"][0]["result"], "DENY");

    // Someone else is not an administrator.
    let r = s.get(&eve, "/api/permission/roles").await;
    backstage(&r, 403, "NotAllowedError", "GET", "/api/permission/roles");
}

#[tokio::test]
async fn a_rest_role_with_policy_entity_read_gives_read_only_administration() {
    let s = Server::start().await;
    let (_, carol) = s.machine("default", "carol@example.com", "member").await;
    backstage(
        &s.get(&carol, "/api/permission/roles").await,
        403,
        "NotAllowedError",
        "GET",
        "/api/permission/roles",
    );

    create_role(
        &s,
        s.admin(),
        "role:default/auditors",
        &["user:default/carol"],
    )
    .await;
    add_policy(
        &s,
        "role:default/auditors",
        "policy-entity",
        "read",
        "allow",
    )
    .await;

    // Reading is allowed on the very next request …
    let roles = s.get(&carol, "/api/permission/roles").await.json_with(200);
    assert_eq!(strings(&roles, "name"), ["role:default/auditors"]);
    s.get(&carol, "/api/permission/policies").await.expect(200);
    s.get(&carol, "/api/permission/plugins/policies")
        .await
        .expect(200);
    s.get(&carol, "/api/licensed-users-info/users/quantity")
        .await
        .expect(200);
    // … writing is not: each action needs its own permission.
    let r = s
        .post(
            &carol,
            "/api/permission/roles",
            json!({ "name": "role:default/mine", "memberReferences": ["user:default/carol"] }),
        )
        .await;
    let message = backstage(&r, 403, "NotAllowedError", "POST", "/api/permission/roles");
    assert_contains(&message, "policy.entity.create");
    let r = s
        .delete(&carol, "/api/permission/roles/role/default/auditors")
        .await;
    let message = backstage(
        &r,
        403,
        "NotAllowedError",
        "DELETE",
        "/api/permission/roles/role/default/auditors",
    );
    assert_contains(&message, "policy.entity.delete");

    // Taking the policy away takes the access away at once.
    empty(
        &s.delete(
            s.admin(),
            "/api/permission/policies/role/default/auditors?permission=policy-entity&policy=read&effect=allow",
        )
        .await,
        204,
    );
    backstage(
        &s.get(&carol, "/api/permission/roles").await,
        403,
        "NotAllowedError",
        "GET",
        "/api/permission/roles",
    );
}

#[tokio::test]
async fn a_configured_super_user_is_allowed_everything_and_administers_policies() {
    let s = RbacServer::start(portcullis_api::RbacSettings {
        super_users: vec!["user:default/root".into()],
        ..Default::default()
    })
    .await;
    let (_, root) = s.machine("default", "root@example.com", "member").await;
    let (_, eve) = s.machine("default", "eve@example.com", "member").await;
    let ask = json!({ "items": [
        { "id": "a", "permission": catalog_read() },
        { "id": "b", "permission": basic("bulk.import", None) },
        { "id": "c", "permission": resource("policy.entity.delete", "policy-entity", "delete") },
    ] });
    assert_eq!(
        s.post(&root, "/api/permission/authorize", ask.clone())
            .await
            .json_with(200),
        json!({ "items": [
            { "id": "a", "result": "ALLOW" },
            { "id": "b", "result": "ALLOW" },
            { "id": "c", "result": "ALLOW" },
        ] })
    );
    let explained = s
        .post(
            &root,
            "/api/v1/check?explain=true",
            json!({ "items": [{ "permission": catalog_read() }] }),
        )
        .await
        .json_with(200);
    assert_eq!(explained["items"][0]["reason"], "super user");
    s.get(&root, "/api/permission/roles").await.expect(200);
    s.get(&root, "/api/licensed-users-info/users")
        .await
        .expect(200);

    assert_eq!(
        s.post(&eve, "/api/permission/authorize", ask)
            .await
            .json_with(200)["items"][0]["result"],
        "DENY"
    );
    backstage(
        &s.get(&eve, "/api/permission/roles").await,
        403,
        "NotAllowedError",
        "GET",
        "/api/permission/roles",
    );
}

#[tokio::test]
async fn the_permission_root_tells_whether_the_caller_administers_policies() {
    let s = Server::start().await;
    let root = "/api/permission/";
    let (_, carol) = s.machine("default", "carol@example.com", "member").await;

    assert_eq!(
        s.get(s.admin(), root).await.json_with(200),
        json!({ "status": "Authorized" })
    );
    let message = backstage(
        &s.get(&carol, root).await,
        403,
        "NotAllowedError",
        "GET",
        root,
    );
    assert_eq!(
        message,
        "this needs the policy.entity.read permission (a policy administrator)"
    );
    backstage(
        &s.call(Method::GET, root, None, None).await,
        401,
        "AuthenticationError",
        "GET",
        root,
    );

    // A role holding policy-entity read makes her one, from the very next request.
    create_role(
        &s,
        s.admin(),
        "role:default/auditors",
        &["user:default/carol"],
    )
    .await;
    add_policy(
        &s,
        "role:default/auditors",
        "policy-entity",
        "read",
        "allow",
    )
    .await;
    assert_eq!(
        s.get(&carol, root).await.json_with(200),
        json!({ "status": "Authorized" })
    );
    // Until it is taken away.
    empty(
        &s.delete(s.admin(), "/api/permission/roles/role/default/auditors")
            .await,
        204,
    );
    backstage(
        &s.get(&carol, root).await,
        403,
        "NotAllowedError",
        "GET",
        root,
    );
}
