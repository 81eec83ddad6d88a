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

    // The last member goes: only the role's record goes; its policies and conditions stay.
    let dev_conditions = s
        .get(s.admin(), "/api/permission/roles/conditions")
        .await
        .json_with(200);
    assert_eq!(
        dev_conditions.as_array().unwrap().len(),
        1,
        "{dev_conditions}"
    );
    empty(
        &s.delete(
            s.admin(),
            &format!("{ROLES}/role/default/dev?memberReferences=user:default/b"),
        )
        .await,
        204,
    );
    assert_eq!(s.get(s.admin(), ROLES).await.json_with(200), json!([]));
    let dev_path = format!("{ROLES}/role/default/dev");
    assert_eq!(
        backstage(
            &s.get(s.admin(), &dev_path).await,
            404,
            "NotFoundError",
            "GET",
            &dev_path
        ),
        "role:default/dev was not found"
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/policies/role/default/dev")
            .await
            .json_with(200),
        json!([{ "entityReference": "role:default/dev", "permission": "catalog-entity", "policy": "read", "effect": "allow", "metadata": { "source": "rest" } }])
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles/conditions")
            .await
            .json_with(200),
        dev_conditions
    );
    // Deleting the whole role now finds no role.
    assert_eq!(
        backstage(
            &s.delete(s.admin(), &dev_path).await,
            404,
            "NotFoundError",
            "DELETE",
            &dev_path
        ),
        "role:default/dev was not found"
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
    assert!(
        policies
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["entityReference"] == "role:default/dev"),
        "the policies left by dev's last member are not touched: {policies}"
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles/conditions")
            .await
            .json_with(200),
        dev_conditions,
        "ops' condition went, dev's stays"
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

    // The policies dev kept apply again once the role has a member again.
    create_role(&s, s.admin(), "role:default/dev", &["user:default/a"]).await;
    assert_eq!(result_of(&s, &a, catalog_read()).await, "ALLOW");
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

    // A path naming something other than a role.
    let path = format!("{ROLES}/user/default/x");
    let kind = "Unsupported kind user. Supported value should be \"role\"";
    assert_eq!(
        backstage(
            &s.get(s.admin(), &path).await,
            400,
            "InputError",
            "GET",
            &path
        ),
        kind
    );
    assert_eq!(
        backstage(
            &s.delete(s.admin(), &path).await,
            400,
            "InputError",
            "DELETE",
            &path
        ),
        kind
    );
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/a"] },
                "newRole": { "name": "role:default/x", "memberReferences": ["user:default/a"] },
            }),
        )
        .await;
    assert_eq!(backstage(&r, 400, "InputError", "PUT", &path), kind);
    let r = s
        .post(
            s.admin(),
            &path,
            json!({ "memberReferences": ["user:default/a"] }),
        )
        .await;
    assert_eq!(backstage(&r, 400, "InputError", "POST", &path), kind);

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

    // Creating an existing role with members it already has.
    let r = s
        .post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/a"] }),
        )
        .await;
    assert_contains(
        &backstage(&r, 409, "ConflictError", "POST", ROLES),
        "role:default/dev",
    );
    let path = format!("{ROLES}/role/default/dev");
    let r = s
        .post(
            s.admin(),
            &path,
            json!({ "memberReferences": ["user:default/a"] }),
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
    // Policies stay under a role name whose record is gone: role new loses its last member.
    create_role(&s, s.admin(), "role:default/new", &["user:default/b"]).await;
    add_policy(&s, "role:default/new", "catalog-entity", "read", "allow").await;
    empty(
        &s.delete(
            s.admin(),
            &format!("{ROLES}/role/default/new?memberReferences=user:default/b"),
        )
        .await,
        204,
    );
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/dev"]
    );

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
    // Refused as a conflict: nothing changed.
    backstage(&r, 409, "ConflictError", "PUT", &path);
    assert_eq!(
        role(&s, "dev").await["memberReferences"],
        json!(["user:default/a"])
    );
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/dev"]
    );
    for subject in ["dev", "new"] {
        let policies = s
            .get(
                s.admin(),
                &format!("/api/permission/policies/role/default/{subject}"),
            )
            .await
            .json_with(200);
        assert_eq!(
            policies,
            json!([{ "entityReference": format!("role:default/{subject}"), "permission": "catalog-entity", "policy": "read", "effect": "allow", "metadata": { "source": "rest" } }])
        );
    }
}

#[tokio::test]
async fn creating_an_existing_rest_role_adds_the_members_it_does_not_have() {
    let s = Server::start().await;
    let (_, c) = s.machine("default", "c@example.com", "member").await;
    empty(
        &s.post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/a"], "metadata": { "description": "first" } }),
        )
        .await,
        201,
    );
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    assert_eq!(result_of(&s, &c, catalog_read()).await, "DENY");

    // A new member (and one it has): added, the others kept.
    empty(
        &s.post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/c", "user:default/a"] }),
        )
        .await,
        201,
    );
    let dev = role(&s, "dev").await;
    assert_eq!(
        dev["memberReferences"],
        json!(["user:default/a", "user:default/c"])
    );
    assert_eq!(dev["metadata"]["description"], "first", "kept");
    assert_eq!(dev["metadata"]["source"], "rest");
    assert_eq!(
        result_of(&s, &c, catalog_read()).await,
        "ALLOW",
        "the new member holds the role at once"
    );

    // Through the path as well.
    empty(
        &s.post(
            s.admin(),
            &format!("{ROLES}/role/default/dev"),
            json!({ "memberReferences": ["group:default/team"] }),
        )
        .await,
        201,
    );
    assert_eq!(
        role(&s, "dev").await["memberReferences"],
        json!(["group:default/team", "user:default/a", "user:default/c"])
    );

    // Nothing new: a conflict, nothing changed.
    let r = s
        .post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/c"] }),
        )
        .await;
    assert_contains(
        &backstage(&r, 409, "ConflictError", "POST", ROLES),
        "role:default/dev",
    );
    assert_eq!(
        role(&s, "dev").await["memberReferences"],
        json!(["group:default/team", "user:default/a", "user:default/c"])
    );
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/dev"]
    );
}

#[tokio::test]
async fn updating_a_role_replaces_only_the_members_the_request_names() {
    let s = Server::start().await;
    empty(
        &s.post(
            s.admin(),
            ROLES,
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/a", "user:default/b"], "metadata": { "description": "d" } }),
        )
        .await,
        201,
    );
    create_role(&s, s.admin(), "role:default/ops", &["user:default/x"]).await;
    let path = format!("{ROLES}/role/default/dev");

    // The old role's name may be left out (the path names it); b is not named, so it stays.
    empty(
        &s.put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/a"] },
                "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/c"] },
            }),
        )
        .await,
        200,
    );
    let dev = role(&s, "dev").await;
    assert_eq!(
        dev["memberReferences"],
        json!(["user:default/b", "user:default/c"])
    );
    assert_eq!(dev["metadata"]["description"], "d");

    // An old member the role does not have.
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "name": "role:default/dev", "memberReferences": ["user:default/a"] },
                "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/d"] },
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "PUT", &path),
        "Member reference: user:default/a was not found for role role:default/dev"
    );
    // A new member the role keeps anyway.
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/c"] },
                "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/b"] },
            }),
        )
        .await;
    assert_contains(
        &backstage(&r, 409, "ConflictError", "PUT", &path),
        "user:default/b",
    );
    // No change at all: 204.
    for body in [
        json!({
            "oldRole": { "memberReferences": ["user:default/b"] },
            "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/b"] },
        }),
        json!({
            "oldRole": { "name": "role:default/dev", "memberReferences": ["user:default/b", "user:default/c"] },
            "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/c", "user:default/b"], "metadata": { "description": "d" } },
        }),
    ] {
        empty(&s.put(s.admin(), &path, body.clone()).await, 204);
    }
    // Renaming onto an existing role, or onto the configuration's role.
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/b"] },
                "newRole": { "name": "role:default/ops", "memberReferences": ["user:default/b"] },
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 409, "ConflictError", "PUT", &path),
        "role role:default/ops already exists"
    );
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/b"] },
                "newRole": { "name": "role:default/rbac_admin", "memberReferences": ["user:default/b"] },
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 403, "NotAllowedError", "PUT", &path),
        "Unable to edit role role:default/rbac_admin: source does not match originating role role:default/rbac_admin, consider making changes to the 'CONFIGURATION'"
    );

    // None of the refused requests changed anything.
    assert_eq!(role(&s, "dev").await, dev);
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/dev", "role:default/ops"]
    );

    // A description alone is a change.
    empty(
        &s.put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/b"] },
                "newRole": { "name": "role:default/dev", "memberReferences": ["user:default/b"], "metadata": { "description": "e" } },
            }),
        )
        .await,
        200,
    );
    let after = role(&s, "dev").await;
    assert_eq!(after["metadata"]["description"], "e");
    assert_eq!(
        after["memberReferences"],
        json!(["user:default/b", "user:default/c"])
    );
}

/// A rename onto a name that still holds other policies (left by a role that lost its last
/// member) is refused: the renamed role's members would gain them silently.
#[tokio::test]
async fn renaming_onto_a_name_with_leftover_policies_conflicts() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/a", &["user:default/x"]).await;
    create_role(&s, s.admin(), "role:default/b", &["user:default/y"]).await;
    add_policy(&s, "role:default/b", "catalog-entity", "delete", "allow").await;
    empty(
        &s.delete(
            s.admin(),
            &format!("{ROLES}/role/default/b?memberReferences=user:default/y"),
        )
        .await,
        204,
    );
    let path = format!("{ROLES}/role/default/a");
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldRole": { "memberReferences": ["user:default/x"] },
                "newRole": { "name": "role:default/b", "memberReferences": ["user:default/x"] },
            }),
        )
        .await;
    let message = backstage(&r, 409, "ConflictError", "PUT", &path);
    assert!(
        message.contains("still holds permission policies"),
        "{message}"
    );
    assert_eq!(
        role(&s, "a").await["memberReferences"],
        json!(["user:default/x"]),
        "nothing changed"
    );
    assert_eq!(
        strings(&s.get(s.admin(), ROLES).await.json_with(200), "name"),
        ["role:default/a"]
    );
}

/// Conditions need an existing role, as policies do.
#[tokio::test]
async fn a_condition_for_a_missing_role_is_not_found() {
    let s = Server::start().await;
    let body = condition(
        "role:default/ghost",
        &["read"],
        owner_rule(&["$currentUser"]),
    );
    let r = s
        .post(s.admin(), "/api/permission/roles/conditions", body)
        .await;
    let message = backstage(
        &r,
        404,
        "NotFoundError",
        "POST",
        "/api/permission/roles/conditions",
    );
    assert!(
        message.contains("Corresponding role role:default/ghost was not found"),
        "{message}"
    );
    assert!(
        s.get(s.admin(), "/api/permission/roles/conditions")
            .await
            .json_with(200)
            .as_array()
            .unwrap()
            .is_empty()
    );
}
