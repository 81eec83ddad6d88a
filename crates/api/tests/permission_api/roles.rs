//! `/api/permission/roles`: create, read, update (members, rename), remove members, delete;
//! validation messages, conflicts and unknown roles.

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

const ROLES: &str = "/api/permission/roles";

/// `GET /api/permission/roles/role/default/<name>` as the admin, expecting one role.
async fn role(s: &Server, name: &str) -> Value {
    let list = s
        .get(s.admin(), &format!("{ROLES}/role/default/{name}"))
        .await
        .json_with(200);
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("an array, got {list}"));
    assert_eq!(items.len(), 1, "{list}");
    items[0].clone()
}

#[tokio::test]
async fn roles_are_created_listed_read_and_carry_metadata() {
    let s = Server::start().await;
    assert_eq!(
        s.get(s.admin(), ROLES).await.json_with(200),
        json!([]),
        "no roles without configured policy administrators"
    );

    let r = s
        .post(
            s.admin(),
            ROLES,
            json!({
                "memberReferences": ["group:default/example", "user:default/Alice"],
                "name": "role:default/test",
                "metadata": { "description": "This is a test role", "owner": "group:default/example" },
            }),
        )
        .await;
    empty(&r, 201);
    // The other way to create: the name in the path, members in the body.
    empty(
        &s.post(
            s.admin(),
            &format!("{ROLES}/role/default/test_admin"),
            json!({ "memberReferences": ["group:default/test"] }),
        )
        .await,
        201,
    );
    // The path and the body may both name it, alike.
    empty(
        &s.post(
            s.admin(),
            &format!("{ROLES}/role/default/guests"),
            json!({ "name": "role:default/guests", "memberReferences": ["user:default/guest"] }),
        )
        .await,
        201,
    );

    let list = s.get(s.admin(), ROLES).await.json_with(200);
    assert_eq!(
        strings(&list, "name"),
        [
            "role:default/guests",
            "role:default/test",
            "role:default/test_admin"
        ]
    );
    let test = role(&s, "test").await;
    assert_eq!(
        list.as_array().unwrap()[1],
        test,
        "the list and the single read agree"
    );
    assert_eq!(test["name"], "role:default/test");
    assert_eq!(
        test["memberReferences"],
        json!(["group:default/example", "user:default/alice"]),
        "members sorted, user references lower-cased"
    );
    let meta = &test["metadata"];
    assert_eq!(meta["source"], "rest");
    assert_eq!(meta["description"], "This is a test role");
    assert_eq!(meta["owner"], "group:default/example");
    assert_eq!(meta["author"], "user:default/admin");
    assert_eq!(meta["modifiedBy"], "user:default/admin");
    assert!(is_timestamp(&meta["createdAt"]), "{meta}");
    assert!(is_timestamp(&meta["lastModified"]), "{meta}");

    let test_admin = role(&s, "test_admin").await;
    assert_eq!(test_admin["name"], "role:default/test_admin");
    assert_eq!(
        test_admin["memberReferences"],
        json!(["group:default/test"])
    );
    assert_eq!(test_admin["metadata"]["source"], "rest");
    assert!(
        test_admin["metadata"].get("description").is_none(),
        "{test_admin}"
    );
}

#[tokio::test]
async fn updating_a_role_replaces_members_and_a_rename_carries_policies_and_conditions() {
    let s = Server::start().await;
    empty(
        &s.post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/test", "memberReferences": ["group:default/example"], "metadata": { "description": "first" } }),
        )
        .await,
        201,
    );
    let before = role(&s, "test").await;

    // The seed's example: add a member.
    let r = s
        .put(
            s.admin(),
            &format!("{ROLES}/role/default/test"),
            json!({
                "oldRole": { "memberReferences": ["group:default/example"], "name": "role:default/test" },
                "newRole": { "memberReferences": ["group:default/example", "user:default/test"], "name": "role:default/test" },
            }),
        )
        .await;
    empty(&r, 200);
    let after = role(&s, "test").await;
    assert_eq!(
        after["memberReferences"],
        json!(["group:default/example", "user:default/test"])
    );
    assert_eq!(after["metadata"]["description"], "first", "kept");
    assert_eq!(
        after["metadata"]["createdAt"],
        before["metadata"]["createdAt"]
    );
    assert!(
        millis(&after["metadata"]["lastModified"]) >= millis(&before["metadata"]["lastModified"])
    );

    // Remove a member and change the description.
    empty(
        &s.put(
            s.admin(),
            &format!("{ROLES}/role/default/test"),
            json!({
                "oldRole": { "memberReferences": ["group:default/example", "user:default/test"], "name": "role:default/test" },
                "newRole": { "memberReferences": ["user:default/test"], "name": "role:default/test", "metadata": { "description": "second" } },
            }),
        )
        .await,
        200,
    );
    let after = role(&s, "test").await;
    assert_eq!(after["memberReferences"], json!(["user:default/test"]));
    assert_eq!(after["metadata"]["description"], "second");

    // A rename carries the role's policies and conditions along.
    add_policy(&s, "role:default/test", "catalog-entity", "read", "allow").await;
    let id = add_condition(
        &s,
        condition(
            "role:default/test",
            &["delete"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    empty(
        &s.put(
            s.admin(),
            &format!("{ROLES}/role/default/test"),
            json!({
                "oldRole": { "memberReferences": ["user:default/test"], "name": "role:default/test" },
                "newRole": { "memberReferences": ["user:default/test"], "name": "role:default/renamed" },
            }),
        )
        .await,
        200,
    );
    let renamed = role(&s, "renamed").await;
    assert_eq!(renamed["memberReferences"], json!(["user:default/test"]));
    assert_eq!(renamed["metadata"]["description"], "second");
    assert_eq!(
        renamed["metadata"]["createdAt"],
        before["metadata"]["createdAt"]
    );
    let old = s
        .get(s.admin(), &format!("{ROLES}/role/default/test"))
        .await;
    let message = backstage(
        &old,
        404,
        "NotFoundError",
        "GET",
        "/api/permission/roles/role/default/test",
    );
    assert_eq!(message, "role:default/test was not found");
    let policies = s
        .get(s.admin(), "/api/permission/policies/role/default/renamed")
        .await
        .json_with(200);
    assert_eq!(
        policies,
        json!([{ "entityReference": "role:default/renamed", "permission": "catalog-entity", "policy": "read", "effect": "allow", "metadata": { "source": "rest" } }])
    );
    backstage(
        &s.get(s.admin(), "/api/permission/policies/role/default/test")
            .await,
        404,
        "NotFoundError",
        "GET",
        "/api/permission/policies/role/default/test",
    );
    let cond = s
        .get(s.admin(), &format!("/api/permission/roles/conditions/{id}"))
        .await
        .json_with(200);
    assert_eq!(cond["roleEntityRef"], "role:default/renamed");

    // The renamed role decides for its member.
    let (_, test) = s.machine("default", "test@example.com", "member").await;
    assert_eq!(result_of(&s, &test, catalog_read()).await, "ALLOW");
}

#[tokio::test]
async fn deleting_members_and_roles() {
    let s = Server::start().await;
    let (_, a) = s.machine("default", "a@example.com", "member").await;
    create_role(
        &s,
        s.admin(),
        "role:default/dev",
        &["user:default/a", "user:default/b"],
    )
    .await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    add_condition(
        &s,
        condition(
            "role:default/dev",
            &["update"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    assert_eq!(result_of(&s, &a, catalog_read()).await, "ALLOW");

    // One member goes; the role stays.
    let r = s
        .delete(
            s.admin(),
            &format!("{ROLES}/role/default/dev?memberReferences=user:default/a"),
        )
        .await;
    empty(&r, 204);
    assert_eq!(
        role(&s, "dev").await["memberReferences"],
        json!(["user:default/b"])
    );
    assert_eq!(
        result_of(&s, &a, catalog_read()).await,
        "DENY",
        "visible to the very next request"
    );

    // Removing a member the role does not have: 404.
    let path = format!("{ROLES}/role/default/dev?memberReferences=user:default/zed");
    let message = backstage(
        &s.delete(s.admin(), &path).await,
        404,
        "NotFoundError",
        "DELETE",
        &path,
    );
    assert_contains(&message, "user:default/zed");

    // The last member goes: the role goes with its policies and conditions.
    empty(
        &s.delete(
            s.admin(),
            &format!("{ROLES}/role/default/dev?memberReferences=user:default/b"),
        )
        .await,
        204,
    );
    assert_eq!(s.get(s.admin(), ROLES).await.json_with(200), json!([]));
    s.get(s.admin(), "/api/permission/policies/role/default/dev")
        .await
        .expect(404);
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles/conditions")
            .await
            .json_with(200),
        json!([])
    );

    // Deleting a whole role: members, policies and conditions go.
    create_role(&s, s.admin(), "role:default/ops", &["user:default/a"]).await;
    add_policy(&s, "role:default/ops", "catalog-entity", "read", "allow").await;
    add_policy(
        &s,
        "role:default/ops",
        "catalog.entity.create",
        "create",
        "allow",
    )
    .await;
    add_condition(
        &s,
        condition(
            "role:default/ops",
            &["delete"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    create_role(&s, s.admin(), "role:default/keep", &["user:default/a"]).await;
    add_policy(&s, "role:default/keep", "catalog-entity", "update", "allow").await;
    assert_eq!(result_of(&s, &a, catalog_read()).await, "ALLOW");
    empty(
        &s.delete(s.admin(), &format!("{ROLES}/role/default/ops"))
            .await,
        204,
    );
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/keep"]
    );
    let policies = s
        .get(s.admin(), "/api/permission/policies")
        .await
        .json_with(200);
    assert!(
        policies
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["entityReference"] != "role:default/ops"),
        "{policies}"
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles/conditions")
            .await
            .json_with(200),
        json!([])
    );
    assert_eq!(result_of(&s, &a, catalog_read()).await, "DENY");
    assert_eq!(
        result_of(
            &s,
            &a,
            resource("catalog.entity.refresh", "catalog-entity", "update")
        )
        .await,
        "ALLOW",
        "the other role still counts"
    );

    // Deleting it again: 404.
    let message = backstage(
        &s.delete(s.admin(), &format!("{ROLES}/role/default/ops"))
            .await,
        404,
        "NotFoundError",
        "DELETE",
        "/api/permission/roles/role/default/ops",
    );
    assert_eq!(message, "role:default/ops was not found");
}

#[tokio::test]
async fn invalid_roles_get_400_with_the_reference_messages() {
    let s = Server::start().await;
    let cases: [(Value, &str); 9] = [
        (
            json!({ "memberReferences": ["user:default/a"] }),
            "'name' field must not be empty",
        ),
        (
            json!({ "name": "", "memberReferences": ["user:default/a"] }),
            "'name' field must not be empty",
        ),
        (
            json!({ "name": "user:default/x", "memberReferences": ["user:default/a"] }),
            "Unsupported kind user. Supported value should be \"role\"",
        ),
        (
            json!({ "name": "role:default/x", "memberReferences": [] }),
            "'memberReferences' field must not be empty",
        ),
        (
            json!({ "name": "role:default/x" }),
            "'memberReferences' field must not be empty",
        ),
        (
            json!({ "name": "role:default/x", "memberReferences": ["role:default/y"] }),
            "Unsupported kind role. List supported values [\"user\", \"group\"]",
        ),
        (
            json!({ "name": "role:default/x", "memberReferences": ["alice"] }),
            "Entity reference \"alice\" had missing or empty kind (e.g. did not start with \"component:\" or similar)",
        ),
        (
            json!({ "name": "role:x", "memberReferences": ["user:default/a"] }),
            "entity reference 'role:x' does not match the required format [<kind>:][<namespace>/]<name>. Provide, please, full entity reference.",
        ),
        (
            json!({ "name": "role:default/x", "memberReferences": ["user:default/a"], "metadata": { "owner": "role:default/y" } }),
            "Unsupported kind role. List supported values [\"user\", \"group\"]",
        ),
    ];
    for (body, want) in cases {
        let r = s.post(s.admin(), ROLES, body.clone()).await;
        let message = backstage(&r, 400, "InputError", "POST", ROLES);
        assert_eq!(message, want, "{body}");
    }

    // The path and the body name different roles.
    let path = format!("{ROLES}/role/default/x");
    let r = s
        .post(
            s.admin(),
            &path,
            json!({ "name": "role:default/y", "memberReferences": ["user:default/a"] }),
        )
        .await;
    let message = backstage(&r, 400, "InputError", "POST", &path);
    assert_contains(&message, "role:default/x");
    assert_contains(&message, "role:default/y");

    // Not JSON at all.
    let r = s
        .send(
            s.request(reqwest::Method::POST, ROLES)
                .bearer_auth(s.admin())
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "POST", ROLES),
        "malformed JSON",
    );

    // A PUT whose new role is invalid.
    create_role(&s, s.admin(), "role:default/dev", &["user:default/a"]).await;
    let path = format!("{ROLES}/role/default/dev");
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/a"], "name": "role:default/dev" },
                "newRole": { "memberReferences": [], "name": "role:default/dev" },
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 400, "InputError", "PUT", &path),
        "'memberReferences' field must not be empty"
    );

    // Nothing was stored.
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/dev"]
    );
}

#[tokio::test]
async fn existing_roles_conflict_and_unknown_roles_are_not_found() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/a"]).await;
    create_role(&s, s.admin(), "role:default/ops", &["user:default/b"]).await;

    let r = s
        .post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/c"] }),
        )
        .await;
    assert_eq!(
        backstage(&r, 409, "ConflictError", "POST", ROLES),
        "role role:default/dev already exists"
    );
    let path = format!("{ROLES}/role/default/dev");
    let r = s
        .post(
            s.admin(),
            &path,
            json!({ "memberReferences": ["user:default/c"] }),
        )
        .await;
    backstage(&r, 409, "ConflictError", "POST", &path);
    assert_eq!(
        role(&s, "dev").await["memberReferences"],
        json!(["user:default/a"]),
        "unchanged"
    );

    // Renaming onto another role.
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/a"], "name": "role:default/dev" },
                "newRole": { "memberReferences": ["user:default/a"], "name": "role:default/ops" },
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 409, "ConflictError", "PUT", &path),
        "role role:default/ops already exists"
    );

    // Unknown roles.
    let path = format!("{ROLES}/role/default/nope");
    assert_eq!(
        backstage(
            &s.get(s.admin(), &path).await,
            404,
            "NotFoundError",
            "GET",
            &path
        ),
        "role:default/nope was not found"
    );
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/a"], "name": "role:default/nope" },
                "newRole": { "memberReferences": ["user:default/a"], "name": "role:default/nope" },
            }),
        )
        .await;
    backstage(&r, 404, "NotFoundError", "PUT", &path);
    backstage(
        &s.delete(s.admin(), &path).await,
        404,
        "NotFoundError",
        "DELETE",
        &path,
    );
    let with_member = format!("{path}?memberReferences=user:default/a");
    backstage(
        &s.delete(s.admin(), &with_member).await,
        404,
        "NotFoundError",
        "DELETE",
        &with_member,
    );
}

#[tokio::test]
async fn renaming_a_role_onto_a_subject_with_the_same_policy_is_no_internal_error() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/a"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    // Policies may be stored for a role name before the role exists.
    add_policy(&s, "role:default/new", "catalog-entity", "read", "allow").await;

    let path = format!("{ROLES}/role/default/dev");
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "name": "role:default/dev", "memberReferences": ["user:default/a"] },
                "newRole": { "name": "role:default/new", "memberReferences": ["user:default/a"] },
            }),
        )
        .await;
    match r.status {
        // Refused as a conflict: nothing changed.
        409 => {
            backstage(&r, 409, "ConflictError", "PUT", &path);
            assert_eq!(
                role(&s, "dev").await["memberReferences"],
                json!(["user:default/a"])
            );
        }
        // Or merged: the renamed role holds the policy once.
        200 => {
            assert_eq!(
                role(&s, "new").await["memberReferences"],
                json!(["user:default/a"])
            );
            let policies = s
                .get(s.admin(), "/api/permission/policies/role/default/new")
                .await
                .json_with(200);
            assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");
        }
        other => panic!("expected 409 or 200, got {other}: {}", r.text),
    }
}
