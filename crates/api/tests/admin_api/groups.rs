//! Groups: create, read, members (users and nested groups), cycles refused, removal.

use serde_json::json;

use crate::support::*;

const GROUPS: &str = "/api/v1/orgs/default/groups";

#[tokio::test]
async fn groups_hold_users_and_nested_groups_without_cycles() {
    let s = Server::start().await;
    let team = s
        .post(
            s.admin(),
            GROUPS,
            json!({ "name": "platform-team", "description": "Runs the platform" }),
        )
        .await
        .json_with(201);
    assert!(!team["id"].as_str().unwrap().is_empty());
    assert_eq!(team["name"], "platform-team");
    assert_eq!(team["ref"], "group:default/platform-team");
    assert_eq!(team["description"], "Runs the platform");
    assert_eq!(team["source"], "local");
    assert!(is_timestamp(&team["createdAt"]));
    let sre = s
        .post(s.admin(), GROUPS, json!({ "name": "SRE" }))
        .await
        .json_with(201);
    assert_eq!(sre["ref"], "group:default/sre");
    assert_eq!(sre["description"], "");
    s.post(s.admin(), GROUPS, json!({ "name": "oncall" }))
        .await
        .expect(201);

    let dup = s
        .post(s.admin(), GROUPS, json!({ "name": "Platform-Team" }))
        .await;
    assert_contains(&dup.error(409, "conflict"), "Platform-Team");
    for bad in ["two words", "-lead", "a..b", ""] {
        let r = s.post(s.admin(), GROUPS, json!({ "name": bad })).await;
        assert!(r.error(422, "invalid").starts_with("name: "), "{bad:?}");
    }

    let list = s.get(s.admin(), GROUPS).await.json_with(200);
    assert_eq!(strings(&list, "name"), ["oncall", "platform-team", "SRE"]);
    let one = s
        .get(s.admin(), &format!("{GROUPS}/PLATFORM-TEAM"))
        .await
        .json_with(200);
    assert_eq!(one, team, "names ignore case");
    s.get(s.admin(), &format!("{GROUPS}/nope"))
        .await
        .error(404, "not_found");

    // Users.
    let bob = s
        .create_user(s.admin(), "default", json!({ "email": "bob@example.com" }))
        .await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    let members = format!("{GROUPS}/platform-team/members");
    let after_add = s
        .post(s.admin(), &members, json!({ "userId": bob_id }))
        .await
        .json_with(200);
    assert_eq!(
        after_add,
        json!({ "users": [{ "id": bob_id, "email": "bob@example.com", "username": "bob" }], "groups": [] })
    );
    s.post(s.admin(), &members, json!({ "userId": bob_id }))
        .await
        .error(409, "conflict");
    let bob_view = s
        .get(s.admin(), &format!("/api/v1/orgs/default/users/{bob_id}"))
        .await
        .json_with(200);
    assert_eq!(bob_view["groups"], json!(["platform-team"]));

    // Nesting, and the cycles it must not close.
    let nested = s
        .post(s.admin(), &members, json!({ "group": "sre" }))
        .await
        .json_with(200);
    assert_eq!(nested["groups"], json!(["SRE"]));
    assert_eq!(nested["users"].as_array().unwrap().len(), 1);
    s.post(
        s.admin(),
        &format!("{GROUPS}/sre/members"),
        json!({ "group": "oncall" }),
    )
    .await
    .expect(200);
    // platform-team > SRE > oncall: oncall may not contain platform-team, nor SRE.
    let cycle = s
        .post(
            s.admin(),
            &format!("{GROUPS}/oncall/members"),
            json!({ "group": "platform-team" }),
        )
        .await;
    assert_contains(&cycle.error(409, "conflict"), "cycle");
    s.post(
        s.admin(),
        &format!("{GROUPS}/oncall/members"),
        json!({ "group": "SRE" }),
    )
    .await
    .error(409, "conflict");
    s.post(s.admin(), &members, json!({ "group": "Platform-Team" }))
        .await
        .error(409, "conflict");
    s.post(s.admin(), &members, json!({ "group": "sre" }))
        .await
        .error(409, "conflict");
    assert_eq!(
        s.get(s.admin(), &format!("{GROUPS}/oncall/members"))
            .await
            .json_with(200),
        json!({ "users": [], "groups": [] }),
        "refused nestings are not stored"
    );

    // Exactly one of userId and group.
    for body in [json!({}), json!({ "userId": bob_id, "group": "oncall" })] {
        let r = s.post(s.admin(), &members, body).await;
        assert!(r.error(422, "invalid").starts_with("userId: "));
    }
    s.post(s.admin(), &members, json!({ "userId": "not-an-id" }))
        .await
        .error(404, "not_found");
    s.post(s.admin(), &members, json!({ "group": "missing" }))
        .await
        .error(404, "not_found");
    s.post(
        s.admin(),
        &format!("{GROUPS}/missing/members"),
        json!({ "userId": bob_id }),
    )
    .await
    .error(404, "not_found");
    s.create_org("other").await;
    let stranger = s
        .create_user(s.admin(), "other", json!({ "email": "eve@example.com" }))
        .await;
    s.post(s.admin(), &members, json!({ "userId": stranger["id"] }))
        .await
        .error(404, "not_found");

    let current = s.get(s.admin(), &members).await.json_with(200);
    assert_eq!(
        current,
        json!({ "users": [{ "id": bob_id, "email": "bob@example.com", "username": "bob" }], "groups": ["SRE"] })
    );

    // Removal.
    s.delete(s.admin(), &format!("{members}/users/{bob_id}"))
        .await
        .expect(204);
    s.delete(s.admin(), &format!("{members}/users/{bob_id}"))
        .await
        .error(404, "not_found");
    s.delete(s.admin(), &format!("{members}/groups/sre"))
        .await
        .expect(204);
    s.delete(s.admin(), &format!("{members}/groups/sre"))
        .await
        .error(404, "not_found");
    assert_eq!(
        s.get(s.admin(), &members).await.json_with(200),
        json!({ "users": [], "groups": [] })
    );
    let bob_view = s
        .get(s.admin(), &format!("/api/v1/orgs/default/users/{bob_id}"))
        .await
        .json_with(200);
    assert_eq!(bob_view["groups"], json!([]));
    // With the link gone, the former cycle is a valid nesting.
    s.post(
        s.admin(),
        &format!("{GROUPS}/oncall/members"),
        json!({ "group": "platform-team" }),
    )
    .await
    .expect(200);

    // Deleting a group takes its memberships with it.
    s.post(
        s.admin(),
        &format!("{GROUPS}/sre/members"),
        json!({ "userId": bob_id }),
    )
    .await
    .expect(200);
    s.delete(s.admin(), &format!("{GROUPS}/sre"))
        .await
        .expect(204);
    s.get(s.admin(), &format!("{GROUPS}/sre"))
        .await
        .error(404, "not_found");
    s.delete(s.admin(), &format!("{GROUPS}/sre"))
        .await
        .error(404, "not_found");
    let bob_view = s
        .get(s.admin(), &format!("/api/v1/orgs/default/users/{bob_id}"))
        .await
        .json_with(200);
    assert_eq!(bob_view["groups"], json!([]));
    assert_eq!(
        s.get(s.admin(), &format!("{GROUPS}/oncall/members"))
            .await
            .json_with(200)["groups"],
        json!(["platform-team"])
    );
    // Re-creating the name starts empty.
    s.post(s.admin(), GROUPS, json!({ "name": "sre" }))
        .await
        .expect(201);
    assert_eq!(
        s.get(s.admin(), &format!("{GROUPS}/sre/members"))
            .await
            .json_with(200),
        json!({ "users": [], "groups": [] })
    );
    s.stop().await;
}

#[tokio::test]
async fn members_see_groups_but_cannot_change_them() {
    let s = Server::start().await;
    s.post(s.admin(), GROUPS, json!({ "name": "ops" }))
        .await
        .expect(201);
    let (member_id, member) = s.machine("default", "member@example.com", "member").await;
    s.post(
        s.admin(),
        &format!("{GROUPS}/ops/members"),
        json!({ "userId": member_id }),
    )
    .await
    .expect(200);

    assert_eq!(
        strings(&s.get(&member, GROUPS).await.json_with(200), "name"),
        ["ops"]
    );
    s.get(&member, &format!("{GROUPS}/ops")).await.expect(200);
    let members = s
        .get(&member, &format!("{GROUPS}/ops/members"))
        .await
        .json_with(200);
    assert_eq!(members["users"][0]["id"], member_id);
    let me = s.get(&member, "/api/v1/me").await.json_with(200);
    assert_eq!(me["orgs"][0]["groups"], json!(["ops"]));

    s.post(&member, GROUPS, json!({ "name": "mine" }))
        .await
        .error(403, "forbidden");
    s.post(
        &member,
        &format!("{GROUPS}/ops/members"),
        json!({ "group": "ops" }),
    )
    .await
    .error(403, "forbidden");
    s.delete(&member, &format!("{GROUPS}/ops/members/users/{member_id}"))
        .await
        .error(403, "forbidden");
    s.delete(&member, &format!("{GROUPS}/ops"))
        .await
        .error(403, "forbidden");
    s.get(s.admin(), &format!("{GROUPS}/ops")).await.expect(200);
    s.stop().await;
}
