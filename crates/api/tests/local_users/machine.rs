//! Machine (and SSO) users have no password here: they cannot log in with one, nor through the
//! login page; a machine user's API key works.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_users_use_api_keys_only() {
    let s = Server::start().await;
    let machine = s
        .post(
            ADMIN_KEY,
            "/api/v1/orgs/default/users",
            json!({ "email": "ci@example.com", "kind": "machine" }),
        )
        .await
        .json_with(201);
    assert!(
        machine["temporaryPassword"].is_null(),
        "no password for a machine user: {machine}"
    );
    let id = machine["id"].as_str().unwrap();
    s.post(
        ADMIN_KEY,
        "/api/v1/orgs/default/users",
        json!({ "email": "sso@example.com", "kind": "sso" }),
    )
    .await
    .expect(201);
    // Nor can an admin give it one.
    s.post(
        ADMIN_KEY,
        &format!("/api/v1/orgs/default/users/{id}/temporary-password"),
        json!({}),
    )
    .await
    .error(409, "conflict");
    s.post(
        ADMIN_KEY,
        "/api/v1/orgs/default/users",
        json!({ "email": "ci2@example.com", "kind": "machine", "sendInvite": true }),
    )
    .await
    .error(422, "invalid");

    // The password grant: the answer of an unknown account, whatever the password.
    let unknown = s
        .login("nobody@example.com", "some password")
        .await
        .json_with(401);
    assert_eq!(unknown["error"]["code"], "invalid_credentials");
    for (email, password) in [
        ("ci@example.com", "some password"),
        ("ci@example.com", ""),
        ("sso@example.com", "some password"),
    ] {
        let reply = s.login(email, password).await;
        assert_eq!(reply.json_with(401), unknown, "{email} / {password:?}");
    }
    // The login page neither.
    let page = s.web_login("ci@example.com", "some password", "/").await;
    page.expect(401);
    assert!(page.cookie("sid").is_none(), "{:?}", page.headers);
    assert_contains(&page.text, "invalid email or password");
    // Nor a reset link.
    s.post_anon(
        "/api/v1/password-reset",
        json!({ "email": "ci@example.com" }),
    )
    .await
    .expect(202);

    // An API key works.
    let key = s
        .post(
            ADMIN_KEY,
            &format!("/api/v1/orgs/default/users/{id}/keys"),
            json!({ "name": "ci" }),
        )
        .await
        .json_with(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = s.me(&key).await.json_with(200);
    assert_eq!(me["email"], "ci@example.com");
    assert_eq!(me["kind"], "machine");
    let info = s.get(&key, "/userinfo").await.json_with(200);
    assert_eq!(info["kind"], "machine");
    assert!(info["stage"].is_null(), "{info}");
    let me = s
        .send(
            s.request(reqwest::Method::GET, "/api/v1/me")
                .header("x-api-key", &key),
        )
        .await
        .json_with(200);
    assert_eq!(me["email"], "ci@example.com");

    // The reset request for the machine user mailed nothing: once a local user's reset mail
    // (asked for later) is in the log transport's outbox, it is the only message there.
    s.create_user("ana@example.com").await;
    s.reset_token("ana@example.com").await;
    let outbox = s.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_contains(&outbox[0].1, "To: ana@example.com");
    s.stop().await;
}

/// An API key stops working at its expiry by the server's clock (the one sessions and tokens
/// follow), not the machine's: here the server's clock is moved, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_expires_by_the_servers_clock() {
    let s = Server::start().await;
    let machine = s
        .post(
            ADMIN_KEY,
            "/api/v1/orgs/default/users",
            json!({ "email": "bot@example.com", "kind": "machine" }),
        )
        .await
        .json_with(201);
    let id = machine["id"].as_str().unwrap();
    // Whole seconds, as the API takes them.
    let expiry = (s.now_ms() / 1000 + 3600) * 1000;
    let until = rfc3339(expiry);
    let key = s
        .post(
            ADMIN_KEY,
            &format!("/api/v1/orgs/default/users/{id}/keys"),
            json!({ "name": "hourly", "expiresAt": until }),
        )
        .await
        .json_with(201);
    let key = key["key"].as_str().unwrap().to_owned();
    assert_eq!(s.me(&key).await.json_with(200)["id"], id);
    s.advance_to_before(expiry - 1000);
    assert_eq!(s.me(&key).await.json_with(200)["id"], id);
    s.advance_to(expiry);
    let refused = s.me(&key).await.json_with(401);
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{refused}"
    );
}

/// `at` (milliseconds since the epoch) in RFC 3339, seconds precision.
fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at / 1000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
