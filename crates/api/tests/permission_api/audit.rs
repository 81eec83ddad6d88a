//! Every RBAC write is in the audit trail as a platform record (no org), with the actor, the
//! action and the role or subject it changed; refused writes leave no record.

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

/// The RBAC records (`rbac.*`), oldest first, without the configuration's sync at start.
async fn rbac_records(s: &Server) -> Vec<Value> {
    let page = s.audit("action=rbac.&limit=500").await;
    let mut items: Vec<Value> = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {page}"))
        .iter()
        .filter(|r| r["action"] != "rbac.source.sync")
        .cloned()
        .collect();
    items.reverse();
    items
}

#[tokio::test]
async fn every_rbac_write_is_audited() {
    let s = Server::start().await;
    let admin_id = s.admin_id().await;

    create_role(
        &s,
        s.admin(),
        "role:default/dev",
        &["user:default/a", "user:default/b"],
    )
    .await;
    empty(
        &s.put(
            s.admin(),
            "/api/permission/roles/role/default/dev",
            json!({
                "oldRole": { "name": "role:default/dev", "memberReferences": ["user:default/a", "user:default/b"] },
                "newRole": { "name": "role:default/developers", "memberReferences": ["user:default/a", "user:default/b", "user:default/c"] },
            }),
        )
        .await,
        200,
    );
    empty(
        &s.delete(
            s.admin(),
            "/api/permission/roles/role/default/developers?memberReferences=user:default/c",
        )
        .await,
        204,
    );
    add_policy(
        &s,
        "role:default/developers",
        "catalog-entity",
        "read",
        "allow",
    )
    .await;
    empty(
        &s.put(
            s.admin(),
            "/api/permission/policies/role/default/developers",
            json!({
                "oldPolicy": [{ "permission": "catalog-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "catalog-entity", "policy": "update", "effect": "allow" }],
            }),
        )
        .await,
        200,
    );
    empty(
        &s.delete(
            s.admin(),
            "/api/permission/policies/role/default/developers?permission=catalog-entity&policy=update&effect=allow",
        )
        .await,
        204,
    );
    let id = add_condition(
        &s,
        condition(
            "role:default/developers",
            &["read"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    empty(
        &s.put(
            s.admin(),
            &format!("/api/permission/roles/conditions/{id}"),
            condition(
                "role:default/developers",
                &["read", "delete"],
                owner_rule(&["$currentUser"]),
            ),
        )
        .await,
        200,
    );
    empty(
        &s.delete(s.admin(), &format!("/api/permission/roles/conditions/{id}"))
            .await,
        204,
    );
    empty(
        &s.delete(s.admin(), "/api/permission/roles/role/default/developers")
            .await,
        204,
    );

    let records = rbac_records(&s).await;
    let summary: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("rbac.role.create", "role:default/dev"),
        ("rbac.role.update", "role:default/developers"),
        ("rbac.role.members.remove", "role:default/developers"),
        ("rbac.policy.create", "role:default/developers"),
        ("rbac.policy.update", "role:default/developers"),
        ("rbac.policy.delete", "role:default/developers"),
        ("rbac.condition.create", "role:default/developers"),
        ("rbac.condition.update", "role:default/developers"),
        ("rbac.condition.delete", "role:default/developers"),
        ("rbac.role.delete", "role:default/developers"),
    ]
    .iter()
    .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
    .collect();
    assert_eq!(summary, want);
    for r in &records {
        assert_eq!(r["actor"], ADMIN_EMAIL, "{r}");
        assert_eq!(r["actorId"], admin_id.as_str(), "{r}");
        assert_eq!(r["org"], json!(null), "a platform record: {r}");
        assert_eq!(r["outcome"], "success", "{r}");
        assert!(is_timestamp(&r["at"]), "{r}");
    }
    // The details say what changed.
    assert_eq!(
        records[0]["details"],
        json!({ "members": ["user:default/a", "user:default/b"], "source": "rest" })
    );
    assert_eq!(records[1]["details"]["from"], "role:default/dev");
    assert_eq!(records[2]["details"]["members"], json!(["user:default/c"]));
    assert_eq!(
        records[3]["details"],
        json!({ "policies": ["role:default/developers,catalog-entity,read,allow"] })
    );
    assert_eq!(
        records[4]["details"],
        json!({
            "old": ["role:default/developers,catalog-entity,read,allow"],
            "new": ["role:default/developers,catalog-entity,update,allow"],
        })
    );
    assert_eq!(records[6]["details"]["id"], id);
    assert_eq!(records[8]["details"]["id"], id);

    // Refused or failed writes are not recorded.
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/ops", &["user:default/a"]).await;
    let before = rbac_records(&s).await.len();
    s.post(
        &bot,
        "/api/permission/roles",
        json!({ "name": "role:default/x", "memberReferences": ["user:default/a"] }),
    )
    .await
    .expect(403);
    // Creating an existing REST role with members it already has: a conflict.
    s.post(
        s.admin(),
        "/api/permission/roles",
        json!({ "name": "role:default/ops", "memberReferences": ["user:default/a"] }),
    )
    .await
    .expect(409);
    // A policy for a role that does not exist: not found.
    s.post(
        s.admin(),
        "/api/permission/policies",
        json!([{ "entityReference": "role:default/ghost", "permission": "catalog-entity", "policy": "read", "effect": "allow" }]),
    )
    .await
    .expect(404);
    s.post(
        s.admin(),
        "/api/permission/policies",
        json!([{ "entityReference": "role:default/ops", "permission": "x", "policy": "write", "effect": "allow" }]),
    )
    .await
    .expect(400);
    s.delete(s.admin(), "/api/permission/roles/role/default/none")
        .await
        .expect(404);
    assert_eq!(rbac_records(&s).await.len(), before);

    // Creating an existing REST role with a new member adds it: an update of the role.
    empty(
        &s.post(
            s.admin(),
            "/api/permission/roles",
            json!({ "name": "role:default/ops", "memberReferences": ["user:default/b"] }),
        )
        .await,
        201,
    );
    let records = rbac_records(&s).await;
    assert_eq!(records.len(), before + 1);
    let last = records.last().unwrap();
    assert_eq!(last["action"], "rbac.role.update", "{last}");
    assert_eq!(last["target"], "role:default/ops", "{last}");
    assert_eq!(last["actor"], ADMIN_EMAIL, "{last}");

    // A write by a configured-style administrator names that administrator.
    create_role(&s, s.admin(), "role:default/admins", &["user:default/bot"]).await;
    add_policy(
        &s,
        "role:default/admins",
        "policy-entity",
        "create",
        "allow",
    )
    .await;
    create_role(&s, &bot, "role:default/bots", &["user:default/bot"]).await;
    let last = rbac_records(&s).await.pop().unwrap();
    assert_eq!(last["action"], "rbac.role.create");
    assert_eq!(last["target"], "role:default/bots");
    assert_eq!(last["actor"], "bot@example.com");
}

#[tokio::test]
async fn a_start_without_policy_files_records_no_file_sync() {
    let mut s = Server::start().await;
    let all = |page: &Value| -> Vec<(String, String)> {
        page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items in {page}"))
            .iter()
            .map(|r| {
                (
                    r["action"].as_str().unwrap().to_owned(),
                    r["target"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    // Only the configuration's own sync (the policy administrators' defaults) is recorded.
    let first = all(&s.audit("action=rbac.&limit=500").await);
    assert_eq!(
        first,
        [("rbac.source.sync".to_owned(), "configuration".to_owned())],
        "no file reload or file sync without files"
    );

    // A restart changes nothing and records nothing.
    s.restart().await;
    let again = all(&s.audit("action=rbac.&limit=500").await);
    assert_eq!(again, first);
    for (action, target) in &again {
        assert_ne!(action, "rbac.files.reload");
        assert_ne!(action, "rbac.conditions.sync");
        assert_ne!(target, "csv-file");
    }
    // The RBAC API still works after it.
    create_role(&s, s.admin(), "role:default/dev", &["user:default/a"]).await;
    let last = all(&s.audit("action=rbac.&limit=500").await);
    assert_eq!(
        last[0],
        ("rbac.role.create".to_owned(), "role:default/dev".to_owned())
    );
    assert_eq!(last.len(), 2);
}
