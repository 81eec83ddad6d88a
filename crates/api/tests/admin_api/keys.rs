//! API keys: one's own (`/api/v1/me/keys`) and those org admins manage for machine and SSO
//! users; shown once, never listed, refused at once when deleted or expired, bound to an org.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn own_keys_are_shown_once_listed_without_secret_and_refused_right_after_deletion() {
    let s = Server::start().await;
    let me = s.get(s.admin(), "/api/v1/me").await.json_with(200);

    let created = s
        .post(s.admin(), "/api/v1/me/keys", json!({ "name": "laptop" }))
        .await
        .json_with(201);
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pcl_"), "{secret}");
    assert_eq!(secret.len(), 47, "pcl_ and 43 base64url characters");
    assert_eq!(created["name"], "laptop");
    assert_eq!(created["prefix"], &secret[..12]);
    assert_eq!(
        created["org"],
        json!(null),
        "a key made with an unbound key is unbound"
    );
    assert_eq!(created["lastUsedAt"], json!(null));
    assert_eq!(created["expiresAt"], json!(null));
    assert!(is_timestamp(&created["createdAt"]));
    let key_id = created["id"].as_str().unwrap().to_owned();

    let via_new = s.get(&secret, "/api/v1/me").await.json_with(200);
    assert_eq!(via_new["id"], me["id"], "the new key is the admin's");

    let until = rfc3339_from_now(Duration::from_secs(86_400), false);
    let expiring = s
        .post(
            s.admin(),
            "/api/v1/me/keys",
            json!({ "name": "temporary", "expiresAt": until }),
        )
        .await
        .json_with(201);
    assert_eq!(millis(&expiring["expiresAt"]), millis(&json!(until)));

    let listed = s.get(s.admin(), "/api/v1/me/keys").await.json_with(200);
    assert_eq!(
        strings(&listed, "name"),
        ["bootstrap", "laptop", "temporary"]
    );
    for k in listed.as_array().unwrap() {
        assert!(k.get("key").is_none(), "a listing never shows the key: {k}");
        assert!(!listed.to_string().contains(&secret));
    }
    assert_eq!(listed[1]["id"], created["id"]);
    assert_eq!(listed[1]["prefix"], created["prefix"]);

    // Refused inputs.
    let past = s
        .post(
            s.admin(),
            "/api/v1/me/keys",
            json!({ "name": "old", "expiresAt": "2000-01-01T00:00:00Z" }),
        )
        .await;
    assert!(past.error(422, "invalid").starts_with("expiresAt: "));
    let garbled = s
        .post(
            s.admin(),
            "/api/v1/me/keys",
            json!({ "name": "old", "expiresAt": "tomorrow" }),
        )
        .await;
    assert_contains(&garbled.error(400, "bad_request"), "expiresAt");
    let blank = s
        .post(s.admin(), "/api/v1/me/keys", json!({ "name": "   " }))
        .await;
    assert!(blank.error(422, "invalid").starts_with("name: "));
    let listed_again = s.get(s.admin(), "/api/v1/me/keys").await.json_with(200);
    assert_eq!(
        listed_again.as_array().unwrap().len(),
        3,
        "refused keys are not stored"
    );

    // Deleting: refused on the very next request.
    s.delete(s.admin(), &format!("/api/v1/me/keys/{key_id}"))
        .await
        .expect(204);
    let gone = s.get(&secret, "/api/v1/me").await;
    gone.error(401, "unauthenticated");
    s.get(&secret, "/api/v1/me/keys")
        .await
        .error(401, "unauthenticated");
    s.delete(s.admin(), &format!("/api/v1/me/keys/{key_id}"))
        .await
        .error(404, "not_found");
    s.delete(s.admin(), "/api/v1/me/keys/not-a-key")
        .await
        .error(404, "not_found");
    let remaining = s.get(s.admin(), "/api/v1/me/keys").await.json_with(200);
    assert_eq!(strings(&remaining, "name"), ["bootstrap", "temporary"]);
    s.get(s.admin(), "/api/v1/me").await.expect(200);

    // A key can delete itself; the deleting request succeeds, the next one does not.
    let own = s
        .post(s.admin(), "/api/v1/me/keys", json!({ "name": "self" }))
        .await
        .json_with(201);
    let own_key = own["key"].as_str().unwrap();
    s.delete(
        own_key,
        &format!("/api/v1/me/keys/{}", own["id"].as_str().unwrap()),
    )
    .await
    .expect(204);
    s.get(own_key, "/api/v1/me")
        .await
        .error(401, "unauthenticated");
    s.stop().await;
}

#[tokio::test]
async fn users_cannot_delete_keys_of_others_through_their_own_endpoint() {
    let s = Server::start().await;
    let (bot_id, bot_key) = s.machine("default", "bot@example.com", "member").await;
    let bot_keys = s
        .get(
            s.admin(),
            &format!("/api/v1/orgs/default/users/{bot_id}/keys"),
        )
        .await
        .json_with(200);
    let bot_key_id = bot_keys[0]["id"].as_str().unwrap();
    s.delete(s.admin(), &format!("/api/v1/me/keys/{bot_key_id}"))
        .await
        .error(404, "not_found");
    s.get(&bot_key, "/api/v1/me").await.expect(200);
    let admin_keys = s.get(s.admin(), "/api/v1/me/keys").await.json_with(200);
    let admin_key_id = admin_keys[0]["id"].as_str().unwrap();
    s.delete(&bot_key, &format!("/api/v1/me/keys/{admin_key_id}"))
        .await
        .error(404, "not_found");
    s.get(s.admin(), "/api/v1/me").await.expect(200);
    s.stop().await;
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let s = Server::start().await;
    // Seconds precision: the key expires one to two seconds from now.
    let soon = rfc3339_from_now(Duration::from_secs(2), false);
    let created = s
        .post(
            s.admin(),
            "/api/v1/me/keys",
            json!({ "name": "short-lived", "expiresAt": soon }),
        )
        .await
        .json_with(201);
    let key = created["key"].as_str().unwrap().to_owned();
    let refused = eventually(Duration::from_secs(5), || async {
        let r = s.get(&key, "/api/v1/me").await;
        (r.status == 401).then_some(r)
    })
    .await
    .expect("the key stops working when it expires");
    assert_contains(&refused.error(401, "unauthenticated"), "expired");
    // It is still listed, with its expiry, until deleted.
    let listed = s.get(s.admin(), "/api/v1/me/keys").await.json_with(200);
    assert_eq!(strings(&listed, "name"), ["bootstrap", "short-lived"]);
    s.stop().await;
}

#[tokio::test]
async fn org_admins_manage_keys_of_machine_and_sso_users_bound_to_their_org() {
    let s = Server::start().await;
    let bot = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "build-bot@example.com", "kind": "machine" }),
        )
        .await;
    let bot_id = bot["id"].as_str().unwrap().to_owned();
    let keys_path = format!("/api/v1/orgs/default/users/{bot_id}/keys");

    let jenkins = s
        .post(s.admin(), &keys_path, json!({ "name": "jenkins" }))
        .await
        .json_with(201);
    let jenkins_key = jenkins["key"].as_str().unwrap().to_owned();
    assert!(jenkins_key.starts_with("pcl_"));
    assert_eq!(jenkins["org"], "default");
    assert_eq!(jenkins["name"], "jenkins");
    assert_eq!(jenkins["prefix"], &jenkins_key[..12]);

    let me = s.get(&jenkins_key, "/api/v1/me").await.json_with(200);
    assert_eq!(me["id"], bot["id"]);
    assert_eq!(me["kind"], "machine");
    assert_eq!(me["platformAdmin"], false);
    assert_eq!(me["consoleAccess"], false);
    assert_eq!(me["credentialOrg"], "default");
    assert_eq!(strings(&me["orgs"], "slug"), ["default"]);
    s.get(&jenkins_key, "/api/v1/orgs/default")
        .await
        .expect(200);

    // The bot joins org b, even as an admin there: the default key still does not reach it.
    s.create_org("b").await;
    s.post(
        s.admin(),
        "/api/v1/orgs/b/members",
        json!({ "email": "build-bot@example.com", "orgRole": "admin" }),
    )
    .await
    .expect(201);
    s.get(&jenkins_key, "/api/v1/orgs/b")
        .await
        .error(404, "not_found");
    s.get(&jenkins_key, "/api/v1/orgs/b/users")
        .await
        .error(404, "not_found");
    let orgs = s.get(&jenkins_key, "/api/v1/orgs").await.json_with(200);
    assert_eq!(
        strings(&orgs, "slug"),
        ["default"],
        "a bound key lists its org only"
    );
    let me = s.get(&jenkins_key, "/api/v1/me").await.json_with(200);
    assert_eq!(strings(&me["orgs"], "slug"), ["default"]);

    let in_b = s.create_key_for(s.admin(), "b", &bot_id, "deployer").await;
    assert_eq!(in_b["org"], "b");
    let b_key = in_b["key"].as_str().unwrap().to_owned();
    s.get(&b_key, "/api/v1/orgs/b/users").await.expect(200);
    s.get(&b_key, "/api/v1/orgs/default")
        .await
        .error(404, "not_found");
    // A key made by the bot with a bound key is bound to the same org.
    let own = s
        .post(&b_key, "/api/v1/me/keys", json!({ "name": "own" }))
        .await
        .json_with(201);
    assert_eq!(own["org"], "b");
    let own_key = own["key"].as_str().unwrap().to_owned();
    s.get(&own_key, "/api/v1/orgs/b").await.expect(200);
    s.get(&own_key, "/api/v1/orgs/default")
        .await
        .error(404, "not_found");

    // Each org lists the keys that work there, never the secrets.
    let in_default = s.get(s.admin(), &keys_path).await.json_with(200);
    assert_eq!(strings(&in_default, "name"), ["jenkins"]);
    assert_eq!(in_default[0]["org"], "default");
    assert!(in_default[0].get("key").is_none());
    let listed_b = s
        .get(s.admin(), &format!("/api/v1/orgs/b/users/{bot_id}/keys"))
        .await
        .json_with(200);
    assert_eq!(strings(&listed_b, "name"), ["deployer", "own"]);

    // An org admin deletes only keys that work in their org.
    s.delete(
        s.admin(),
        &format!("{keys_path}/{}", in_b["id"].as_str().unwrap()),
    )
    .await
    .error(404, "not_found");
    s.get(&b_key, "/api/v1/orgs/b").await.expect(200);
    s.delete(
        s.admin(),
        &format!("{keys_path}/{}", jenkins["id"].as_str().unwrap()),
    )
    .await
    .expect(204);
    s.get(&jenkins_key, "/api/v1/orgs/default")
        .await
        .error(401, "unauthenticated");
    assert_eq!(s.get(s.admin(), &keys_path).await.json_with(200), json!([]));

    // SSO users too; local users manage their own keys.
    let sso = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "sso@example.com", "kind": "sso" }),
        )
        .await;
    let sso_key = s
        .create_key_for(s.admin(), "default", sso["id"].as_str().unwrap(), "cli")
        .await;
    assert_eq!(sso_key["org"], "default");
    s.get(sso_key["key"].as_str().unwrap(), "/api/v1/me")
        .await
        .expect(200);
    let local = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "local@example.com" }),
        )
        .await;
    let local_keys = format!(
        "/api/v1/orgs/default/users/{}/keys",
        local["id"].as_str().unwrap()
    );
    let refused = s.post(s.admin(), &local_keys, json!({ "name": "x" })).await;
    assert_contains(&refused.error(403, "forbidden"), "/api/v1/me/keys");
    s.get(s.admin(), &local_keys).await.error(403, "forbidden");
    let admin_id = s.admin_id().await;
    s.post(
        s.admin(),
        &format!("/api/v1/orgs/default/users/{admin_id}/keys"),
        json!({ "name": "x" }),
    )
    .await
    .error(403, "forbidden");
    s.post(
        s.admin(),
        &format!("/api/v1/orgs/default/users/{}/keys", uuid::Uuid::now_v7()),
        json!({ "name": "x" }),
    )
    .await
    .error(404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn auditors_list_machine_keys_but_only_admins_create_or_delete_them() {
    let s = Server::start().await;
    let (bot_id, _) = s.machine("default", "bot@example.com", "member").await;
    let (_, auditor) = s.machine("default", "auditor@example.com", "auditor").await;
    let (_, member) = s.machine("default", "member@example.com", "member").await;
    let path = format!("/api/v1/orgs/default/users/{bot_id}/keys");

    let listed = s.get(&auditor, &path).await.json_with(200);
    assert_eq!(strings(&listed, "name"), ["ci"]);
    s.post(&auditor, &path, json!({ "name": "x" }))
        .await
        .error(403, "forbidden");
    s.delete(
        &auditor,
        &format!("{path}/{}", listed[0]["id"].as_str().unwrap()),
    )
    .await
    .error(403, "forbidden");
    s.get(&member, &path).await.error(403, "forbidden");
    s.post(&member, &path, json!({ "name": "x" }))
        .await
        .error(403, "forbidden");
    assert_eq!(
        strings(&s.get(s.admin(), &path).await.json_with(200), "name"),
        ["ci"]
    );
    s.stop().await;
}

/// A key bound to one org does not reach other orgs (`/api/v1/me` and `/api/v1/orgs` hide them);
/// through `/api/v1/me/keys` it must not list or delete the keys the owner holds for another
/// org either: the deletion would not even appear in that org's audit trail.
#[tokio::test]
async fn a_key_bound_to_one_org_cannot_list_or_delete_keys_of_another_org() {
    let s = Server::start().await;
    s.create_org("b").await;
    let sso = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "sso@example.com", "kind": "sso" }),
        )
        .await;
    let sso_id = sso["id"].as_str().unwrap();
    s.post(
        s.admin(),
        "/api/v1/orgs/b/members",
        json!({ "email": "sso@example.com" }),
    )
    .await
    .expect(201);
    let in_default = s.create_key_for(s.admin(), "default", sso_id, "d").await;
    let in_b = s.create_key_for(s.admin(), "b", sso_id, "b").await;
    let default_key = in_default["key"].as_str().unwrap();

    let listed = s.get(default_key, "/api/v1/me/keys").await.json_with(200);
    assert_eq!(
        strings(&listed, "name"),
        ["d"],
        "keys of org b are not shown: {listed}"
    );
    s.delete(
        default_key,
        &format!("/api/v1/me/keys/{}", in_b["id"].as_str().unwrap()),
    )
    .await
    .error(404, "not_found");
    s.get(in_b["key"].as_str().unwrap(), "/api/v1/orgs/b")
        .await
        .expect(200);
    s.stop().await;
}
