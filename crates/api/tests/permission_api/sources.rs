//! Sources: what the REST API creates is `rest`; the configuration owns
//! `role:default/rbac_admin` and its policies, which the REST API may not change.

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

const NOT_MINE: &str = "source does not match originating role role:default/rbac_admin, consider making changes to the 'CONFIGURATION'";

fn config_policies(list: &Value) -> Vec<String> {
    let mut lines: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["source"] == "configuration")
        .map(|p| {
            format!(
                "{},{},{},{}",
                p["entityReference"].as_str().unwrap(),
                p["permission"].as_str().unwrap(),
                p["policy"].as_str().unwrap(),
                p["effect"].as_str().unwrap()
            )
        })
        .collect();
    lines.sort();
    lines
}

const DEFAULTS: [&str; 5] = [
    "role:default/rbac_admin,catalog-entity,read,allow",
    "role:default/rbac_admin,policy-entity,create,allow",
    "role:default/rbac_admin,policy-entity,delete,allow",
    "role:default/rbac_admin,policy-entity,read,allow",
    "role:default/rbac_admin,policy-entity,update,allow",
];

#[tokio::test]
async fn the_configuration_owns_the_rbac_admin_policies() {
    let s = Server::start().await;
    let all = s
        .get(s.admin(), "/api/permission/policies")
        .await
        .json_with(200);
    assert_eq!(config_policies(&all), DEFAULTS);
    assert_eq!(
        all.as_array().unwrap().len(),
        5,
        "nothing else on a fresh server"
    );

    let path = "/api/permission/policies/role/default/rbac_admin";
    let r = s
        .put(
            s.admin(),
            path,
            json!({
                "oldPolicy": [{ "permission": "policy-entity", "policy": "read", "effect": "allow" }],
                "newPolicy": [{ "permission": "policy-entity", "policy": "read", "effect": "deny" }],
            }),
        )
        .await;
    assert_contains(
        &backstage(&r, 403, "NotAllowedError", "PUT", path),
        NOT_MINE,
    );
    let one = format!("{path}?permission=policy-entity&policy=read&effect=allow");
    let message = backstage(
        &s.delete(s.admin(), &one).await,
        403,
        "NotAllowedError",
        "DELETE",
        &one,
    );
    assert_eq!(
        message,
        format!("Unable to delete policies of role:default/rbac_admin: {NOT_MINE}")
    );
    assert_contains(
        &backstage(
            &s.delete(s.admin(), path).await,
            403,
            "NotAllowedError",
            "DELETE",
            path,
        ),
        NOT_MINE,
    );

    // Without configured administrators the role has no record, but it is still reserved.
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles")
            .await
            .json_with(200),
        json!([])
    );
    let r = s
        .post(
            s.admin(),
            "/api/permission/roles",
            json!({ "name": "role:default/rbac_admin", "memberReferences": ["user:default/eve"] }),
        )
        .await;
    assert_eq!(
        backstage(&r, 403, "NotAllowedError", "POST", "/api/permission/roles"),
        format!("Unable to add role role:default/rbac_admin: {NOT_MINE}")
    );
    assert_eq!(
        s.get(s.admin(), "/api/permission/roles")
            .await
            .json_with(200),
        json!([])
    );

    let after = s
        .get(s.admin(), "/api/permission/policies")
        .await
        .json_with(200);
    assert_eq!(after, all, "nothing changed");
}

#[tokio::test]
async fn the_configuration_owns_the_rbac_admin_role_of_configured_administrators() {
    let s = RbacServer::with_admin_users(&["user:default/boss"]).await;
    let (_, boss) = s.machine("default", "boss@example.com", "member").await;
    let role_path = "/api/permission/roles/role/default/rbac_admin";
    let before = s.get(&boss, role_path).await.json_with(200);
    assert_eq!(before[0]["name"], "role:default/rbac_admin");
    assert_eq!(before[0]["memberReferences"], json!(["user:default/boss"]));
    assert_eq!(before[0]["metadata"]["source"], "configuration");
    let policies_before = s
        .get(s.admin(), "/api/permission/policies")
        .await
        .json_with(200);
    assert_eq!(config_policies(&policies_before), DEFAULTS);

    // Neither the platform admin nor the configured administrator may change it through REST.
    for key in [s.admin().to_owned(), boss.clone()] {
        let r = s
            .put(
                &key,
                role_path,
                json!({
                    "oldRole": { "name": "role:default/rbac_admin", "memberReferences": ["user:default/boss"] },
                    "newRole": { "name": "role:default/rbac_admin", "memberReferences": ["user:default/boss", "user:default/eve"] },
                }),
            )
            .await;
        assert_eq!(
            backstage(&r, 403, "NotAllowedError", "PUT", role_path),
            format!("Unable to edit role role:default/rbac_admin: {NOT_MINE}")
        );
        let r = s.delete(&key, role_path).await;
        assert_eq!(
            backstage(&r, 403, "NotAllowedError", "DELETE", role_path),
            format!("Unable to delete role role:default/rbac_admin: {NOT_MINE}")
        );
        let member = format!("{role_path}?memberReferences=user:default/boss");
        assert_contains(
            &backstage(
                &s.delete(&key, &member).await,
                403,
                "NotAllowedError",
                "DELETE",
                &member,
            ),
            NOT_MINE,
        );
        let r = s
            .post(
                &key,
                "/api/permission/policies",
                json!([{ "entityReference": "role:default/rbac_admin", "permission": "catalog-entity", "policy": "delete", "effect": "allow" }]),
            )
            .await;
        assert_eq!(
            backstage(
                &r,
                403,
                "NotAllowedError",
                "POST",
                "/api/permission/policies"
            ),
            format!("Unable to add policy to role:default/rbac_admin: {NOT_MINE}")
        );
        let r = s
            .post(
                &key,
                "/api/permission/roles/conditions",
                condition(
                    "role:default/rbac_admin",
                    &["read"],
                    owner_rule(&["$currentUser"]),
                ),
            )
            .await;
        assert_contains(
            &backstage(
                &r,
                403,
                "NotAllowedError",
                "POST",
                "/api/permission/roles/conditions",
            ),
            NOT_MINE,
        );
        // Creating it again is refused as another source's role, not a takeover.
        let r = s
            .post(
                &key,
                "/api/permission/roles",
                json!({ "name": "role:default/rbac_admin", "memberReferences": ["user:default/eve"] }),
            )
            .await;
        assert_eq!(
            backstage(&r, 403, "NotAllowedError", "POST", "/api/permission/roles"),
            format!("Unable to add role role:default/rbac_admin: {NOT_MINE}")
        );
    }

    assert_eq!(s.get(&boss, role_path).await.json_with(200), before);
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
        json!([])
    );
}

#[tokio::test]
async fn what_rest_creates_is_rest_and_stays_changeable() {
    let s = Server::start().await;
    // A client cannot claim another source.
    empty(
        &s.post(
            s.admin(),
            "/api/permission/roles",
            json!({ "name": "role:default/dev", "memberReferences": ["user:default/a"], "metadata": { "source": "configuration" } }),
        )
        .await,
        201,
    );
    empty(
        &s.post(
            s.admin(),
            "/api/permission/policies",
            json!([{ "entityReference": "role:default/dev", "permission": "catalog-entity", "policy": "read", "effect": "allow", "metadata": { "source": "configuration" } }]),
        )
        .await,
        201,
    );
    let id = add_condition(
        &s,
        condition(
            "role:default/dev",
            &["update"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    let role = s
        .get(s.admin(), "/api/permission/roles/role/default/dev")
        .await
        .json_with(200);
    assert_eq!(role[0]["metadata"]["source"], "rest");
    let policies = s
        .get(s.admin(), "/api/permission/policies/role/default/dev")
        .await
        .json_with(200);
    assert_eq!(policies[0]["metadata"], json!({ "source": "rest" }));
    empty(
        &s.delete(s.admin(), &format!("/api/permission/roles/conditions/{id}"))
            .await,
        204,
    );
    empty(
        &s.delete(s.admin(), "/api/permission/policies/role/default/dev")
            .await,
        204,
    );
    empty(
        &s.delete(s.admin(), "/api/permission/roles/role/default/dev")
            .await,
        204,
    );
}

#[tokio::test]
async fn a_role_of_the_policy_file_is_not_created_again_through_rest() {
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("policies.csv");
    std::fs::write(
        &csv,
        "g, user:default/a, role:default/csv\np, role:default/csv, catalog-entity, read, allow\n",
    )
    .unwrap();
    let s = RbacServer::start(portcullis_api::RbacSettings {
        policies_csv_file: Some(csv),
        ..Default::default()
    })
    .await;
    let path = "/api/permission/roles/role/default/csv";
    let before = s.get(s.admin(), path).await.json_with(200);
    assert_eq!(before[0]["memberReferences"], json!(["user:default/a"]));
    assert_eq!(before[0]["metadata"]["source"], "csv-file");

    // Neither new members nor the same ones: the file owns the role.
    for members in [json!(["user:default/b"]), json!(["user:default/a"])] {
        let r = s
            .post(
                s.admin(),
                "/api/permission/roles",
                json!({ "name": "role:default/csv", "memberReferences": members }),
            )
            .await;
        assert_eq!(
            backstage(&r, 403, "NotAllowedError", "POST", "/api/permission/roles"),
            "Unable to add role role:default/csv: source does not match originating role role:default/csv, consider making changes to the 'CSV-FILE'",
            "{members}"
        );
    }
    // Nor through the path.
    let r = s
        .post(
            s.admin(),
            path,
            json!({ "memberReferences": ["user:default/b"] }),
        )
        .await;
    assert_contains(
        &backstage(&r, 403, "NotAllowedError", "POST", path),
        "consider making changes to the 'CSV-FILE'",
    );
    assert_eq!(s.get(s.admin(), path).await.json_with(200), before);
}
