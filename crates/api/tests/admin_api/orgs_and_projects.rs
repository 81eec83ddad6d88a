//! Orgs (create, list, read, rename, settings) and projects with their members.

use serde_json::{Value, json};

use crate::support::*;

fn default_settings() -> Value {
    json!({
        "mfaRequired": false,
        "lockout": { "enabled": true, "maxAttempts": 5, "windowMinutes": 15 },
        "idleLogout": { "enabled": true, "minutes": 60 },
        "sessionLifetimeHours": 24,
        "passwordMinLength": 8,
        "tempPasswordTtlHours": 72,
        "resetLinkTtlHours": 72
    })
}

#[tokio::test]
async fn platform_admins_create_list_read_and_rename_orgs() {
    let s = Server::start().await;
    let a = s
        .post(
            s.admin(),
            "/api/v1/orgs",
            json!({ "slug": "team-a", "name": "Team A" }),
        )
        .await
        .json_with(201);
    assert!(!a["id"].as_str().unwrap().is_empty());
    assert_eq!(a["slug"], "team-a");
    assert_eq!(a["name"], "Team A");
    assert_eq!(a["settings"], default_settings());
    assert!(
        is_timestamp(&a["createdAt"]) && is_timestamp(&a["updatedAt"]),
        "{a}"
    );

    let b = s.create_org("team-b").await;
    assert_eq!(b["name"], "team-b", "the name defaults to the slug");

    let dup = s
        .post(s.admin(), "/api/v1/orgs", json!({ "slug": "team-a" }))
        .await;
    assert_contains(&dup.error(409, "conflict"), "team-a");
    for bad in ["Team-A", "team_a", "-team", "team--a", ""] {
        let r = s
            .post(s.admin(), "/api/v1/orgs", json!({ "slug": bad }))
            .await;
        let message = r.error(422, "invalid");
        assert!(message.starts_with("slug: "), "{bad:?}: {message}");
    }

    let all = s.get(s.admin(), "/api/v1/orgs").await.json_with(200);
    assert_eq!(strings(&all, "slug"), ["default", "team-a", "team-b"]);
    let one = s.get(s.admin(), "/api/v1/orgs/team-a").await.json_with(200);
    assert_eq!(one, a);

    // The creator is the first admin of the new org.
    let me = s.get(s.admin(), "/api/v1/me").await.json_with(200);
    let roles: Vec<(String, String)> = me["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["slug"].as_str().unwrap().into(),
                o["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("default".into(), "admin".into()),
            ("team-a".into(), "admin".into()),
            ("team-b".into(), "admin".into())
        ]
    );
    let users = s
        .get(s.admin(), "/api/v1/orgs/team-a/users")
        .await
        .json_with(200);
    assert_eq!(users["total"], 1);
    assert_eq!(users["items"][0]["email"], ADMIN_EMAIL);
    assert_eq!(users["items"][0]["orgRole"], "admin");
    assert_eq!(users["items"][0]["ref"], "user:team-a/admin");

    // Someone who is not a platform admin cannot create orgs, and sees only their own.
    let (_, member) = s.machine("team-a", "bot@example.com", "admin").await;
    let refused = s
        .post(&member, "/api/v1/orgs", json!({ "slug": "team-c" }))
        .await;
    assert_contains(&refused.error(403, "forbidden"), "platform administrator");
    let theirs = s.get(&member, "/api/v1/orgs").await.json_with(200);
    assert_eq!(strings(&theirs, "slug"), ["team-a"]);
    s.get(s.admin(), "/api/v1/orgs/team-c")
        .await
        .error(404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn org_settings_are_merged_and_validated_naming_the_field() {
    let s = Server::start().await;
    let before = s
        .get(s.admin(), "/api/v1/orgs/default")
        .await
        .json_with(200);
    assert_eq!(before["settings"], default_settings());

    let updated = s
        .patch(
            s.admin(),
            "/api/v1/orgs/default",
            json!({ "name": "Acme", "settings": { "mfaRequired": true, "lockout": { "maxAttempts": 3 }, "passwordMinLength": 12 } }),
        )
        .await
        .json_with(200);
    let mut expected = default_settings();
    expected["mfaRequired"] = json!(true);
    expected["lockout"]["maxAttempts"] = json!(3);
    expected["passwordMinLength"] = json!(12);
    assert_eq!(updated["name"], "Acme");
    assert_eq!(updated["settings"], expected);
    assert_eq!(updated["id"], before["id"]);
    assert_eq!(updated["createdAt"], before["createdAt"]);
    assert!(millis(&updated["updatedAt"]) >= millis(&before["updatedAt"]));
    let read = s
        .get(s.admin(), "/api/v1/orgs/default")
        .await
        .json_with(200);
    assert_eq!(read["settings"], expected, "the change is stored");
    assert_eq!(read["name"], "Acme");

    // A name alone leaves the settings alone.
    let renamed = s
        .patch(
            s.admin(),
            "/api/v1/orgs/default",
            json!({ "name": "Acme Inc" }),
        )
        .await
        .json_with(200);
    assert_eq!(renamed["settings"], expected);

    let cases = [
        (
            json!({ "passwordMinLength": 4 }),
            "settings.passwordMinLength: ",
        ),
        (
            json!({ "passwordMinLength": 129 }),
            "settings.passwordMinLength: ",
        ),
        (
            json!({ "lockout": { "maxAttempts": 0 } }),
            "settings.lockout.maxAttempts: ",
        ),
        (
            json!({ "idleLogout": { "minutes": 1441 } }),
            "settings.idleLogout.minutes: ",
        ),
        (
            json!({ "sessionLifetimeHours": 0 }),
            "settings.sessionLifetimeHours: ",
        ),
        (
            json!({ "resetLinkTtlHours": 721 }),
            "settings.resetLinkTtlHours: ",
        ),
        (
            json!({ "mfaRequried": true }),
            "settings.mfaRequried: unknown field",
        ),
        (
            json!({ "lockout": { "enabled": "yes" } }),
            "settings.lockout.enabled: invalid type",
        ),
        (
            json!({ "lockout": { "maxAttempts": -1 } }),
            "settings.lockout.maxAttempts: invalid value",
        ),
        (json!("strict"), "settings: "),
    ];
    for (patch, prefix) in cases {
        let r = s
            .patch(
                s.admin(),
                "/api/v1/orgs/default",
                json!({ "settings": patch }),
            )
            .await;
        let message = r.error(422, "invalid");
        assert!(message.starts_with(prefix), "{patch}: {message}");
    }
    let typo = s
        .patch(
            s.admin(),
            "/api/v1/orgs/default",
            json!({ "settings": { "mfaRequried": true } }),
        )
        .await;
    assert_contains(&typo.error(422, "invalid"), "mfaRequried");
    let low = s
        .patch(
            s.admin(),
            "/api/v1/orgs/default",
            json!({ "settings": { "passwordMinLength": 4 } }),
        )
        .await;
    assert_contains(&low.error(422, "invalid"), "between 8 and 128, got 4");

    let after = s
        .get(s.admin(), "/api/v1/orgs/default")
        .await
        .json_with(200);
    assert_eq!(
        after["settings"], expected,
        "refused changes change nothing"
    );
    assert_eq!(after["name"], "Acme Inc");
    s.stop().await;
}

#[tokio::test]
async fn projects_are_created_renamed_staffed_and_deleted() {
    let s = Server::start().await;
    let base = "/api/v1/orgs/default/projects";
    let staging = s
        .post(
            s.admin(),
            base,
            json!({ "name": "staging", "description": "Pre-production" }),
        )
        .await
        .json_with(201);
    assert!(!staging["id"].as_str().unwrap().is_empty());
    assert_eq!(staging["name"], "staging");
    assert_eq!(staging["description"], "Pre-production");
    assert!(is_timestamp(&staging["createdAt"]) && is_timestamp(&staging["updatedAt"]));
    let prod = s
        .post(s.admin(), base, json!({ "name": "prod" }))
        .await
        .json_with(201);
    assert_eq!(prod["description"], "");

    let dup = s.post(s.admin(), base, json!({ "name": "prod" })).await;
    assert_contains(&dup.error(409, "conflict"), "prod");
    let bad = s.post(s.admin(), base, json!({ "name": "Prod_2" })).await;
    assert!(bad.error(422, "invalid").starts_with("name: "));

    let list = s.get(s.admin(), base).await.json_with(200);
    assert_eq!(strings(&list, "name"), ["prod", "staging"]);
    let one = s
        .get(s.admin(), &format!("{base}/staging"))
        .await
        .json_with(200);
    assert_eq!(one, staging);

    let described = s
        .patch(
            s.admin(),
            &format!("{base}/staging"),
            json!({ "description": "Staging environment" }),
        )
        .await
        .json_with(200);
    assert_eq!(described["name"], "staging");
    assert_eq!(described["description"], "Staging environment");
    let renamed = s
        .patch(
            s.admin(),
            &format!("{base}/staging"),
            json!({ "name": "stage" }),
        )
        .await
        .json_with(200);
    assert_eq!(renamed["name"], "stage");
    assert_eq!(renamed["id"], staging["id"]);
    assert_eq!(renamed["description"], "Staging environment");
    s.get(s.admin(), &format!("{base}/staging"))
        .await
        .error(404, "not_found");
    let read = s
        .get(s.admin(), &format!("{base}/stage"))
        .await
        .json_with(200);
    assert_eq!(read["description"], "Staging environment");
    s.patch(
        s.admin(),
        &format!("{base}/stage"),
        json!({ "name": "prod" }),
    )
    .await
    .error(409, "conflict");
    s.patch(
        s.admin(),
        &format!("{base}/nope"),
        json!({ "description": "x" }),
    )
    .await
    .error(404, "not_found");

    // Members.
    let bob = s
        .create_user(s.admin(), "default", json!({ "email": "bob@example.com" }))
        .await;
    let bob_id = bob["id"].as_str().unwrap();
    let members = format!("{base}/stage/members");
    let set = s
        .put(
            s.admin(),
            &format!("{members}/{bob_id}"),
            json!({ "role": "viewer" }),
        )
        .await
        .json_with(200);
    assert_eq!(
        set,
        json!([{ "userId": bob_id, "email": "bob@example.com", "username": "bob", "role": "viewer", "suspended": false }])
    );
    let changed = s
        .put(
            s.admin(),
            &format!("{members}/{bob_id}"),
            json!({ "role": "admin" }),
        )
        .await
        .json_with(200);
    assert_eq!(
        changed.as_array().unwrap().len(),
        1,
        "one assignment per user: {changed}"
    );
    assert_eq!(changed[0]["role"], "admin");
    let listed = s.get(s.admin(), &members).await.json_with(200);
    assert_eq!(listed, changed);
    let bob_view = s
        .get(s.admin(), &format!("/api/v1/orgs/default/users/{bob_id}"))
        .await
        .json_with(200);
    assert_eq!(
        bob_view["projects"],
        json!([{ "project": "stage", "role": "admin", "suspended": false }])
    );
    let bad_role = s
        .put(
            s.admin(),
            &format!("{members}/{bob_id}"),
            json!({ "role": "owner" }),
        )
        .await;
    assert_contains(&bad_role.error(400, "bad_request"), "role");

    // Someone from another org cannot be assigned here.
    s.create_org("other").await;
    let stranger = s
        .create_user(s.admin(), "other", json!({ "email": "eve@example.com" }))
        .await;
    s.put(
        s.admin(),
        &format!("{members}/{}", stranger["id"].as_str().unwrap()),
        json!({ "role": "viewer" }),
    )
    .await
    .error(404, "not_found");

    s.delete(s.admin(), &format!("{members}/{bob_id}"))
        .await
        .expect(204);
    assert_eq!(s.get(s.admin(), &members).await.json_with(200), json!([]));
    s.delete(s.admin(), &format!("{members}/{bob_id}"))
        .await
        .error(404, "not_found");

    s.put(
        s.admin(),
        &format!("{members}/{bob_id}"),
        json!({ "role": "member" }),
    )
    .await
    .expect(200);
    s.delete(s.admin(), &format!("{base}/stage"))
        .await
        .expect(204);
    s.get(s.admin(), &format!("{base}/stage"))
        .await
        .error(404, "not_found");
    s.delete(s.admin(), &format!("{base}/stage"))
        .await
        .error(404, "not_found");
    assert_eq!(
        strings(&s.get(s.admin(), base).await.json_with(200), "name"),
        ["prod"]
    );
    let bob_view = s
        .get(s.admin(), &format!("/api/v1/orgs/default/users/{bob_id}"))
        .await
        .json_with(200);
    assert_eq!(
        bob_view["projects"],
        json!([]),
        "assignments go with the project"
    );
    s.stop().await;
}

#[tokio::test]
async fn members_see_projects_but_only_admins_and_auditors_see_who_is_assigned() {
    let s = Server::start().await;
    let base = "/api/v1/orgs/default/projects";
    s.post(s.admin(), base, json!({ "name": "web" }))
        .await
        .expect(201);
    let (_, member) = s.machine("default", "member@example.com", "member").await;
    let (_, auditor) = s.machine("default", "auditor@example.com", "auditor").await;

    for key in [&member, &auditor] {
        let list = s.get(key, base).await.json_with(200);
        assert_eq!(strings(&list, "name"), ["web"]);
        let one = s.get(key, &format!("{base}/web")).await.json_with(200);
        assert_eq!(one["name"], "web");
        s.post(key, base, json!({ "name": "api" }))
            .await
            .error(403, "forbidden");
        s.patch(key, &format!("{base}/web"), json!({ "description": "x" }))
            .await
            .error(403, "forbidden");
        s.delete(key, &format!("{base}/web"))
            .await
            .error(403, "forbidden");
    }
    s.get(&member, &format!("{base}/web/members"))
        .await
        .error(403, "forbidden");
    assert_eq!(
        s.get(&auditor, &format!("{base}/web/members"))
            .await
            .json_with(200),
        json!([])
    );
    s.stop().await;
}
