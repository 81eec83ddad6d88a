//! Group membership from the identity model: roles held by a group count for its users, and for
//! the users of groups nested in it; changes are visible to the very next request.

use serde_json::json;

use crate::common::*;
use crate::support::*;

const GROUPS: &str = "/api/v1/orgs/default/groups";

async fn group(s: &Server, name: &str) {
    s.post(s.admin(), GROUPS, json!({ "name": name }))
        .await
        .expect(201);
}

async fn add_user(s: &Server, group: &str, user_id: &str) {
    s.post(
        s.admin(),
        &format!("{GROUPS}/{group}/members"),
        json!({ "userId": user_id }),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn a_role_of_a_group_counts_for_its_users_from_the_next_request() {
    let s = Server::start().await;
    let (bot_id, bot) = s.machine("default", "bot@example.com", "member").await;
    group(&s, "Team").await;
    create_role(&s, s.admin(), "role:default/dev", &["group:default/team"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");

    add_user(&s, "Team", &bot_id).await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");
    let explained = check(&s, &bot, json!({ "permission": catalog_read() })).await;
    assert_eq!(
        explained["explanation"]["groups"],
        json!(["group:default/team"])
    );
    assert_eq!(
        explained["explanation"]["roles"],
        json!(["role:default/dev"])
    );

    // A policy on the group itself counts too.
    add_policy(
        &s,
        "group:default/team",
        "catalog.entity.create",
        "create",
        "allow",
    )
    .await;
    assert_eq!(
        result_of(&s, &bot, basic("catalog.entity.create", Some("create"))).await,
        "ALLOW"
    );

    // Out of the group: denied at once.
    s.delete(s.admin(), &format!("{GROUPS}/team/members/users/{bot_id}"))
        .await
        .expect(204);
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    assert_eq!(
        result_of(&s, &bot, basic("catalog.entity.create", Some("create"))).await,
        "DENY"
    );

    // Back in, then the group is deleted.
    add_user(&s, "team", &bot_id).await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");
    s.delete(s.admin(), &format!("{GROUPS}/team"))
        .await
        .expect(204);
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
}

#[tokio::test]
async fn roles_of_parent_groups_count_through_nesting() {
    let s = Server::start().await;
    let (bot_id, bot) = s.machine("default", "bot@example.com", "member").await;
    group(&s, "engineering").await;
    group(&s, "platform").await;
    group(&s, "sre").await;
    // sre ⊂ platform ⊂ engineering
    for (parent, child) in [("engineering", "platform"), ("platform", "sre")] {
        s.post(
            s.admin(),
            &format!("{GROUPS}/{parent}/members"),
            json!({ "group": child }),
        )
        .await
        .expect(200);
    }
    add_user(&s, "sre", &bot_id).await;
    create_role(
        &s,
        s.admin(),
        "role:default/eng",
        &["group:default/engineering"],
    )
    .await;
    add_policy(&s, "role:default/eng", "catalog-entity", "read", "allow").await;

    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");
    let explained = check(&s, &bot, json!({ "permission": catalog_read() })).await;
    assert_eq!(
        explained["explanation"]["groups"],
        json!([
            "group:default/sre",
            "group:default/platform",
            "group:default/engineering"
        ]),
        "nearest first"
    );
    assert_eq!(
        explained["explanation"]["roles"],
        json!(["role:default/eng"])
    );

    // A deny held by an intermediate group wins.
    create_role(
        &s,
        s.admin(),
        "role:default/frozen",
        &["group:default/platform"],
    )
    .await;
    add_policy(&s, "role:default/frozen", "catalog-entity", "read", "deny").await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    empty(
        &s.delete(s.admin(), "/api/permission/roles/role/default/frozen")
            .await,
        204,
    );
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");

    // Breaking the chain takes the role away at once.
    s.delete(s.admin(), &format!("{GROUPS}/platform/members/groups/sre"))
        .await
        .expect(204);
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    let explained = check(&s, &bot, json!({ "permission": catalog_read() })).await;
    assert_eq!(
        explained["explanation"]["groups"],
        json!(["group:default/sre"])
    );
    assert_eq!(explained["explanation"]["roles"], json!([]));

    // Nesting it again gives it back at once.
    s.post(
        s.admin(),
        &format!("{GROUPS}/platform/members"),
        json!({ "group": "sre" }),
    )
    .await
    .expect(200);
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");
}

#[tokio::test]
async fn a_deactivated_member_loses_its_group_roles() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    let (carl_id, _) = s.machine("default", "carl@example.com", "member").await;
    group(&s, "team").await;
    add_user(&s, "team", &carl_id).await;
    create_role(&s, s.admin(), "role:default/dev", &["group:default/team"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;

    let carl = check(
        &s,
        s.admin(),
        json!({ "principal": "user:default/carl", "permission": catalog_read() }),
    )
    .await;
    assert_eq!(carl["result"], "ALLOW");
    s.post_empty(
        s.admin(),
        &format!("/api/v1/orgs/default/users/{carl_id}/deactivate"),
    )
    .await
    .expect(200);
    let carl = check(
        &s,
        s.admin(),
        json!({ "principal": "user:default/carl", "permission": catalog_read() }),
    )
    .await;
    assert_eq!(carl["result"], "DENY");
    assert_eq!(carl["explanation"]["groups"], json!([]));
    // Others are not affected.
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
}

#[tokio::test]
async fn owner_refs_in_conditions_are_the_user_and_its_direct_groups() {
    let s = Server::start().await;
    let (bot_id, bot) = s.machine("default", "bot@example.com", "member").await;
    group(&s, "team-a").await;
    group(&s, "org-wide").await;
    s.post(
        s.admin(),
        &format!("{GROUPS}/org-wide/members"),
        json!({ "group": "team-a" }),
    )
    .await
    .expect(200);
    add_user(&s, "team-a", &bot_id).await;
    // The role is held through the parent group: nesting counts for roles ...
    create_role(
        &s,
        s.admin(),
        "role:default/owners",
        &["group:default/org-wide"],
    )
    .await;
    add_condition(
        &s,
        condition(
            "role:default/owners",
            &["delete"],
            owner_rule(&["$ownerRefs"]),
        ),
    )
    .await;

    // ... but `$ownerRefs` is the user and its direct groups only, not the ancestors.
    let delete = resource("catalog.entity.delete", "catalog-entity", "delete");
    let answer = authorize(&s, &bot, delete.clone()).await;
    assert_eq!(answer["result"], "CONDITIONAL", "{answer}");
    assert_eq!(
        answer["conditions"],
        json!({ "anyOf": [owner_rule(&[
            "user:default/bot",
            "group:default/team-a",
        ])] })
    );
    for (owner, want) in [
        ("group:default/team-a", "ALLOW"),
        ("user:default/bot", "ALLOW"),
        ("group:default/org-wide", "DENY"),
        ("group:default/other", "DENY"),
    ] {
        let resolved = check(
            &s,
            &bot,
            json!({ "permission": delete, "resource": entity_owned_by(owner) }),
        )
        .await;
        assert_eq!(resolved["result"], want, "{owner}: {resolved}");
        assert_eq!(resolved["resolvedConditions"], true);
    }

    // `$ownerRefs` is expanded inside arrays only: as a plain value it stays as written, while
    // `$currentUser` is replaced either way.
    let labels = json!({ "anyOf": [
        { "rule": "HAS_LABEL", "resourceType": "catalog-entity", "params": { "label": "$ownerRefs" } },
        { "rule": "HAS_LABEL", "resourceType": "catalog-entity", "params": { "label": "$currentUser" } },
    ] });
    add_condition(&s, condition("role:default/owners", &["update"], labels)).await;
    let update = resource("catalog.entity.refresh", "catalog-entity", "update");
    let answer = authorize(&s, &bot, update).await;
    assert_eq!(answer["result"], "CONDITIONAL", "{answer}");
    assert_eq!(
        answer["conditions"],
        json!({ "anyOf": [{ "anyOf": [
            { "rule": "HAS_LABEL", "resourceType": "catalog-entity", "params": { "label": "$ownerRefs" } },
            { "rule": "HAS_LABEL", "resourceType": "catalog-entity", "params": { "label": "user:default/bot" } },
        ] }] })
    );
}
