//! Temporary passwords: shown once at creation, force a password change before anything else
//! works, stop working once changed, and expire after the org's limit (72 h).

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_password_forces_a_change_before_anything_else() {
    let s = Server::start().await;
    let before = s.now_ms();
    let ana = s.create_user("ana@example.com").await;
    let after = s.now_ms();
    assert!(ana.temporary.len() >= 16, "{}", ana.temporary);
    assert_eq!(ana.body["email"], "ana@example.com");
    assert_eq!(ana.body["invited"], false);
    let expires = millis(&ana.body["temporaryPasswordExpiresAt"]);
    assert!(
        expires >= before + 72 * 3_600_000 && expires <= after + 72 * 3_600_000,
        "temporaryPasswordExpiresAt {expires} is not 72 h after creation ({before}..{after})"
    );

    let tokens = s.login_ok("ana@example.com", &ana.temporary).await;
    assert_eq!(tokens.stage(), "password_change", "{}", tokens.body);
    assert_eq!(tokens.body["tokenType"], "Bearer");

    // Nothing but the password change (and the endpoints of that step) works.
    let msg = s
        .me(&tokens.access)
        .await
        .error(403, "password_change_required");
    assert_contains(&msg, "password");
    s.get(&tokens.access, "/api/v1/orgs")
        .await
        .error(403, "password_change_required");
    s.post(
        &tokens.access,
        "/api/v1/me/keys",
        json!({ "name": "sneaky" }),
    )
    .await
    .error(403, "password_change_required");
    let info = s.get(&tokens.access, "/userinfo").await.json_with(200);
    assert_eq!(info["stage"], "password_change");
    assert_eq!(info["email"], "ana@example.com");
    assert_eq!(info["kind"], "local");

    // The rules are checked and named.
    let msg = s
        .post(
            &tokens.access,
            "/api/v1/me/password",
            json!({ "currentPassword": ana.temporary, "newPassword": "short" }),
        )
        .await
        .error(422, "invalid");
    assert_contains(&msg, "at least 8");
    let msg = s
        .post(
            &tokens.access,
            "/api/v1/me/password",
            json!({ "currentPassword": ana.temporary, "newPassword": "x".repeat(129) }),
        )
        .await
        .error(422, "invalid");
    assert_contains(&msg, "at most 128");
    s.post(
        &tokens.access,
        "/api/v1/me/password",
        json!({ "currentPassword": "not-the-temporary-one", "newPassword": PASSWORD }),
    )
    .await
    .error(401, "invalid_credentials");
    s.me(&tokens.access)
        .await
        .error(403, "password_change_required");

    s.post(
        &tokens.access,
        "/api/v1/me/password",
        json!({ "currentPassword": ana.temporary, "newPassword": PASSWORD }),
    )
    .await
    .expect(204);
    // The same token now works: the session moved on.
    let me = s.me(&tokens.access).await.json_with(200);
    assert_eq!(me["email"], "ana@example.com");
    assert_eq!(
        s.get(&tokens.access, "/userinfo").await.json_with(200)["stage"],
        "active"
    );

    // The temporary password is gone; the new one opens an active session.
    s.login("ana@example.com", &ana.temporary)
        .await
        .error(401, "invalid_credentials");
    let fresh = s.login_ok("ana@example.com", PASSWORD).await;
    assert_eq!(fresh.stage(), "active");
    s.me(&fresh.access).await.expect(200);

    let changes = s.audit("password.change").await;
    assert!(
        changes
            .iter()
            .any(|a| a["target"].as_str().unwrap_or("").contains("ana")),
        "{changes:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_password_expires_after_72_hours() {
    let s = Server::start().await;
    let before = s.now_ms();
    let bob = s.create_user("bob@example.com").await;
    let carol = s.create_user("carol@example.com").await;
    let after = s.now_ms();
    const TTL: i64 = 72 * 3_600_000;

    // 72 h - 1 s after the earliest instant either was created: both still work.
    s.advance_to_before(before + TTL - 1_000);
    let carol_tokens = s.login_ok("carol@example.com", &carol.temporary).await;
    assert_eq!(carol_tokens.stage(), "password_change");

    // 72 h + 1 s after the latest instant either was created: refused, with its own code
    // (the password was right, so saying why is no enumeration).
    s.advance_to(after + TTL + 1_000);
    let msg = s
        .login("bob@example.com", &bob.temporary)
        .await
        .error(401, "temporary_password_expired");
    assert_contains(&msg, "expired");
    // A wrong password still gets the plain answer.
    s.login("bob@example.com", "not-bobs-password")
        .await
        .error(401, "invalid_credentials");

    // An admin issues a new one; it works (and forces the change again).
    let issued = s
        .post(
            ADMIN_KEY,
            &format!("/api/v1/orgs/default/users/{}/temporary-password", bob.id),
            json!({}),
        )
        .await
        .json_with(200);
    assert_eq!(issued["emailed"], false);
    let again = issued["temporaryPassword"].as_str().unwrap();
    assert_ne!(again, bob.temporary);
    let tokens = s.login_ok("bob@example.com", again).await;
    assert_eq!(tokens.stage(), "password_change");

    // Both temporary passwords are in the audit trail (never the passwords themselves): the
    // one set at creation (in its `user.create` record) and the one the admin issued later.
    let set = s.audit("password.temporary_set").await;
    let trail = s
        .get(ADMIN_KEY, "/api/v1/audit?limit=500")
        .await
        .json_with(200)
        .to_string();
    for secret in [bob.temporary.as_str(), carol.temporary.as_str(), again] {
        assert!(
            !trail.contains(secret),
            "a temporary password in the audit trail"
        );
    }
    assert!(
        set.iter()
            .any(|a| a["target"] == "user:default/bob" && a["actor"] == ADMIN_EMAIL),
        "the admin's new temporary password for bob: {set:?}"
    );
    // Creating a local user sets its temporary password in the same transaction, so the one
    // `user.create` record says so.
    let created = s.audit("user.create").await;
    assert!(
        created
            .iter()
            .any(|a| a["target"] == "user:default/carol"
                && a["details"]["temporaryPassword"] == true),
        "creating a local user gives them a temporary password, which is audited: {created:?}"
    );
    s.stop().await;
}
