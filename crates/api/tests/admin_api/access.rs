//! Who may do what: unknown and foreign orgs are hidden, roles limit changes, deactivated
//! members are refused on every credential, removed members keep their other orgs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn an_unknown_org_is_not_found_everywhere() {
    let s = Server::start().await;
    let calls: [(Method, &str, Option<Value>); 10] = [
        (Method::GET, "/api/v1/orgs/nope", None),
        (
            Method::PATCH,
            "/api/v1/orgs/nope",
            Some(json!({ "name": "x" })),
        ),
        (Method::GET, "/api/v1/orgs/nope/users", None),
        (
            Method::POST,
            "/api/v1/orgs/nope/users",
            Some(json!({ "email": "a@example.com" })),
        ),
        (
            Method::POST,
            "/api/v1/orgs/nope/members",
            Some(json!({ "email": ADMIN_EMAIL })),
        ),
        (Method::GET, "/api/v1/orgs/nope/projects", None),
        (
            Method::POST,
            "/api/v1/orgs/nope/projects",
            Some(json!({ "name": "p" })),
        ),
        (Method::GET, "/api/v1/orgs/nope/groups", None),
        (Method::DELETE, "/api/v1/orgs/nope/groups/g", None),
        (Method::GET, "/api/v1/audit?org=nope", None),
    ];
    for (method, path, body) in calls {
        let r = s
            .call(method.clone(), path, Some(s.admin()), body.as_ref())
            .await;
        let message = r.error(404, "not_found");
        assert_contains(&message, "nope");
    }
    // Slugs are exact: the default org in capitals is another (unknown) org.
    s.get(s.admin(), "/api/v1/orgs/DEFAULT")
        .await
        .error(404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn members_and_auditors_cannot_change_users() {
    let s = Server::start().await;
    let users = "/api/v1/orgs/default/users";
    let alice = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "alice@example.com" }),
        )
        .await;
    let alice_path = format!("{users}/{}", alice["id"].as_str().unwrap());
    let (member_id, member) = s.machine("default", "member@example.com", "member").await;
    let (_, auditor) = s.machine("default", "auditor@example.com", "auditor").await;

    // A member sees the org but not its users, and changes nothing.
    let org = s.get(&member, "/api/v1/orgs/default").await.json_with(200);
    assert_eq!(org["slug"], "default");
    let create = s
        .post(&member, users, json!({ "email": "new@example.com" }))
        .await;
    assert_contains(&create.error(403, "forbidden"), "admin role");
    s.patch(&member, &alice_path, json!({ "name": "Mallory" }))
        .await
        .error(403, "forbidden");
    s.patch(
        &member,
        &format!("{users}/{member_id}"),
        json!({ "orgRole": "admin" }),
    )
    .await
    .error(403, "forbidden");
    s.post_empty(&member, &format!("{alice_path}/deactivate"))
        .await
        .error(403, "forbidden");
    s.delete(&member, &alice_path).await.error(403, "forbidden");
    s.post(
        &member,
        "/api/v1/orgs/default/members",
        json!({ "email": ADMIN_EMAIL }),
    )
    .await
    .error(403, "forbidden");
    let list = s.get(&member, users).await;
    assert_contains(&list.error(403, "forbidden"), "auditor");
    s.get(&member, &alice_path).await.error(403, "forbidden");
    s.patch(&member, "/api/v1/orgs/default", json!({ "name": "Mine" }))
        .await
        .error(403, "forbidden");

    // An auditor reads users but changes nothing.
    let listed = s.get(&auditor, users).await.json_with(200);
    assert_eq!(listed["total"], 4);
    let read = s.get(&auditor, &alice_path).await.json_with(200);
    assert_eq!(read["email"], "alice@example.com");
    s.post(&auditor, users, json!({ "email": "new@example.com" }))
        .await
        .error(403, "forbidden");
    s.patch(&auditor, &alice_path, json!({ "name": "Mallory" }))
        .await
        .error(403, "forbidden");
    s.post_empty(&auditor, &format!("{alice_path}/deactivate"))
        .await
        .error(403, "forbidden");
    s.delete(&auditor, &alice_path)
        .await
        .error(403, "forbidden");
    s.patch(&auditor, "/api/v1/orgs/default", json!({ "name": "Mine" }))
        .await
        .error(403, "forbidden");

    let after = s.get(s.admin(), &alice_path).await.json_with(200);
    assert_eq!(after, alice, "nothing changed");
    assert_eq!(s.get(s.admin(), users).await.json_with(200)["total"], 4);

    // Promotion and demotion take effect on the very next request.
    s.patch(
        s.admin(),
        &format!("{users}/{member_id}"),
        json!({ "orgRole": "admin" }),
    )
    .await
    .expect(200);
    let made = s
        .post(&member, users, json!({ "email": "new@example.com" }))
        .await
        .json_with(201);
    assert_eq!(made["email"], "new@example.com");
    s.patch(
        s.admin(),
        &format!("{users}/{member_id}"),
        json!({ "orgRole": "member" }),
    )
    .await
    .expect(200);
    s.post(&member, users, json!({ "email": "newer@example.com" }))
        .await
        .error(403, "forbidden");
    s.stop().await;
}

#[tokio::test]
async fn an_admin_of_one_org_cannot_reach_another() {
    let s = Server::start().await;
    s.create_org("a").await;
    s.create_org("b").await;
    let b_user = s
        .create_user(s.admin(), "b", json!({ "email": "bea@example.com" }))
        .await;
    let b_user_id = b_user["id"].as_str().unwrap();
    s.post(
        s.admin(),
        "/api/v1/orgs/b/projects",
        json!({ "name": "secret" }),
    )
    .await
    .expect(201);
    let (_, a_admin) = s.machine("a", "a-admin@example.com", "admin").await;
    s.get(&a_admin, "/api/v1/orgs/a/users").await.expect(200);

    let calls: [(Method, String, Option<Value>); 11] = [
        (Method::GET, "/api/v1/orgs/b".into(), None),
        (
            Method::PATCH,
            "/api/v1/orgs/b".into(),
            Some(json!({ "name": "mine" })),
        ),
        (Method::GET, "/api/v1/orgs/b/users".into(), None),
        (
            Method::POST,
            "/api/v1/orgs/b/users".into(),
            Some(json!({ "email": "x@example.com" })),
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/b/users/{b_user_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/orgs/b/users/{b_user_id}/deactivate"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/b/users/{b_user_id}"),
            None,
        ),
        (Method::GET, "/api/v1/orgs/b/projects/secret".into(), None),
        (
            Method::DELETE,
            "/api/v1/orgs/b/projects/secret".into(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/orgs/b/groups".into(),
            Some(json!({ "name": "g" })),
        ),
        (Method::GET, "/api/v1/audit?org=b".into(), None),
    ];
    for (method, path, body) in calls {
        let r = s
            .call(method.clone(), &path, Some(&a_admin), body.as_ref())
            .await;
        r.error(404, "not_found");
    }
    // A user of b is not reachable through a either.
    s.get(&a_admin, &format!("/api/v1/orgs/a/users/{b_user_id}"))
        .await
        .error(404, "not_found");
    s.post(
        &a_admin,
        "/api/v1/orgs/a/members",
        json!({ "email": "bea@example.com" }),
    )
    .await
    .expect(201);
    // Adding bea to a does not open b.
    s.get(&a_admin, "/api/v1/orgs/b/users")
        .await
        .error(404, "not_found");
    let orgs = s.get(&a_admin, "/api/v1/orgs").await.json_with(200);
    assert_eq!(strings(&orgs, "slug"), ["a"]);
    let audit = s.get(&a_admin, "/api/v1/audit").await.json_with(200);
    let seen: Vec<String> = strings(&audit["items"], "org");
    assert!(
        !seen.is_empty() && seen.iter().all(|o| o == "a"),
        "{seen:?}"
    );

    // Nothing in b changed.
    let b_now = s
        .get(s.admin(), &format!("/api/v1/orgs/b/users/{b_user_id}"))
        .await
        .json_with(200);
    assert_eq!(b_now["status"], "active");
    assert_eq!(
        s.get(s.admin(), "/api/v1/orgs/b").await.json_with(200)["name"],
        "b"
    );
    s.get(s.admin(), "/api/v1/orgs/b/projects/secret")
        .await
        .expect(200);
    s.stop().await;
}

#[tokio::test]
async fn a_deactivated_member_is_refused_on_every_key_until_reactivated() {
    let s = Server::start().await;
    let users = "/api/v1/orgs/default/users";
    s.post(
        s.admin(),
        "/api/v1/orgs/default/projects",
        json!({ "name": "web" }),
    )
    .await
    .expect(201);
    let (bot_id, admin_made) = s.machine("default", "bot@example.com", "member").await;
    s.put(
        s.admin(),
        &format!("/api/v1/orgs/default/projects/web/members/{bot_id}"),
        json!({ "role": "member" }),
    )
    .await
    .expect(200);
    let own = s
        .post(&admin_made, "/api/v1/me/keys", json!({ "name": "own" }))
        .await
        .json_with(201);
    assert_eq!(own["org"], "default");
    let self_made = own["key"].as_str().unwrap().to_owned();
    let keys = [admin_made.as_str(), self_made.as_str()];
    for key in keys {
        s.get(key, "/api/v1/orgs/default").await.expect(200);
    }

    let deactivated = s
        .post_empty(s.admin(), &format!("{users}/{bot_id}/deactivate"))
        .await
        .json_with(200);
    assert_eq!(deactivated["status"], "deactivated");
    assert_eq!(
        deactivated["projects"],
        json!([{ "project": "web", "role": "member", "suspended": true }])
    );
    let assigned = s
        .get(s.admin(), "/api/v1/orgs/default/projects/web/members")
        .await
        .json_with(200);
    assert_eq!(assigned[0]["suspended"], true);

    for key in keys {
        for path in [
            "/api/v1/orgs/default",
            "/api/v1/orgs/default/projects",
            "/api/v1/orgs/default/projects/web",
            "/api/v1/orgs/default/groups",
        ] {
            let r = s.get(key, path).await;
            assert_contains(&r.error(403, "forbidden"), "deactivated");
        }
    }
    // They still know who they are, and see the deactivation.
    let me = s.get(&admin_made, "/api/v1/me").await.json_with(200);
    assert_eq!(me["orgs"][0]["status"], "deactivated");
    assert_eq!(me["orgs"][0]["projects"][0]["suspended"], true);

    let reactivated = s
        .post_empty(s.admin(), &format!("{users}/{bot_id}/reactivate"))
        .await
        .json_with(200);
    assert_eq!(reactivated["status"], "active");
    assert_eq!(
        reactivated["projects"],
        json!([{ "project": "web", "role": "member", "suspended": false }])
    );
    for key in keys {
        let org = s.get(key, "/api/v1/orgs/default").await.json_with(200);
        assert_eq!(org["slug"], "default");
        s.get(key, "/api/v1/orgs/default/projects/web")
            .await
            .expect(200);
    }
    s.post_empty(
        s.admin(),
        &format!("{users}/{}/deactivate", uuid::Uuid::now_v7()),
    )
    .await
    .error(404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn a_member_deactivated_in_one_org_keeps_working_in_the_others() {
    // The bootstrap admin's keys work in every org of theirs: deactivated in org a (by a's
    // other admin), both of their keys are refused there and accepted in default.
    let s = Server::start().await;
    s.create_org("a").await;
    let (_, a_admin) = s.machine("a", "a-admin@example.com", "admin").await;
    let second = s
        .post(s.admin(), "/api/v1/me/keys", json!({ "name": "second" }))
        .await
        .json_with(201);
    assert_eq!(second["org"], json!(null));
    let second = second["key"].as_str().unwrap().to_owned();
    let admin_id = s.admin_id().await;

    s.post_empty(
        &a_admin,
        &format!("/api/v1/orgs/a/users/{admin_id}/deactivate"),
    )
    .await
    .expect(200);
    for key in [s.admin(), second.as_str()] {
        s.get(key, "/api/v1/orgs/a").await.error(403, "forbidden");
        s.get(key, "/api/v1/orgs/a/users")
            .await
            .error(403, "forbidden");
        s.post(key, "/api/v1/orgs/a/projects", json!({ "name": "p" }))
            .await
            .error(403, "forbidden");
        s.get(key, "/api/v1/audit?org=a")
            .await
            .error(403, "forbidden");
        s.get(key, "/api/v1/orgs/default/users").await.expect(200);
    }
    let audit = s.get(s.admin(), "/api/v1/audit").await.json_with(200);
    let items = audit["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|i| i["org"] != "a"),
        "a deactivated admin reads no audit of that org: {audit}"
    );

    s.post_empty(
        &a_admin,
        &format!("/api/v1/orgs/a/users/{admin_id}/reactivate"),
    )
    .await
    .expect(200);
    for key in [s.admin(), second.as_str()] {
        s.get(key, "/api/v1/orgs/a/users").await.expect(200);
    }
    s.stop().await;
}

#[tokio::test]
async fn a_member_removed_from_one_org_still_works_in_another_with_the_same_key() {
    let s = Server::start().await;
    s.create_org("a").await;
    s.post(s.admin(), "/api/v1/orgs/a/groups", json!({ "name": "ops" }))
        .await
        .expect(201);
    let admin_id = s.admin_id().await;
    s.post(
        s.admin(),
        "/api/v1/orgs/a/groups/ops/members",
        json!({ "userId": admin_id }),
    )
    .await
    .expect(200);
    let (_, a_admin) = s.machine("a", "a-admin@example.com", "admin").await;

    s.delete(&a_admin, &format!("/api/v1/orgs/a/users/{admin_id}"))
        .await
        .expect(204);
    // The very next request with the same (unbound) key: org a is gone, default is not.
    let hidden = s.get(s.admin(), "/api/v1/orgs/a").await;
    assert_contains(&hidden.error(404, "not_found"), "a");
    s.get(s.admin(), "/api/v1/orgs/a/users")
        .await
        .error(404, "not_found");
    let default = s
        .get(s.admin(), "/api/v1/orgs/default")
        .await
        .json_with(200);
    assert_eq!(default["slug"], "default");
    let users = s
        .get(s.admin(), "/api/v1/orgs/default/users")
        .await
        .json_with(200);
    assert_eq!(users["total"], 1);
    let me = s.get(s.admin(), "/api/v1/me").await.json_with(200);
    assert_eq!(strings(&me["orgs"], "slug"), ["default"]);

    // Org a no longer lists them, nor do its groups.
    let a_users = s.get(&a_admin, "/api/v1/orgs/a/users").await.json_with(200);
    assert_eq!(strings(&a_users["items"], "email"), ["a-admin@example.com"]);
    let ops = s
        .get(&a_admin, "/api/v1/orgs/a/groups/ops/members")
        .await
        .json_with(200);
    assert_eq!(ops["users"], json!([]));
    s.get(&a_admin, &format!("/api/v1/orgs/a/users/{admin_id}"))
        .await
        .error(404, "not_found");
    s.delete(&a_admin, &format!("/api/v1/orgs/a/users/{admin_id}"))
        .await
        .error(404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn removing_a_member_revokes_the_keys_bound_to_that_org_only() {
    let s = Server::start().await;
    s.create_org("b").await;
    let sso = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "sso@example.com", "kind": "sso" }),
        )
        .await;
    let sso_id = sso["id"].as_str().unwrap().to_owned();
    s.post(
        s.admin(),
        "/api/v1/orgs/b/members",
        json!({ "email": "sso@example.com" }),
    )
    .await
    .expect(201);
    let default_key = s.create_key_for(s.admin(), "default", &sso_id, "d").await;
    let default_key = default_key["key"].as_str().unwrap().to_owned();
    let b_key = s.create_key_for(s.admin(), "b", &sso_id, "b").await;
    let b_key = b_key["key"].as_str().unwrap().to_owned();
    s.get(&default_key, "/api/v1/orgs/default")
        .await
        .expect(200);

    s.delete(s.admin(), &format!("/api/v1/orgs/default/users/{sso_id}"))
        .await
        .expect(204);
    s.get(&default_key, "/api/v1/orgs/default")
        .await
        .error(401, "unauthenticated");
    let b = s.get(&b_key, "/api/v1/orgs/b").await.json_with(200);
    assert_eq!(b["slug"], "b");
    let me = s.get(&b_key, "/api/v1/me").await.json_with(200);
    assert_eq!(strings(&me["orgs"], "slug"), ["b"]);
    let in_b = s
        .get(s.admin(), &format!("/api/v1/orgs/b/users/{sso_id}"))
        .await
        .json_with(200);
    assert_eq!(in_b["status"], "active");

    // Added back, they start over: no keys of the old membership come back.
    s.post(
        s.admin(),
        "/api/v1/orgs/default/members",
        json!({ "email": "sso@example.com" }),
    )
    .await
    .expect(201);
    s.get(&default_key, "/api/v1/orgs/default")
        .await
        .error(401, "unauthenticated");
    assert_eq!(
        s.get(
            s.admin(),
            &format!("/api/v1/orgs/default/users/{sso_id}/keys")
        )
        .await
        .json_with(200),
        json!([])
    );
    s.stop().await;
}

/// A deactivated member is refused "anything in that org"; minting a credential bound to the org
/// (recorded in the org's audit trail) is something in that org.
#[tokio::test]
async fn a_deactivated_member_cannot_create_keys_for_that_org() {
    let s = Server::start().await;
    let (bot_id, key) = s.machine("default", "bot@example.com", "member").await;
    s.post_empty(
        s.admin(),
        &format!("/api/v1/orgs/default/users/{bot_id}/deactivate"),
    )
    .await
    .expect(200);
    let r = s
        .post(&key, "/api/v1/me/keys", json!({ "name": "more" }))
        .await;
    assert_contains(&r.error(403, "forbidden"), "deactivated");
    let keys = s
        .get(
            s.admin(),
            &format!("/api/v1/orgs/default/users/{bot_id}/keys"),
        )
        .await
        .json_with(200);
    assert_eq!(strings(&keys, "name"), ["ci"]);
    s.stop().await;
}

/// Email, username, name and console access belong to the user in every org: an admin of one
/// org who adds an outsider by email may change their role there, never their identity.
#[tokio::test]
async fn an_org_admin_cannot_rewrite_the_identity_of_a_user_of_other_orgs() {
    let s = Server::start().await;
    s.create_org("evil").await;
    let (_, evil_admin) = s.machine("evil", "evil-admin@example.com", "admin").await;
    let admin_id = s.admin_id().await;
    let victim = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "carol@example.com" }),
        )
        .await;
    let victim_id = victim["id"].as_str().unwrap();
    s.post(
        &evil_admin,
        "/api/v1/orgs/evil/members",
        json!({ "email": "carol@example.com" }),
    )
    .await
    .expect(201);

    for body in [
        json!({ "email": "owned@evil.test" }),
        json!({ "username": "owned" }),
        json!({ "name": "Owned" }),
        json!({ "consoleAccess": false }),
    ] {
        let message = s
            .patch(
                &evil_admin,
                &format!("/api/v1/orgs/evil/users/{victim_id}"),
                body,
            )
            .await
            .error(403, "forbidden");
        assert_contains(&message, "also belongs to org 'default'");
    }
    // The org role is the evil org's own business.
    let changed = s
        .patch(
            &evil_admin,
            &format!("/api/v1/orgs/evil/users/{victim_id}"),
            json!({ "orgRole": "auditor" }),
        )
        .await
        .json_with(200);
    assert_eq!(changed["orgRole"], "auditor");
    assert_eq!(changed["email"], "carol@example.com");

    // The bootstrap admin created "evil" and so administers both orgs of the victim.
    s.post(
        s.admin(),
        "/api/v1/orgs/evil/members",
        json!({ "email": "admin@localhost" }),
    )
    .await
    .expect(409);
    let renamed = s
        .patch(
            s.admin(),
            &format!("/api/v1/orgs/default/users/{victim_id}"),
            json!({ "name": "Carol" }),
        )
        .await
        .json_with(200);
    assert_eq!(renamed["name"], "Carol");
    let me = s.get(s.admin(), "/api/v1/me").await.json_with(200);
    assert_eq!(me["id"], admin_id.as_str());
    assert_eq!(me["email"], "admin@localhost");
}

/// Forward-auth without route rules: a key whose user is an active member passes; once the
/// member is deactivated the same key is refused, and the answer names no identity.
#[tokio::test]
async fn forward_auth_refuses_the_key_of_a_deactivated_member() {
    let s = Server::start().await;
    let (bot_id, key) = s.machine("default", "gate@example.com", "member").await;
    let allowed = s.get(&key, "/auth").await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert!(allowed.header("x-request-id").is_some(), "{allowed:?}");
    s.post_empty(
        s.admin(),
        &format!("/api/v1/orgs/default/users/{bot_id}/deactivate"),
    )
    .await
    .expect(200);
    let refused = s.get(&key, "/auth").await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(refused.header("x-portcullis-user").is_none(), "{refused:?}");
}
