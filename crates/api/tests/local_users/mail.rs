//! Mail through a real SMTP server (Python `aiosmtpd`): invitations carry a temporary password
//! that works; reset links are mailed only for known addresses, work once, revoke the user's
//! sessions, and expire after 72 hours.

use serde_json::{Value, json};

use crate::support::*;

const TTL_MS: i64 = 72 * 3_600_000;

/// The SMTP server and a Portcullis server mailing through it; none (the test is skipped)
/// where aiosmtpd is not installed, outside CI.
async fn start() -> Option<(Smtp, Server)> {
    if !crate::python::python_has(&["aiosmtpd"], "pip install aiosmtpd") {
        return None;
    }
    let smtp = Smtp::start();
    let s = Server::start_with(Options {
        smtp_port: Some(smtp.port),
        ..Options::default()
    })
    .await;
    Some((smtp, s))
}

/// The text after `marker` in a mail body, up to the next whitespace.
#[track_caller]
fn after(mail: &Value, marker: &str) -> String {
    let body = mail["body"].as_str().unwrap();
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {body:?}"))
        + marker.len();
    body[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_mails_a_temporary_password_that_works() {
    let Some((smtp, s)) = start().await else {
        return;
    };
    let created = s
        .post(
            ADMIN_KEY,
            "/api/v1/orgs/default/users",
            json!({ "email": "ana@example.com", "sendInvite": true }),
        )
        .await
        .json_with(201);
    assert_eq!(created["invited"], true, "{created}");
    assert!(
        created.get("temporaryPassword").is_none_or(Value::is_null),
        "a mailed password is not in the answer: {created}"
    );
    assert!(created["temporaryPasswordExpiresAt"].is_string());

    let mails = smtp.wait_for("ana@example.com", 1).await;
    let mail = &mails[0];
    assert_contains(mail["headerTo"].as_str().unwrap(), "ana@example.com");
    assert_contains(mail["from"].as_str().unwrap(), "portcullis@localhost");
    let temporary = after(mail, "Temporary password: ");
    assert!(temporary.len() >= 16, "{mail}");
    assert_contains(
        mail["body"].as_str().unwrap(),
        &format!("{}/web-login", s.base),
    );
    let tokens = s.login_ok("ana@example.com", &temporary).await;
    assert_eq!(tokens.stage(), "password_change");

    // A new temporary password by mail from the admin endpoint replaces it.
    let id = created["id"].as_str().unwrap();
    let issued = s
        .post(
            ADMIN_KEY,
            &format!("/api/v1/orgs/default/users/{id}/temporary-password"),
            json!({ "sendEmail": true }),
        )
        .await
        .json_with(200);
    assert_eq!(issued["emailed"], true);
    assert!(issued.get("temporaryPassword").is_none(), "{issued}");
    let mails = smtp.wait_for("ana@example.com", 2).await;
    let second = after(&mails[1], "Temporary password: ");
    assert_ne!(second, temporary);
    // Issuing it ended the session opened with the first one.
    s.get(&tokens.access, "/userinfo").await.expect(401);
    s.login("ana@example.com", &temporary)
        .await
        .error(401, "invalid_credentials");
    assert_eq!(
        s.login_ok("ana@example.com", &second).await.stage(),
        "password_change"
    );
    assert_eq!(smtp.messages().len(), 2, "{:?}", smtp.messages());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_works_once_revokes_sessions_and_expires() {
    let Some((smtp, s)) = start().await else {
        return;
    };
    let bob = s.create_user("bob@example.com").await;
    s.create_user("carol@example.com").await;
    s.create_user("dave@example.com").await;
    // A session of bob (waiting for his password change, which a reset also settles).
    let session = s.login_ok("bob@example.com", &bob.temporary).await;
    s.get(&session.access, "/userinfo").await.expect(200);

    // Known and unknown addresses get the same answer.
    let known = s
        .post_anon(
            "/api/v1/password-reset",
            json!({ "email": "bob@example.com" }),
        )
        .await;
    known.expect(202);
    let unknown = s
        .post_anon(
            "/api/v1/password-reset",
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    unknown.expect(202);
    assert_eq!(known.text, unknown.text);
    let requested = s.now_ms();
    for email in ["carol@example.com", "dave@example.com"] {
        s.post_anon("/api/v1/password-reset", json!({ "email": email }))
            .await
            .expect(202);
    }
    let requested_last = s.now_ms();
    smtp.wait_for("carol@example.com", 1).await;
    smtp.wait_for("dave@example.com", 1).await;
    let bob_mail = smtp.wait_for("bob@example.com", 1).await.remove(0);
    // Mail goes out in order: the unknown address would have had its mail before carol's.
    assert!(smtp.messages_to("nobody@example.com").is_empty());
    assert_eq!(smtp.messages().len(), 3, "{:?}", smtp.messages());
    assert_contains(
        bob_mail["subject"].as_str().unwrap(),
        "Reset your Portcullis password",
    );
    let token = after(&bob_mail, &format!("{}/web-login/reset?token=", s.base));

    // A password against the rules does not spend the link.
    let msg = s
        .post_anon(
            "/api/v1/password-reset/confirm",
            json!({ "token": token, "newPassword": "short" }),
        )
        .await
        .error(422, "invalid");
    assert_contains(&msg, "at least 8");
    let new_password = "a brand new passphrase";
    s.post_anon(
        "/api/v1/password-reset/confirm",
        json!({ "token": token, "newPassword": new_password }),
    )
    .await
    .expect(204);
    // Every session of bob ended; the new password works, the old one not.
    s.get(&session.access, "/userinfo")
        .await
        .error(401, "unauthenticated");
    s.refresh(&session.refresh)
        .await
        .error(401, "invalid_refresh_token");
    s.login("bob@example.com", &bob.temporary)
        .await
        .error(401, "invalid_credentials");
    assert_eq!(
        s.login_ok("bob@example.com", new_password).await.stage(),
        "active"
    );
    // The link works once.
    s.post_anon(
        "/api/v1/password-reset/confirm",
        json!({ "token": token, "newPassword": "yet another passphrase" }),
    )
    .await
    .error(400, "bad_request");
    s.login_ok("bob@example.com", new_password).await;

    // 72 h - 1 s after the earliest request: dave's link still works.
    let carol_token = after(
        &smtp.messages_to("carol@example.com")[0],
        &format!("{}/web-login/reset?token=", s.base),
    );
    let dave_token = after(
        &smtp.messages_to("dave@example.com")[0],
        &format!("{}/web-login/reset?token=", s.base),
    );
    s.advance_to_before(requested + TTL_MS - 1_000);
    s.post_anon(
        "/api/v1/password-reset/confirm",
        json!({ "token": dave_token, "newPassword": new_password }),
    )
    .await
    .expect(204);
    assert_eq!(
        s.login_ok("dave@example.com", new_password).await.stage(),
        "active",
        "a reset replaces the temporary password"
    );
    // 72 h + 1 s after the latest: carol's does not.
    s.advance_to(requested_last + TTL_MS + 1_000);
    let msg = s
        .post_anon(
            "/api/v1/password-reset/confirm",
            json!({ "token": carol_token, "newPassword": new_password }),
        )
        .await
        .error(400, "bad_request");
    assert_contains(&msg, "expired");
    s.post_anon(
        "/api/v1/password-reset/confirm",
        json!({ "token": "not-a-token", "newPassword": new_password }),
    )
    .await
    .error(400, "bad_request");

    let requested = s.audit("password.reset_requested").await;
    assert_eq!(
        requested.len(),
        3,
        "bob, carol, dave (not nobody): {requested:?}"
    );
    let resets = s.audit("password.reset").await;
    let mut targets: Vec<&str> = resets
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        ["user:default/bob", "user:default/dave"],
        "{resets:?}"
    );
    let trail = s
        .get(ADMIN_KEY, "/api/v1/audit?limit=500")
        .await
        .json_with(200)
        .to_string();
    for secret in [token.as_str(), carol_token.as_str(), new_password] {
        assert!(!trail.contains(secret), "{secret:?} is in the audit trail");
    }
    s.stop().await;
}
