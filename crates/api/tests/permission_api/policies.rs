//! `/api/permission/policies`: create, list, read per subject, replace, delete one or all;
//! validation messages, conflicts and unknown policies.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

const POLICIES: &str = "/api/permission/policies";

fn rest(subject: &str, permission: &str, action: &str, effect: &str) -> Value {
    json!({ "entityReference": subject, "permission": permission, "policy": action, "effect": effect, "metadata": { "source": "rest" } })
}

/// The policies of the REST source (the configuration's defaults left out).
async fn rest_policies(s: &Server) -> Vec<Value> {
    s.get(s.admin(), POLICIES)
        .await
        .json_with(200)
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["source"] == "rest")
        .cloned()
        .collect()
}

#[tokio::test]
async fn policies_are_created_listed_replaced_and_deleted() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;

    // The seed's example, with a second policy on a permission name.
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "read", "effect": "allow" },
                { "entityReference": "role:default/test", "permission": "catalog.entity.create", "policy": "create", "effect": "allow" },
            ]),
        )
        .await;
    empty(&r, 201);
    // Users and groups may hold policies too.
    add_policy(&s, "user:default/Bob", "catalog-entity", "delete", "deny").await;

    let all = s.get(s.admin(), POLICIES).await.json_with(200);
    let items = all.as_array().unwrap();
    for p in items {
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "effect",
                "entityReference",
                "metadata",
                "permission",
                "policy"
            ],
            "{p}"
        );
    }
    assert_eq!(
        rest_policies(&s).await,
        [
            rest("role:default/test", "catalog-entity", "read", "allow"),
            rest(
                "role:default/test",
                "catalog.entity.create",
                "create",
                "allow"
            ),
            rest("user:default/bob", "catalog-entity", "delete", "deny"),
        ]
    );
    // Filters: subject (user references as spelled at creation), permission, policy and effect.
    let filtered = |list: Value| -> Vec<Value> { list.as_array().unwrap().clone() };
    assert_eq!(
        filtered(
            s.get(s.admin(), &format!("{POLICIES}?entityRef=user:default/Bob"))
                .await
                .json_with(200)
        ),
        [rest("user:default/bob", "catalog-entity", "delete", "deny")]
    );
    assert_eq!(
        filtered(
            s.get(
                s.admin(),
                &format!("{POLICIES}?entityRef=role:default/test&policy=create")
            )
            .await
            .json_with(200)
        ),
        [rest(
            "role:default/test",
            "catalog.entity.create",
            "create",
            "allow"
        )]
    );
    assert_eq!(
        filtered(
            s.get(
                s.admin(),
                &format!("{POLICIES}?permission=catalog-entity&effect=deny")
            )
            .await
            .json_with(200)
        ),
        [rest("user:default/bob", "catalog-entity", "delete", "deny")]
    );
    assert_eq!(
        filtered(
            s.get(
                s.admin(),
                &format!("{POLICIES}?permission=catalog-entity&policy=read&effect=allow&entityRef=role:default/test")
            )
            .await
            .json_with(200)
        ),
        [rest("role:default/test", "catalog-entity", "read", "allow")]
    );
    assert_eq!(
        filtered(
            s.get(
                s.admin(),
                &format!("{POLICIES}?entityRef=role:default/none")
            )
            .await
            .json_with(200)
        ),
        Vec::<Value>::new()
    );
    let test_path = format!("{POLICIES}/role/default/test");
    assert_eq!(
        s.get(s.admin(), &test_path).await.json_with(200),
        json!([
            rest("role:default/test", "catalog-entity", "read", "allow"),
            rest(
                "role:default/test",
                "catalog.entity.create",
                "create",
                "allow"
            ),
        ])
    );
    assert_eq!(
        s.get(s.admin(), &format!("{POLICIES}/user/default/bob"))
            .await
            .json_with(200),
        json!([rest("user:default/bob", "catalog-entity", "delete", "deny")])
    );

    // The seed's update example: two replaced by two.
    let r = s
        .put(
            s.admin(),
            &test_path,
            json!({
                "oldPolicy": [
                    { "permission": "catalog-entity", "policy": "read", "effect": "allow" },
                    { "permission": "catalog.entity.create", "policy": "create", "effect": "allow" },
                ],
                "newPolicy": [
                    { "permission": "catalog-entity", "policy": "read", "effect": "deny" },
                    { "permission": "policy-entity", "policy": "read", "effect": "allow" },
                ],
            }),
        )
        .await;
    empty(&r, 200);
    let mut now: Vec<String> = s
        .get(s.admin(), &test_path)
        .await
        .json_with(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["entityReference"], "role:default/test");
            assert_eq!(p["metadata"]["source"], "rest");
            format!(
                "{},{},{}",
                p["permission"].as_str().unwrap(),
                p["policy"].as_str().unwrap(),
                p["effect"].as_str().unwrap()
            )
        })
        .collect();
    now.sort();
    assert_eq!(
        now,
        ["catalog-entity,read,deny", "policy-entity,read,allow"]
    );

    // Delete one.
    let one = format!("{test_path}?permission=policy-entity&policy=read&effect=allow");
    empty(&s.delete(s.admin(), &one).await, 204);
    assert_eq!(
        s.get(s.admin(), &test_path).await.json_with(200),
        json!([rest("role:default/test", "catalog-entity", "read", "deny")])
    );
    // Again: 404.
    let message = backstage(
        &s.delete(s.admin(), &one).await,
        404,
        "NotFoundError",
        "DELETE",
        &one,
    );
    assert_eq!(
        message,
        "Policy 'role:default/test,policy-entity,read,allow' not found"
    );

    // Delete all of a subject.
    add_policy(&s, "role:default/test", "catalog-entity", "update", "allow").await;
    empty(&s.delete(s.admin(), &test_path).await, 204);
    let message = backstage(
        &s.get(s.admin(), &test_path).await,
        404,
        "NotFoundError",
        "GET",
        &test_path,
    );
    assert_eq!(
        message,
        "No permission policies found for role:default/test"
    );
    let message = backstage(
        &s.delete(s.admin(), &test_path).await,
        404,
        "NotFoundError",
        "DELETE",
        &test_path,
    );
    assert_eq!(
        message,
        "No permission policies found for role:default/test"
    );
    assert_eq!(
        rest_policies(&s).await,
        [rest("user:default/bob", "catalog-entity", "delete", "deny")],
        "other subjects keep theirs"
    );
    // The role itself stays.
    s.get(s.admin(), "/api/permission/roles/role/default/test")
        .await
        .expect(200);
}

#[tokio::test]
async fn invalid_policies_get_400_with_the_reference_messages() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    let p = |subject: &str, permission: &str, action: &str, effect: &str| json!([{ "entityReference": subject, "permission": permission, "policy": action, "effect": effect }]);
    let cases: [(Value, &str); 9] = [
        (
            p("role:default/test", "catalog-entity", "write", "allow"),
            "Invalid policy definition. Cause: 'policy' has invalid value: 'write'. It should be one of: create, read, update, delete, use",
        ),
        (
            p("role:default/test", "catalog-entity", "read", "maybe"),
            "Invalid policy definition. Cause: 'effect' has invalid value: 'maybe'. It should be: 'allow' or 'deny'",
        ),
        (
            p("role:default/test", "", "read", "allow"),
            "Invalid policy definition. Cause: 'permission' field must not be empty",
        ),
        (
            p("role:default/test", "catalog-entity", "", "allow"),
            "Invalid policy definition. Cause: 'policy' field must not be empty",
        ),
        (
            p("role:default/test", "catalog-entity", "read", ""),
            "Invalid policy definition. Cause: 'effect' field must not be empty",
        ),
        (
            p("", "catalog-entity", "read", "allow"),
            "Invalid policy definition. Cause: 'entityReference' must not be empty",
        ),
        (
            p("alice", "catalog-entity", "read", "allow"),
            "Invalid policy definition. Cause: Entity reference \"alice\" had missing or empty kind (e.g. did not start with \"component:\" or similar)",
        ),
        (
            p("component:default/x", "catalog-entity", "read", "allow"),
            "Invalid policy definition. Cause: Unsupported kind component. List supported values [\"user\", \"group\", \"role\"]",
        ),
        (json!([]), "permission policy must be present"),
    ];
    for (body, want) in cases {
        let r = s.post(s.admin(), POLICIES, body.clone()).await;
        assert_eq!(
            backstage(&r, 400, "InputError", "POST", POLICIES),
            want,
            "{body}"
        );
    }
    // A body that is no list.
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!({ "entityReference": "role:default/test" }),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "POST", POLICIES),
        "invalid request body",
    );
    // A batch with one bad policy stores none.
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "read", "effect": "allow" },
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "write", "effect": "allow" },
            ]),
        )
        .await;
    backstage(&r, 400, "InputError", "POST", POLICIES);
    assert_eq!(rest_policies(&s).await, Vec::<Value>::new());

    // Invalid replacements and deletions.
    add_policy(&s, "role:default/test", "catalog-entity", "read", "allow").await;
    let path = format!("{POLICIES}/role/default/test");
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "write", "effect": "allow" }],
            }),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "PUT", &path),
        "'policy' has invalid value: 'write'",
    );
    let read = json!([{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }]);
    let two = json!([
        { "permission": "catalog-entity", "policy": "read", "effect": "allow" },
        { "permission": "catalog-entity", "policy": "update", "effect": "allow" },
    ]);
    let update = json!([{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }]);
    let put_cases = [
        (
            json!({ "newPolicy": update.clone() }),
            "'oldPolicy' object must be present",
        ),
        (
            json!({ "oldPolicy": [], "newPolicy": update.clone() }),
            "'oldPolicy' object must be present",
        ),
        (
            json!({ "oldPolicy": read.clone() }),
            "'newPolicy' object must be present",
        ),
        (
            json!({ "oldPolicy": read.clone(), "newPolicy": [] }),
            "'newPolicy' object must be present",
        ),
        (
            json!({ "oldPolicy": two, "newPolicy": update }),
            "'oldPolicy' object has more permission policies compared to 'newPolicy' object",
        ),
    ];
    for (body, want) in put_cases {
        let r = s.put(s.admin(), &path, body.clone()).await;
        assert_eq!(
            backstage(&r, 400, "InputError", "PUT", &path),
            want,
            "{body}"
        );
    }
    // A path naming something that holds no policies.
    let component = format!("{POLICIES}/component/default/x");
    assert_contains(
        &backstage(
            &s.get(s.admin(), &component).await,
            400,
            "InputError",
            "GET",
            &component,
        ),
        "Unsupported kind component",
    );
    assert_contains(
        &backstage(
            &s.delete(s.admin(), &component).await,
            400,
            "InputError",
            "DELETE",
            &component,
        ),
        "Unsupported kind component",
    );
    let r = s
        .put(
            s.admin(),
            &component,
            json!({ "oldPolicy": read.clone(), "newPolicy": read }),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "PUT", &component),
        "Unsupported kind component",
    );
    let partial = format!("{path}?permission=catalog-entity&policy=read");
    let message = backstage(
        &s.delete(s.admin(), &partial).await,
        400,
        "InputError",
        "DELETE",
        &partial,
    );
    assert_contains(&message, "'permission', 'policy' and 'effect'");
    let bad = format!("{path}?permission=catalog-entity&policy=read&effect=perhaps");
    assert_contains(
        &backstage(
            &s.delete(s.admin(), &bad).await,
            400,
            "InputError",
            "DELETE",
            &bad,
        ),
        "'effect' has invalid value: 'perhaps'",
    );
    assert_eq!(
        rest_policies(&s).await,
        [rest("role:default/test", "catalog-entity", "read", "allow")]
    );
}

#[tokio::test]
async fn existing_policies_conflict_and_missing_ones_are_not_found() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    add_policy(&s, "role:default/test", "catalog-entity", "read", "allow").await;

    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([{ "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "read", "effect": "allow" }]),
        )
        .await;
    assert_eq!(
        backstage(&r, 409, "ConflictError", "POST", POLICIES),
        "Policy 'role:default/test,catalog-entity,read,allow' has been already stored"
    );
    // Twice in one request.
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "update", "effect": "allow" },
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "update", "effect": "allow" },
            ]),
        )
        .await;
    assert_contains(
        &backstage(&r, 409, "ConflictError", "POST", POLICIES),
        "role:default/test,catalog-entity,update,allow",
    );
    // A batch with one existing policy stores none of the others.
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "delete", "effect": "allow" },
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "read", "effect": "allow" },
            ]),
        )
        .await;
    backstage(&r, 409, "ConflictError", "POST", POLICIES);
    assert_eq!(
        rest_policies(&s).await,
        [rest("role:default/test", "catalog-entity", "read", "allow")]
    );

    // Policies of a role that does not exist: not found, none stored (users and groups need
    // no role).
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([{ "entityReference": "role:default/x", "permission": "catalog-entity", "policy": "read", "effect": "allow" }]),
        )
        .await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "POST", POLICIES),
        "Corresponding role role:default/x was not found"
    );
    let r = s
        .post(
            s.admin(),
            POLICIES,
            json!([
                { "entityReference": "role:default/test", "permission": "catalog-entity", "policy": "delete", "effect": "allow" },
                { "entityReference": "role:default/x", "permission": "catalog-entity", "policy": "read", "effect": "allow" },
            ]),
        )
        .await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "POST", POLICIES),
        "Corresponding role role:default/x was not found"
    );
    let x_path = format!("{POLICIES}/role/default/x");
    let r = s
        .put(
            s.admin(),
            &x_path,
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }],
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "PUT", &x_path),
        "Corresponding role role:default/x was not found"
    );
    assert_eq!(
        rest_policies(&s).await,
        [rest("role:default/test", "catalog-entity", "read", "allow")]
    );

    // Replacing a policy by itself: nothing to do.
    let path = format!("{POLICIES}/role/default/test");
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
            }),
        )
        .await;
    empty(&r, 204);
    assert_eq!(
        rest_policies(&s).await,
        [rest("role:default/test", "catalog-entity", "read", "allow")]
    );

    // Replacing a policy that is not there.
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "delete", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }],
            }),
        )
        .await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "PUT", &path),
        "Policy 'role:default/test,catalog-entity,delete,allow' not found"
    );
    // Replacing into one that exists.
    add_policy(&s, "role:default/test", "catalog-entity", "update", "allow").await;
    let r = s
        .put(
            s.admin(),
            &path,
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }],
            }),
        )
        .await;
    backstage(&r, 409, "ConflictError", "PUT", &path);
    assert_eq!(
        rest_policies(&s).await,
        [
            rest("role:default/test", "catalog-entity", "read", "allow"),
            rest("role:default/test", "catalog-entity", "update", "allow"),
        ],
        "a failed replacement changes nothing"
    );

    // Reading or deleting the policies of a subject without any.
    let none = format!("{POLICIES}/user/default/nobody");
    backstage(
        &s.get(s.admin(), &none).await,
        404,
        "NotFoundError",
        "GET",
        &none,
    );
    let one = format!("{none}?permission=catalog-entity&policy=read&effect=allow");
    backstage(
        &s.delete(s.admin(), &one).await,
        404,
        "NotFoundError",
        "DELETE",
        &one,
    );
}

#[tokio::test]
async fn the_policies_of_a_user_are_found_under_the_spelling_they_were_created_with() {
    let s = Server::start().await;
    // Stored lower-cased (user and group references compare case-insensitively).
    add_policy(&s, "user:default/Bob", "catalog-entity", "read", "allow").await;
    let path = format!("{POLICIES}/user/default/Bob");
    assert_eq!(
        s.get(s.admin(), &path).await.json_with(200),
        json!([rest("user:default/bob", "catalog-entity", "read", "allow")])
    );
    empty(
        &s.delete(
            s.admin(),
            &format!("{path}?permission=catalog-entity&policy=read&effect=allow"),
        )
        .await,
        204,
    );
}

#[tokio::test]
async fn policies_named_in_a_delete_body_are_deleted_exactly() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    for action in ["read", "update", "delete"] {
        add_policy(&s, "role:default/test", "catalog-entity", action, "allow").await;
    }
    // A group holds policies without any role.
    add_policy(&s, "group:default/team", "catalog-entity", "read", "allow").await;
    let path = format!("{POLICIES}/role/default/test");
    let delete = |body: Value| {
        let path = path.clone();
        let s = &s;
        async move {
            s.call(Method::DELETE, &path, Some(s.admin()), Some(&body))
                .await
        }
    };

    // Two of the three, as the reference's UI sends them.
    let r = delete(json!([
        { "permission": "catalog-entity", "policy": "read", "effect": "allow" },
        { "permission": "catalog-entity", "policy": "delete", "effect": "allow" },
    ]))
    .await;
    empty(&r, 204);
    assert_eq!(
        s.get(s.admin(), &path).await.json_with(200),
        json!([rest(
            "role:default/test",
            "catalog-entity",
            "update",
            "allow"
        )])
    );

    // One of them is not there: 404, and none goes.
    let r = delete(json!([
        { "permission": "catalog-entity", "policy": "update", "effect": "allow" },
        { "permission": "catalog-entity", "policy": "read", "effect": "allow" },
    ]))
    .await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "DELETE", &path),
        "Policy 'role:default/test,catalog-entity,read,allow' not found"
    );
    assert_eq!(
        s.get(s.admin(), &path).await.json_with(200),
        json!([rest(
            "role:default/test",
            "catalog-entity",
            "update",
            "allow"
        )])
    );
    // An invalid one: 400.
    let r =
        delete(json!([{ "permission": "catalog-entity", "policy": "write", "effect": "allow" }]))
            .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "DELETE", &path),
        "'policy' has invalid value: 'write'",
    );

    // The last one.
    let r =
        delete(json!([{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }]))
            .await;
    empty(&r, 204);
    backstage(
        &s.get(s.admin(), &path).await,
        404,
        "NotFoundError",
        "GET",
        &path,
    );
    assert_eq!(
        rest_policies(&s).await,
        [rest(
            "group:default/team",
            "catalog-entity",
            "read",
            "allow"
        )],
        "other subjects keep theirs"
    );
}
