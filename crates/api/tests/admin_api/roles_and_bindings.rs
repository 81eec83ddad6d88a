//! Rönd-style roles and bindings of an org: the seed's JSON arrays import as they are, and every
//! document can be read, replaced and deleted.

use serde_json::{Value, json};

use crate::support::*;

/// The roles of seed 003, with the fields Portcullis does not use (`__STATE__`).
fn seed_roles() -> Value {
    json!([
        {"roleId": "control-plane-viewer", "name": "Viewer", "description": "A user who can visualize Fast Data configuration and its runtime state",
         "permissions": ["console.data-fabric.control-plane.view"], "__STATE__": "PUBLIC"},
        {"roleId": "control-plane-editor", "name": "Editor", "description": "A user who can visualize Fast Data configuration and modify its runtime state",
         "permissions": ["console.data-fabric.control-plane.view", "console.data-fabric.control-plane.edit"], "__STATE__": "PUBLIC"},
        {"roleId": "control-plane-users-manager", "name": "Manager", "description": "A user who manages the users that can access Fast Data runtime",
         "permissions": ["console.data-fabric.control-plane.manage"], "__STATE__": "PUBLIC"}
    ])
}

fn seed_bindings() -> Value {
    json!([
        {"bindingId": "control-plane-users-managers", "subjects": [], "roles": ["control-plane-users-manager"], "__STATE__": "PUBLIC"},
        {"bindingId": "control-plane-editors", "subjects": [], "roles": ["control-plane-viewer", "control-plane-editor"], "__STATE__": "PUBLIC"},
        {"bindingId": "control-plane-viewers", "subjects": [], "roles": ["control-plane-viewer"], "__STATE__": "PUBLIC"}
    ])
}

const ROLES: &str = "/api/v1/orgs/default/roles";
const BINDINGS: &str = "/api/v1/orgs/default/bindings";

#[tokio::test]
async fn the_seed_documents_import_and_can_be_managed() {
    let s = Server::start().await;
    let created = s.post(s.admin(), ROLES, seed_roles()).await.json_with(201);
    assert_eq!(created.as_array().unwrap().len(), 3);
    assert!(
        created[0].get("__STATE__").is_none(),
        "unused fields are not kept"
    );
    let imported = s
        .post(s.admin(), BINDINGS, seed_bindings())
        .await
        .json_with(201);
    assert_eq!(
        imported[1]["roles"],
        json!(["control-plane-viewer", "control-plane-editor"])
    );

    let roles = s.get(s.admin(), ROLES).await.json_with(200);
    assert_eq!(
        strings(&roles, "roleId"),
        [
            "control-plane-editor",
            "control-plane-users-manager",
            "control-plane-viewer"
        ]
    );
    let editor = s
        .get(s.admin(), &format!("{ROLES}/control-plane-editor"))
        .await
        .json_with(200);
    assert_eq!(
        editor["permissions"],
        json!([
            "console.data-fabric.control-plane.view",
            "console.data-fabric.control-plane.edit"
        ])
    );

    // Alice joins the editors, as the seed's example does.
    let alice = s
        .create_user(
            s.admin(),
            "default",
            json!({"email": "alice@platform.world"}),
        )
        .await;
    let alice_id = alice["id"].as_str().unwrap();
    let binding =
        json!({"subjects": [alice_id], "roles": ["control-plane-viewer", "control-plane-editor"]});
    let replaced = s
        .put(
            s.admin(),
            &format!("{BINDINGS}/control-plane-editors"),
            binding,
        )
        .await
        .json_with(200);
    assert_eq!(
        replaced["bindingId"], "control-plane-editors",
        "the id comes from the path"
    );
    assert_eq!(replaced["subjects"], json!([alice_id]));
    let read = s
        .get(s.admin(), &format!("{BINDINGS}/control-plane-editors"))
        .await
        .json_with(200);
    assert_eq!(read, replaced);

    // A project-scoped binding: "Project Admin of Staging".
    let scoped = json!({"bindingId": "staging-admins", "subjects": [alice_id], "roles": ["project-admin"], "resource": {"resourceType": "project", "resourceId": "staging"}});
    let one = s.post(s.admin(), BINDINGS, scoped).await.json_with(201);
    assert_eq!(
        one[0]["resource"],
        json!({"resourceType": "project", "resourceId": "staging"})
    );

    empty_ok(
        &s.delete(s.admin(), &format!("{ROLES}/control-plane-viewer"))
            .await,
    );
    s.get(s.admin(), &format!("{ROLES}/control-plane-viewer"))
        .await
        .error(404, "not_found");
    s.delete(s.admin(), &format!("{ROLES}/control-plane-viewer"))
        .await
        .error(404, "not_found");

    let audit = s.audit("org=default&action=binding.").await;
    assert_eq!(
        strings(&audit["items"], "action"),
        ["binding.create", "binding.update", "binding.create"]
    );
    let audit = s.audit("org=default&action=role.").await;
    assert_eq!(
        strings(&audit["items"], "action"),
        ["role.delete", "role.create"]
    );
}

fn empty_ok(reply: &Reply) {
    reply.expect(204);
}

#[tokio::test]
async fn imports_are_all_or_nothing_and_bad_documents_are_refused() {
    let s = Server::start().await;
    s.post(
        s.admin(),
        ROLES,
        json!({"roleId": "control-plane-viewer", "permissions": ["x"]}),
    )
    .await
    .json_with(201);
    // One id exists already: nothing of the batch is created.
    let message = s
        .post(s.admin(), ROLES, seed_roles())
        .await
        .error(409, "conflict");
    assert_contains(&message, "control-plane-viewer");
    assert_eq!(
        s.get(s.admin(), ROLES)
            .await
            .json_with(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The same id twice in one request.
    let twice = json!([{"roleId": "a"}, {"roleId": "a"}]);
    assert_contains(
        &s.post(s.admin(), ROLES, twice).await.error(409, "conflict"),
        "appears twice",
    );
    // Wrong types name the item and field; rule violations too.
    let wrong = json!([{"roleId": "ok"}, {"roleId": "b", "permissions": "view"}]);
    assert_contains(
        &s.post(s.admin(), ROLES, wrong)
            .await
            .error(400, "bad_request"),
        "[1]",
    );
    let bad_id = json!({"roleId": "has space"});
    assert_contains(
        &s.post(s.admin(), ROLES, bad_id).await.error(422, "invalid"),
        "[0].roleId",
    );
    let no_id = json!({"bindingId": "", "roles": ["x"]});
    assert_contains(
        &s.post(s.admin(), BINDINGS, no_id)
            .await
            .error(422, "invalid"),
        "[0].bindingId: must not be empty",
    );
    let empty_perm = json!({"bindingId": "b", "permissions": [""]});
    assert_contains(
        &s.post(s.admin(), BINDINGS, empty_perm)
            .await
            .error(422, "invalid"),
        "permissions[0]",
    );
    s.post(s.admin(), ROLES, json!([]))
        .await
        .error(400, "bad_request");
    s.post(s.admin(), ROLES, json!("role"))
        .await
        .error(400, "bad_request");
    let other = json!({"roleId": "different"});
    assert_contains(
        &s.put(s.admin(), &format!("{ROLES}/control-plane-viewer"), other)
            .await
            .error(422, "invalid"),
        "differs",
    );
    s.put(
        s.admin(),
        &format!("{ROLES}/missing"),
        json!({"permissions": []}),
    )
    .await
    .error(404, "not_found");
}

#[tokio::test]
async fn only_org_admins_change_roles_and_other_orgs_see_nothing() {
    let s = Server::start().await;
    s.post(s.admin(), ROLES, seed_roles()).await.json_with(201);
    let (_, member) = s.machine("default", "member@example.com", "member").await;
    let (_, auditor) = s.machine("default", "auditor@example.com", "auditor").await;
    s.post(&member, ROLES, json!({"roleId": "x"}))
        .await
        .error(403, "forbidden");
    s.get(&member, ROLES).await.error(403, "forbidden");
    assert_eq!(
        s.get(&auditor, ROLES)
            .await
            .json_with(200)
            .as_array()
            .unwrap()
            .len(),
        3
    );
    s.delete(&auditor, &format!("{ROLES}/control-plane-viewer"))
        .await
        .error(403, "forbidden");
    s.create_org("other").await;
    let (_, other_admin) = s.machine("other", "boss@other.example", "admin").await;
    s.get(&other_admin, ROLES).await.error(404, "not_found");
    assert!(
        s.get(&other_admin, "/api/v1/orgs/other/roles")
            .await
            .json_with(200)
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// Rönd's standalone grant and revoke endpoints, in the caller's org.
#[tokio::test]
async fn grant_and_revoke_bindings() {
    let s = Server::start().await;
    let granted = s
        .post(
            s.admin(),
            "/grant/bindings",
            json!({"subjects": ["alice", "bob"], "roles": ["viewer"]}),
        )
        .await
        .json_with(201);
    let id = granted["bindingId"].as_str().unwrap().to_owned();
    let binding = s
        .get(s.admin(), &format!("{BINDINGS}/{id}"))
        .await
        .json_with(200);
    assert_eq!(binding["subjects"], json!(["alice", "bob"]));
    assert!(binding.get("resource").is_none());
    let on = s
        .post(
            s.admin(),
            "/grant/bindings/resource/project",
            json!({"resourceId": "staging", "subjects": ["alice"], "roles": ["project-admin"]}),
        )
        .await
        .json_with(201);
    let on_id = on["bindingId"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(s.admin(), &format!("{BINDINGS}/{on_id}"))
            .await
            .json_with(200)["resource"],
        json!({"resourceType": "project", "resourceId": "staging"})
    );

    // Revoking alice touches the binding without a resource only.
    let revoked = s
        .post(
            s.admin(),
            "/revoke/bindings",
            json!({"subjects": ["alice"]}),
        )
        .await
        .json_with(200);
    assert_eq!(
        revoked,
        json!({"deletedBindings": 0, "modifiedBindings": 1})
    );
    assert_eq!(
        s.get(s.admin(), &format!("{BINDINGS}/{id}"))
            .await
            .json_with(200)["subjects"],
        json!(["bob"])
    );
    let revoked = s
        .post(s.admin(), "/revoke/bindings", json!({"subjects": ["bob"]}))
        .await
        .json_with(200);
    assert_eq!(
        revoked,
        json!({"deletedBindings": 1, "modifiedBindings": 0}),
        "a binding left empty goes"
    );
    s.get(s.admin(), &format!("{BINDINGS}/{id}"))
        .await
        .error(404, "not_found");
    let other_resource = s
        .post(
            s.admin(),
            "/revoke/bindings/resource/project",
            json!({"resourceIds": ["prod"], "subjects": ["alice"]}),
        )
        .await
        .json_with(200);
    assert_eq!(
        other_resource,
        json!({"deletedBindings": 0, "modifiedBindings": 0})
    );
    let on_resource = s
        .post(
            s.admin(),
            "/revoke/bindings/resource/project",
            json!({"resourceIds": ["staging"], "subjects": ["alice"]}),
        )
        .await
        .json_with(200);
    assert_eq!(
        on_resource,
        json!({"deletedBindings": 1, "modifiedBindings": 0})
    );

    // Bad requests and callers.
    for (path, words) in [
        (
            "/grant/bindings/resource/%20",
            "resource.resourceType: must be 1 to 512",
        ),
        (
            "/grant/bindings/resource/project",
            "resource.resourceId: must be 1 to 512",
        ),
    ] {
        let blank = s
            .post(
                s.admin(),
                path,
                json!({"resourceId": " ", "subjects": ["a"], "roles": ["x"]}),
            )
            .await;
        assert_contains(&blank.error(422, "invalid"), words);
    }
    assert_contains(
        &s.post(
            s.admin(),
            "/grant/bindings",
            json!({"subjects": [" "], "roles": ["x"]}),
        )
        .await
        .error(422, "invalid"),
        "subjects[0]: must be 1 to 512",
    );
    assert_contains(
        &s.post(s.admin(), "/grant/bindings", json!({"roles": ["x"]}))
            .await
            .error(422, "invalid"),
        "subjects",
    );
    assert_contains(
        &s.post(s.admin(), "/grant/bindings", json!({"subjects": ["a"]}))
            .await
            .error(422, "invalid"),
        "roles",
    );
    assert_contains(
        &s.post(
            s.admin(),
            "/grant/bindings/resource/project",
            json!({"subjects": ["a"], "roles": ["x"]}),
        )
        .await
        .error(422, "invalid"),
        "resourceId",
    );
    assert_contains(
        &s.post(
            s.admin(),
            "/revoke/bindings/resource/project",
            json!({"subjects": ["a"]}),
        )
        .await
        .error(422, "invalid"),
        "resourceIds",
    );
    let (_, member) = s.machine("default", "m@example.com", "member").await;
    s.post(
        &member,
        "/grant/bindings",
        json!({"subjects": ["a"], "roles": ["x"]}),
    )
    .await
    .error(403, "forbidden");
    s.post(&member, "/revoke/bindings", json!({"subjects": ["a"]}))
        .await
        .error(403, "forbidden");
    let audit = s.audit("org=default&action=binding.").await;
    assert_eq!(
        strings(&audit["items"], "action")[..3],
        ["binding.revoke", "binding.revoke", "binding.revoke"]
    );
}
