//! Decisions: Backstage's `POST /api/permission/authorize` for the caller, the batch check with
//! explain and resolved conditions, and "what am I allowed to do".

use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn alice_gets_access_through_a_rest_role_and_loses_it_on_the_next_request() {
    let s = Server::start().await;
    let (_, alice) = s.machine("default", "alice@example.com", "member").await;
    assert_eq!(result_of(&s, &alice, catalog_read()).await, "DENY");

    // Role with membership, then the policy, all through REST.
    empty(
        &s.post(
            s.admin(),
            "/api/permission/roles",
            json!({ "name": "role:default/developers", "memberReferences": ["user:default/alice"] }),
        )
        .await,
        201,
    );
    assert_eq!(
        result_of(&s, &alice, catalog_read()).await,
        "DENY",
        "a role without policies grants nothing"
    );
    empty(
        &s.post(
            s.admin(),
            "/api/permission/policies",
            json!([{ "entityReference": "role:default/developers", "permission": "catalog-entity", "policy": "read", "effect": "allow" }]),
        )
        .await,
        201,
    );
    assert_eq!(
        authorize(&s, &alice, catalog_read()).await,
        json!({ "id": "q1", "result": "ALLOW" })
    );
    // Only what the policy names.
    assert_eq!(
        result_of(
            &s,
            &alice,
            resource("catalog.entity.delete", "catalog-entity", "delete")
        )
        .await,
        "DENY"
    );
    assert_eq!(
        result_of(&s, &alice, basic("catalog.entity.create", Some("create"))).await,
        "DENY"
    );

    // Several items in one request keep their ids and order.
    let batch = s
        .post(
            &alice,
            "/api/permission/authorize",
            json!({ "items": [
                { "id": "b", "permission": resource("catalog.entity.delete", "catalog-entity", "delete") },
                { "id": "a", "permission": catalog_read() },
            ] }),
        )
        .await
        .json_with(200);
    assert_eq!(
        batch,
        json!({ "items": [{ "id": "b", "result": "DENY" }, { "id": "a", "result": "ALLOW" }] })
    );

    // The policy goes: denied on the very next request.
    empty(
        &s.delete(
            s.admin(),
            "/api/permission/policies/role/default/developers?permission=catalog-entity&policy=read&effect=allow",
        )
        .await,
        204,
    );
    assert_eq!(result_of(&s, &alice, catalog_read()).await, "DENY");

    // Back again, then the membership goes.
    add_policy(
        &s,
        "role:default/developers",
        "catalog-entity",
        "read",
        "allow",
    )
    .await;
    assert_eq!(result_of(&s, &alice, catalog_read()).await, "ALLOW");
    empty(
        &s.put(
            s.admin(),
            "/api/permission/roles/role/default/developers",
            json!({
                "oldRole": { "name": "role:default/developers", "memberReferences": ["user:default/alice"] },
                "newRole": { "name": "role:default/developers", "memberReferences": ["user:default/bob"] },
            }),
        )
        .await,
        200,
    );
    assert_eq!(result_of(&s, &alice, catalog_read()).await, "DENY");
}

#[tokio::test]
async fn a_policy_on_the_user_itself_counts() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    add_policy(
        &s,
        "user:default/bot",
        "catalog.entity.create",
        "create",
        "allow",
    )
    .await;
    assert_eq!(
        result_of(&s, &bot, basic("catalog.entity.create", Some("create"))).await,
        "ALLOW"
    );
    // A permission without action is `use`.
    add_policy(&s, "user:default/bot", "kubernetes.proxy", "use", "allow").await;
    assert_eq!(
        result_of(&s, &bot, basic("kubernetes.proxy", None)).await,
        "ALLOW"
    );
    assert_eq!(
        result_of(&s, &bot, basic("bulk.import", None)).await,
        "DENY"
    );
}

#[tokio::test]
async fn basic_policy_entity_create_is_the_resource_permission_on_policy_entity() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    let basic_create = basic("policy.entity.create", Some("create"));
    assert_eq!(result_of(&s, &bot, basic_create.clone()).await, "DENY");

    create_role(
        &s,
        s.admin(),
        "role:default/creators",
        &["user:default/bot"],
    )
    .await;
    add_policy(
        &s,
        "role:default/creators",
        "policy-entity",
        "create",
        "allow",
    )
    .await;
    assert_eq!(
        authorize(&s, &bot, basic_create.clone()).await,
        json!({ "id": "q1", "result": "ALLOW" })
    );
    // As the resource permission too; other actions on policy-entity are not granted.
    assert_eq!(
        result_of(
            &s,
            &bot,
            resource("policy.entity.create", "policy-entity", "create")
        )
        .await,
        "ALLOW"
    );
    assert_eq!(
        result_of(
            &s,
            &bot,
            resource("policy.entity.delete", "policy-entity", "delete")
        )
        .await,
        "DENY"
    );
    // Only policy.entity.create is treated so: another basic permission is not.
    assert_eq!(
        result_of(&s, &bot, basic("catalog.entity.create", Some("create"))).await,
        "DENY"
    );

    // The policy goes: denied on the very next request.
    empty(
        &s.delete(
            s.admin(),
            "/api/permission/policies/role/default/creators?permission=policy-entity&policy=create&effect=allow",
        )
        .await,
        204,
    );
    assert_eq!(result_of(&s, &bot, basic_create).await, "DENY");
}

#[tokio::test]
async fn deny_beats_allow() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/readers", &["user:default/bot"]).await;
    add_policy(
        &s,
        "role:default/readers",
        "catalog-entity",
        "read",
        "allow",
    )
    .await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");

    // A deny from another role wins.
    create_role(&s, s.admin(), "role:default/blocked", &["user:default/bot"]).await;
    add_policy(&s, "role:default/blocked", "catalog-entity", "read", "deny").await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    let explained = check(&s, &bot, json!({ "permission": catalog_read() })).await;
    assert_eq!(explained["result"], "DENY");
    assert_eq!(explained["reason"], "policies on the resource type");
    let mut policies: Vec<String> = explained["explanation"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    policies.sort();
    assert_eq!(
        policies,
        [
            "p, role:default/blocked, catalog-entity, read, deny",
            "p, role:default/readers, catalog-entity, read, allow",
        ]
    );

    // A deny in the same role wins too.
    empty(
        &s.delete(s.admin(), "/api/permission/roles/role/default/blocked")
            .await,
        204,
    );
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");
    add_policy(&s, "role:default/readers", "catalog-entity", "read", "deny").await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    // And a deny on the user itself.
    empty(
        &s.delete(
            s.admin(),
            "/api/permission/policies/role/default/readers?permission=catalog-entity&policy=read&effect=deny",
        )
        .await,
        204,
    );
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "ALLOW");
    add_policy(&s, "user:default/bot", "catalog-entity", "read", "deny").await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
}

#[tokio::test]
async fn a_policy_on_the_permission_name_beats_one_on_the_resource_type() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/bot"]).await;

    // Allowed on the resource type, denied by name: denied.
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    add_policy(
        &s,
        "role:default/dev",
        "catalog.entity.read",
        "read",
        "deny",
    )
    .await;
    assert_eq!(result_of(&s, &bot, catalog_read()).await, "DENY");
    let explained = check(&s, &bot, json!({ "permission": catalog_read() })).await;
    assert_eq!(explained["reason"], "policies on the permission name");
    assert_eq!(
        explained["explanation"]["policies"],
        json!(["p, role:default/dev, catalog.entity.read, read, deny"])
    );

    // Denied on the resource type, allowed by name: allowed.
    add_policy(&s, "role:default/dev", "catalog-entity", "delete", "deny").await;
    add_policy(
        &s,
        "role:default/dev",
        "catalog.entity.delete",
        "delete",
        "allow",
    )
    .await;
    let delete = resource("catalog.entity.delete", "catalog-entity", "delete");
    assert_eq!(result_of(&s, &bot, delete.clone()).await, "ALLOW");
    let explained = check(&s, &bot, json!({ "permission": delete })).await;
    assert_eq!(explained["reason"], "policies on the permission name");

    // The resource type still decides permissions the names do not cover.
    add_policy(&s, "role:default/dev", "catalog-entity", "update", "allow").await;
    let refresh = resource("catalog.entity.refresh", "catalog-entity", "update");
    assert_eq!(result_of(&s, &bot, refresh.clone()).await, "ALLOW");
    let explained = check(&s, &bot, json!({ "permission": refresh })).await;
    assert_eq!(explained["reason"], "policies on the resource type");
}

#[tokio::test]
async fn a_conditional_decision_comes_back_from_authorize_and_is_resolved_by_check() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/owners", &["user:default/bot"]).await;
    let id = add_condition(
        &s,
        condition(
            "role:default/owners",
            &["read", "delete"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;

    // Backstage's endpoint returns the conditions for the caller, aliases replaced.
    let conditions = json!({ "anyOf": [owner_rule(&["user:default/bot"])] });
    assert_eq!(
        authorize(&s, &bot, catalog_read()).await,
        json!({
            "id": "q1",
            "result": "CONDITIONAL",
            "pluginId": "catalog",
            "resourceType": "catalog-entity",
            "conditions": conditions,
        })
    );
    assert_eq!(
        authorize(
            &s,
            &bot,
            resource("catalog.entity.delete", "catalog-entity", "delete")
        )
        .await["result"],
        "CONDITIONAL"
    );
    // Actions the condition does not map are decided by policies (none: denied).
    assert_eq!(
        result_of(
            &s,
            &bot,
            resource("catalog.entity.refresh", "catalog-entity", "update")
        )
        .await,
        "DENY"
    );

    // The check without a resource answers the same.
    let unresolved = check(&s, &bot, json!({ "id": "c", "permission": catalog_read() })).await;
    assert_eq!(unresolved["id"], "c");
    assert_eq!(unresolved["principal"], "user:default/bot");
    assert_eq!(unresolved["result"], "CONDITIONAL");
    assert_eq!(unresolved["conditions"], conditions);
    assert_eq!(
        unresolved["reason"],
        "conditional policies of the principal's roles"
    );
    assert!(
        unresolved.get("resolvedConditions").is_none(),
        "{unresolved}"
    );
    assert_eq!(unresolved["explanation"]["conditions"], json!([id]));
    assert_eq!(
        unresolved["explanation"]["roles"],
        json!(["role:default/owners"])
    );

    // With a resource, Portcullis resolves the conditions.
    let mine = check(
        &s,
        &bot,
        json!({ "id": "m", "permission": catalog_read(), "resource": entity_owned_by("user:default/bot") }),
    )
    .await;
    assert_eq!(mine["result"], "ALLOW", "{mine}");
    assert_eq!(mine["resolvedConditions"], true);
    assert!(mine.get("conditions").is_none(), "{mine}");
    let theirs = check(
        &s,
        &bot,
        json!({ "id": "t", "permission": catalog_read(), "resource": entity_owned_by("group:default/team-a") }),
    )
    .await;
    assert_eq!(theirs["result"], "DENY", "{theirs}");
    assert_eq!(theirs["resolvedConditions"], true);

    // Merged with another role's condition through anyOf.
    create_role(&s, s.admin(), "role:default/team", &["user:default/bot"]).await;
    add_condition(
        &s,
        condition(
            "role:default/team",
            &["read"],
            owner_rule(&["group:default/team-a"]),
        ),
    )
    .await;
    let merged = authorize(&s, &bot, catalog_read()).await;
    assert_eq!(merged["result"], "CONDITIONAL");
    let mut items: Vec<String> = merged["conditions"]["anyOf"]
        .as_array()
        .unwrap_or_else(|| panic!("anyOf in {merged}"))
        .iter()
        .map(|c| c.to_string())
        .collect();
    items.sort();
    let mut want = vec![
        owner_rule(&["group:default/team-a"]).to_string(),
        owner_rule(&["user:default/bot"]).to_string(),
    ];
    want.sort();
    assert_eq!(items, want);
    let theirs = check(
        &s,
        &bot,
        json!({ "permission": catalog_read(), "resource": entity_owned_by("group:default/team-a") }),
    )
    .await;
    assert_eq!(theirs["result"], "ALLOW", "{theirs}");

    // Another user sees its own reference in the conditions.
    let (_, other) = s.machine("default", "other@example.com", "member").await;
    empty(
        &s.put(
            s.admin(),
            "/api/permission/roles/role/default/owners",
            json!({
                "oldRole": { "name": "role:default/owners", "memberReferences": ["user:default/bot"] },
                "newRole": { "name": "role:default/owners", "memberReferences": ["user:default/bot", "user:default/other"] },
            }),
        )
        .await,
        200,
    );
    assert_eq!(
        authorize(&s, &other, catalog_read()).await["conditions"],
        json!({ "anyOf": [owner_rule(&["user:default/other"])] })
    );
}

#[tokio::test]
async fn explain_names_the_groups_roles_and_policy_lines_that_decided() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/bot"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;

    let answer = check(&s, &bot, json!({ "id": "x", "permission": catalog_read() })).await;
    assert_eq!(
        answer,
        json!({
            "id": "x",
            "principal": "user:default/bot",
            "result": "ALLOW",
            "reason": "policies on the resource type",
            "explanation": {
                "groups": [],
                "roles": ["role:default/dev"],
                "policies": ["p, role:default/dev, catalog-entity, read, allow"],
                "conditions": [],
            },
        })
    );

    // Nothing matched: denied by default, and said so.
    let none = check(
        &s,
        &bot,
        json!({ "permission": basic("catalog.location.create", Some("create")) }),
    )
    .await;
    assert_eq!(none["result"], "DENY");
    assert_eq!(none["reason"], "no policy matched (denied by default)");
    assert_eq!(none["explanation"]["policies"], json!([]));
    assert_eq!(none["explanation"]["roles"], json!(["role:default/dev"]));
    assert_eq!(none["id"], json!(null));

    // Without explain there is no explanation.
    let plain = s
        .post(
            &bot,
            "/api/v1/check",
            json!({ "items": [{ "permission": catalog_read() }] }),
        )
        .await
        .json_with(200);
    assert_eq!(plain["items"][0]["result"], "ALLOW");
    assert!(plain["items"][0].get("explanation").is_none(), "{plain}");
}

#[tokio::test]
async fn only_policy_administrators_check_other_principals() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    s.machine("default", "alice@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/alice"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;

    // A member asking about someone else: 403 in our own error shape (this is /api/v1).
    let r = s
        .post(
            &bot,
            "/api/v1/check",
            json!({ "items": [{ "principal": "user:default/alice", "permission": catalog_read() }] }),
        )
        .await;
    assert_eq!(
        r.error(403, "forbidden"),
        "only policy administrators may check other principals"
    );
    // About itself, named explicitly (in any case): fine.
    let me = check(
        &s,
        &bot,
        json!({ "principal": "user:default/BOT", "permission": catalog_read() }),
    )
    .await;
    assert_eq!(me["principal"], "user:default/bot");
    assert_eq!(me["result"], "DENY");

    // The admin checks anyone.
    let alice = check(
        &s,
        s.admin(),
        json!({ "principal": "user:default/alice", "permission": catalog_read() }),
    )
    .await;
    assert_eq!(alice["principal"], "user:default/alice");
    assert_eq!(alice["result"], "ALLOW");
    assert_eq!(alice["explanation"]["roles"], json!(["role:default/dev"]));

    // Bad input: our shape, 400.
    let r = s
        .post(
            s.admin(),
            "/api/v1/check",
            json!({ "items": [{ "principal": "role:default/dev", "permission": catalog_read() }] }),
        )
        .await;
    assert_contains(&r.error(400, "bad_request"), "items[0].principal");
    let r = s
        .post(
            s.admin(),
            "/api/v1/check",
            json!({ "items": [{ "permission": catalog_read(), "unknown": 1 }] }),
        )
        .await;
    r.error(400, "bad_request");
}

#[tokio::test]
async fn authorize_refuses_malformed_permissions_in_the_backstage_shape() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    let url = "/api/permission/authorize";
    let r = s
        .post(
            &bot,
            url,
            json!({ "items": [{ "id": "1", "permission": resource("catalog.entity.read", "catalog-entity", "write") }] }),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "POST", url),
        "'write' is not one of create, read, update, delete",
    );
    let r = s
        .post(
            &bot,
            url,
            json!({ "items": [{ "id": "1", "permission": { "type": "resource", "name": "catalog.entity.read", "attributes": { "action": "read" } } }] }),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "POST", url),
        "permission.resourceType",
    );
    let r = s.post(&bot, url, json!({ "items": [{ "id": "1" }] })).await;
    assert_contains(
        &backstage(&r, 400, "InputError", "POST", url),
        "invalid request body",
    );
    // An empty batch is an empty answer.
    assert_eq!(
        s.post(&bot, url, json!({ "items": [] }))
            .await
            .json_with(200),
        json!({ "items": [] })
    );
}

#[tokio::test]
async fn my_permissions_lists_every_plugin_permission_with_its_result() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/bot"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    add_policy(
        &s,
        "role:default/dev",
        "catalog.entity.create",
        "create",
        "allow",
    )
    .await;
    let id = add_condition(
        &s,
        condition(
            "role:default/dev",
            &["delete"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    assert!(id > 0);

    let mine = s.get(&bot, "/api/v1/me/permissions").await.json_with(200);
    assert_eq!(mine["principal"], "user:default/bot");
    let list = mine["permissions"].as_array().unwrap();
    assert_eq!(list.len(), 23, "every declared permission: {mine}");
    let find = |name: &str| {
        list.iter()
            .find(|p| p["permission"] == name)
            .unwrap_or_else(|| panic!("{name} in {mine}"))
            .clone()
    };
    assert_eq!(
        find("catalog.entity.read"),
        json!({ "pluginId": "catalog", "permission": "catalog.entity.read", "resourceType": "catalog-entity", "policy": "read", "result": "ALLOW", "conditions": null })
    );
    assert_eq!(
        find("catalog.entity.create"),
        json!({ "pluginId": "catalog", "permission": "catalog.entity.create", "resourceType": null, "policy": "create", "result": "ALLOW", "conditions": null })
    );
    assert_eq!(
        find("catalog.entity.delete"),
        json!({
            "pluginId": "catalog",
            "permission": "catalog.entity.delete",
            "resourceType": "catalog-entity",
            "policy": "delete",
            "result": "CONDITIONAL",
            "conditions": { "anyOf": [owner_rule(&["user:default/bot"])] },
        })
    );
    assert_eq!(find("catalog.entity.refresh")["result"], "DENY");
    assert_eq!(find("policy.entity.read")["result"], "DENY");
    assert_eq!(find("bulk.import")["policy"], "use");
}

#[tokio::test]
async fn a_resource_changes_nothing_when_the_decision_is_not_conditional() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    create_role(&s, s.admin(), "role:default/dev", &["user:default/bot"]).await;
    add_policy(&s, "role:default/dev", "catalog-entity", "read", "allow").await;
    let other_entity = entity_owned_by("group:default/elsewhere");
    let allowed = check(
        &s,
        &bot,
        json!({ "permission": catalog_read(), "resource": other_entity }),
    )
    .await;
    assert_eq!(allowed["result"], "ALLOW");
    assert!(allowed.get("resolvedConditions").is_none(), "{allowed}");
    let denied = check(
        &s,
        &bot,
        json!({ "permission": resource("catalog.entity.delete", "catalog-entity", "delete"), "resource": other_entity }),
    )
    .await;
    assert_eq!(denied["result"], "DENY");
    assert!(denied.get("resolvedConditions").is_none(), "{denied}");
}

#[tokio::test]
async fn batches_are_bounded() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    let items = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({ "id": i.to_string(), "permission": catalog_read() }))
            .collect()
    };
    let full = s
        .post(
            &bot,
            "/api/permission/authorize",
            json!({ "items": items(1000) }),
        )
        .await
        .json_with(200);
    assert_eq!(full["items"].as_array().unwrap().len(), 1000);
    assert_eq!(full["items"][999], json!({ "id": "999", "result": "DENY" }));
    let r = s
        .post(
            &bot,
            "/api/permission/authorize",
            json!({ "items": items(1001) }),
        )
        .await;
    assert_eq!(
        backstage(&r, 400, "InputError", "POST", "/api/permission/authorize"),
        "at most 1000 items per request"
    );
    let checks: Vec<serde_json::Value> = (0..1001)
        .map(|_| json!({ "permission": catalog_read() }))
        .collect();
    let r = s
        .post(&bot, "/api/v1/check", json!({ "items": checks }))
        .await;
    assert_eq!(
        r.error(400, "bad_request"),
        "at most 1000 items per request"
    );
}

#[tokio::test]
async fn the_caller_is_the_user_of_the_org_its_key_is_bound_to() {
    let s = Server::start().await;
    s.create_org("acme").await;
    let (bot_id, default_key) = s.machine("default", "bot@example.com", "member").await;
    s.post(
        s.admin(),
        "/api/v1/orgs/acme/members",
        json!({ "email": "bot@example.com" }),
    )
    .await
    .expect(201);
    let acme_key = s
        .create_key_for(s.admin(), "acme", &bot_id, "acme-ci")
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    create_role(
        &s,
        s.admin(),
        "role:default/acme-readers",
        &["user:acme/bot"],
    )
    .await;
    add_policy(
        &s,
        "role:default/acme-readers",
        "catalog-entity",
        "read",
        "allow",
    )
    .await;

    assert_eq!(result_of(&s, &acme_key, catalog_read()).await, "ALLOW");
    assert_eq!(result_of(&s, &default_key, catalog_read()).await, "DENY");
    let acme = s
        .get(&acme_key, "/api/v1/me/permissions")
        .await
        .json_with(200);
    assert_eq!(acme["principal"], "user:acme/bot");
    let default = s
        .get(&default_key, "/api/v1/me/permissions")
        .await
        .json_with(200);
    assert_eq!(default["principal"], "user:default/bot");
    let me = check(&s, &acme_key, json!({ "permission": catalog_read() })).await;
    assert_eq!(me["principal"], "user:acme/bot");
    assert_eq!(me["result"], "ALLOW");
    // Bound to acme, it may not ask about its default-org self.
    let r = s
        .post(
            &acme_key,
            "/api/v1/check",
            json!({ "items": [{ "principal": "user:default/bot", "permission": catalog_read() }] }),
        )
        .await;
    r.error(403, "forbidden");
}
