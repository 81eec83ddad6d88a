//! The audit trail: one record per change with actor, org, action, target and request id;
//! filters, paging, and who may read it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// The audit items of a page.
fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items")
}

#[tokio::test]
async fn a_change_is_recorded_once_with_actor_org_action_target_and_request_id() {
    let s = Server::start().await;
    let admin_id = s.admin_id().await;

    let created = s
        .send(
            s.request(Method::POST, "/api/v1/orgs/default/users")
                .bearer_auth(s.admin())
                .header("X-Request-Id", "req-audit-0001")
                .json(&json!({ "email": "carol@example.com", "orgRole": "auditor" })),
        )
        .await;
    created.expect(201);
    assert_eq!(
        created.header("x-request-id"),
        Some("req-audit-0001"),
        "the id is echoed"
    );

    let page = s.audit("org=default&target=user:default/carol").await;
    assert_eq!(page["total"], 1, "one record for one change: {page}");
    let record = &items(&page)[0];
    assert!(record["id"].as_i64().is_some());
    assert!(is_timestamp(&record["at"]));
    assert_eq!(record["actor"], ADMIN_EMAIL);
    assert_eq!(record["actorId"], admin_id.as_str());
    assert_eq!(record["impersonator"], json!(null));
    assert_eq!(record["org"], "default");
    assert_eq!(record["action"], "user.create");
    assert_eq!(record["target"], "user:default/carol");
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["requestId"], "req-audit-0001");
    assert_eq!(record["details"]["email"], "carol@example.com");
    assert_eq!(record["details"]["role"], "auditor");
    assert!(
        !record.to_string().contains("pcl_"),
        "no secrets in the audit trail"
    );

    // Without a client id, the generated one is answered and recorded.
    let patched = s
        .patch(
            s.admin(),
            &format!(
                "/api/v1/orgs/default/users/{}",
                created.json()["id"].as_str().unwrap()
            ),
            json!({ "name": "Carol" }),
        )
        .await;
    patched.expect(200);
    let generated = patched.header("x-request-id").unwrap().to_owned();
    let latest = s.audit("org=default&limit=1").await;
    assert_eq!(items(&latest)[0]["action"], "user.update");
    assert_eq!(items(&latest)[0]["requestId"], generated.as_str());

    // Client ids reach the trail only as short printable text; longer or odd ones never do.
    let long = "r".repeat(128);
    for (sent, recorded) in [
        (long.as_str(), Some(long.as_str())),
        (&*"r".repeat(129), None),
        ("two words", None),
    ] {
        let r = s
            .send(
                s.request(Method::POST, "/api/v1/orgs/default/groups")
                    .bearer_auth(s.admin())
                    .header("X-Request-Id", sent)
                    .json(&json!({ "name": format!("g{}", sent.len()) })),
            )
            .await;
        r.expect(201);
        let latest = s.audit("org=default&action=group.create&limit=1").await;
        let id = &items(&latest)[0]["requestId"];
        match recorded {
            Some(text) => assert_eq!(id, text),
            None => assert_ne!(id, sent, "an unusable request id reached the audit trail"),
        }
    }

    // Reads and refused requests record nothing.
    let before = s.audit("org=default").await["total"].as_i64().unwrap();
    s.get(s.admin(), "/api/v1/orgs/default/users")
        .await
        .expect(200);
    s.post(
        s.admin(),
        "/api/v1/orgs/default/users",
        json!({ "email": "carol@example.com" }),
    )
    .await
    .error(409, "conflict");
    s.post(
        s.admin(),
        "/api/v1/orgs/default/users",
        json!({ "email": "bad" }),
    )
    .await
    .error(422, "invalid");
    assert_eq!(s.audit("org=default").await["total"], before);
    s.stop().await;
}

#[tokio::test]
async fn every_kind_of_change_is_audited() {
    let s = Server::start().await;
    let org = "/api/v1/orgs/acme";
    s.create_org("acme").await;
    s.patch(s.admin(), org, json!({ "name": "Acme" }))
        .await
        .expect(200);
    let bot = s
        .create_user(
            s.admin(),
            "acme",
            json!({ "email": "bot@example.com", "kind": "machine" }),
        )
        .await;
    let bot_id = bot["id"].as_str().unwrap().to_owned();
    let user = format!("{org}/users/{bot_id}");
    s.patch(s.admin(), &user, json!({ "name": "Bot" }))
        .await
        .expect(200);
    s.post_empty(s.admin(), &format!("{user}/deactivate"))
        .await
        .expect(200);
    s.post_empty(s.admin(), &format!("{user}/reactivate"))
        .await
        .expect(200);
    let key = s.create_key_for(s.admin(), "acme", &bot_id, "k").await;
    s.delete(
        s.admin(),
        &format!("{user}/keys/{}", key["id"].as_str().unwrap()),
    )
    .await
    .expect(204);
    s.post(s.admin(), &format!("{org}/groups"), json!({ "name": "g1" }))
        .await
        .expect(201);
    s.post(s.admin(), &format!("{org}/groups"), json!({ "name": "g2" }))
        .await
        .expect(201);
    s.post(
        s.admin(),
        &format!("{org}/groups/g1/members"),
        json!({ "userId": bot_id }),
    )
    .await
    .expect(200);
    s.post(
        s.admin(),
        &format!("{org}/groups/g1/members"),
        json!({ "group": "g2" }),
    )
    .await
    .expect(200);
    s.delete(
        s.admin(),
        &format!("{org}/groups/g1/members/users/{bot_id}"),
    )
    .await
    .expect(204);
    s.delete(s.admin(), &format!("{org}/groups/g1/members/groups/g2"))
        .await
        .expect(204);
    s.delete(s.admin(), &format!("{org}/groups/g2"))
        .await
        .expect(204);
    s.post(
        s.admin(),
        &format!("{org}/projects"),
        json!({ "name": "p1" }),
    )
    .await
    .expect(201);
    s.patch(
        s.admin(),
        &format!("{org}/projects/p1"),
        json!({ "name": "p2" }),
    )
    .await
    .expect(200);
    s.put(
        s.admin(),
        &format!("{org}/projects/p2/members/{bot_id}"),
        json!({ "role": "viewer" }),
    )
    .await
    .expect(200);
    s.delete(s.admin(), &format!("{org}/projects/p2/members/{bot_id}"))
        .await
        .expect(204);
    s.delete(s.admin(), &format!("{org}/projects/p2"))
        .await
        .expect(204);
    s.delete(s.admin(), &user).await.expect(204);
    s.post(
        s.admin(),
        &format!("{org}/members"),
        json!({ "email": "bot@example.com" }),
    )
    .await
    .expect(201);

    let page = s.audit("org=acme&limit=500").await;
    let mut trail: Vec<(String, String)> = items(&page)
        .iter()
        .map(|i| {
            (
                i["action"].as_str().unwrap().to_owned(),
                i["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    trail.reverse();
    let expected: Vec<(&str, &str)> = vec![
        ("org.create", "org:acme"),
        ("org.update", "org:acme"),
        ("user.create", "user:acme/bot"),
        ("user.update", "user:acme/bot"),
        ("user.deactivate", "user:acme/bot"),
        ("user.reactivate", "user:acme/bot"),
        ("key.create", "user:acme/bot"),
        ("key.delete", "user:acme/bot"),
        ("group.create", "group:acme/g1"),
        ("group.create", "group:acme/g2"),
        ("group.member.add", "group:acme/g1"),
        ("group.member.add", "group:acme/g1"),
        ("group.member.remove", "group:acme/g1"),
        ("group.member.remove", "group:acme/g1"),
        ("group.delete", "group:acme/g2"),
        ("project.create", "project:acme/p1"),
        ("project.update", "project:acme/p2"),
        ("project.member.set", "project:acme/p2"),
        ("project.member.remove", "project:acme/p2"),
        ("project.delete", "project:acme/p2"),
        ("user.remove", "user:acme/bot"),
        ("member.add", "user:acme/bot"),
    ];
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(a, t)| (a.to_owned(), t.to_owned()))
        .collect();
    assert_eq!(trail, expected);
    assert_eq!(page["total"], expected.len());
    assert!(
        items(&page)
            .iter()
            .all(|i| i["org"] == "acme" && i["actor"] == ADMIN_EMAIL)
    );
    s.stop().await;
}

#[tokio::test]
async fn the_trail_is_filtered_paged_and_newest_first() {
    let s = Server::start().await;
    let (bot_id, bot_admin) = s.machine("default", "bot@example.com", "admin").await;
    s.create_user(&bot_admin, "default", json!({ "email": "x1@example.com" }))
        .await;
    let x2 = s
        .create_user(&bot_admin, "default", json!({ "email": "x2@example.com" }))
        .await;
    s.patch(
        s.admin(),
        &format!("/api/v1/orgs/default/users/{}", x2["id"].as_str().unwrap()),
        json!({ "name": "X Two" }),
    )
    .await
    .expect(200);
    s.post(
        s.admin(),
        "/api/v1/orgs/default/groups",
        json!({ "name": "team" }),
    )
    .await
    .expect(201);

    let all = s.audit("org=default").await;
    let total = all["total"].as_i64().unwrap();
    assert_eq!(items(&all).len() as i64, total);
    let ids: Vec<i64> = items(&all)
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(items(&all)[0]["action"], "group.create");
    assert_eq!(
        (all["limit"].as_u64(), all["offset"].as_u64()),
        (Some(50), Some(0))
    );

    let page = s.audit("org=default&limit=2&offset=1").await;
    assert_eq!(page["total"], total);
    assert_eq!(
        items(&page)
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids[1..3]
    );

    let by_prefix = s.audit("org=default&action=user.").await;
    let actions = strings(&by_prefix["items"], "action");
    assert!(
        actions.iter().all(|a| a.starts_with("user.")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"user.create".to_owned()) && actions.contains(&"user.update".to_owned())
    );
    let exact = s.audit("org=default&action=user.update").await;
    assert_eq!(exact["total"], 1);
    assert_eq!(items(&exact)[0]["target"], "user:default/x2");
    assert_eq!(
        s.audit("org=default&action=user").await["total"],
        0,
        "no dot, no prefix"
    );

    let by_actor = s.audit(&format!("org=default&actor={bot_id}")).await;
    assert_eq!(
        strings(&by_actor["items"], "target"),
        ["user:default/x2", "user:default/x1"]
    );
    assert!(
        items(&by_actor)
            .iter()
            .all(|i| i["actor"] == "bot@example.com")
    );

    let by_target = s.audit("org=default&target=X2").await;
    assert_eq!(
        strings(&by_target["items"], "action"),
        ["user.update", "user.create"],
        "target contains, ignoring case"
    );

    let group = &items(&all)[0];
    let at = group["at"].as_str().unwrap();
    let since = s
        .send(
            s.request(Method::GET, "/api/v1/audit")
                .bearer_auth(s.admin())
                .query(&[("org", "default"), ("since", at)]),
        )
        .await
        .json_with(200);
    assert!(
        items(&since).iter().any(|i| i["id"] == group["id"]),
        "since is inclusive"
    );
    assert!(
        items(&since)
            .iter()
            .all(|i| millis(&i["at"]) >= millis(&group["at"]))
    );
    let until = s
        .send(
            s.request(Method::GET, "/api/v1/audit")
                .bearer_auth(s.admin())
                .query(&[("org", "default"), ("until", at)]),
        )
        .await
        .json_with(200);
    assert!(
        items(&until).iter().all(|i| i["id"] != group["id"]),
        "until is exclusive"
    );
    assert!(
        items(&until)
            .iter()
            .all(|i| millis(&i["at"]) < millis(&group["at"]))
    );
    assert_eq!(
        s.audit("org=default&since=2999-01-01T00:00:00Z").await["total"],
        0
    );

    for bad in [
        "limit=0",
        "limit=501",
        "since=yesterday",
        "until=2020-13-01T00:00:00Z",
        "colour=red",
    ] {
        let r = s.get(s.admin(), &format!("/api/v1/audit?{bad}")).await;
        assert_contains(&r.error(400, "bad_request"), bad.split('=').next().unwrap());
    }
    s.stop().await;
}

#[tokio::test]
async fn only_admins_and_auditors_read_the_trail_of_their_orgs() {
    let s = Server::start().await;
    s.create_org("b").await;
    let (_, member) = s.machine("default", "member@example.com", "member").await;
    let (_, auditor) = s.machine("default", "auditor@example.com", "auditor").await;

    let refused = s.get(&member, "/api/v1/audit").await;
    assert_contains(&refused.error(403, "forbidden"), "admin or auditor");
    s.get(&member, "/api/v1/audit?org=default")
        .await
        .error(403, "forbidden");

    let seen = s.get(&auditor, "/api/v1/audit").await.json_with(200);
    assert!(items(&seen).iter().all(|i| i["org"] == "default"), "{seen}");
    assert!(seen["total"].as_i64().unwrap() >= 4);
    let scoped = s
        .get(&auditor, "/api/v1/audit?org=default")
        .await
        .json_with(200);
    assert_eq!(scoped["total"], seen["total"]);
    s.get(&auditor, "/api/v1/audit?org=b")
        .await
        .error(404, "not_found");

    // The platform admin also sees changes outside any org (their unbound keys).
    s.post(s.admin(), "/api/v1/me/keys", json!({ "name": "laptop" }))
        .await
        .expect(201);
    let everything = s.audit("action=key.create").await;
    assert!(
        items(&everything)
            .iter()
            .any(|i| i["org"].is_null() && i["target"] == "user:-/admin"),
        "{everything}"
    );
    let auditor_keys = s
        .get(&auditor, "/api/v1/audit?action=key.create")
        .await
        .json_with(200);
    assert!(items(&auditor_keys).iter().all(|i| i["org"] == "default"));
    s.stop().await;
}

/// `actor` is a query parameter; a malformed value is bad input like any other (400), not a
/// missing resource.
#[tokio::test]
async fn a_malformed_actor_filter_is_a_bad_request() {
    let s = Server::start().await;
    let r = s.get(s.admin(), "/api/v1/audit?actor=not-an-id").await;
    assert_contains(&r.error(400, "bad_request"), "actor");
    s.stop().await;
}
