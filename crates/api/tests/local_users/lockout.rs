//! Lockout: five failed logins within 15 minutes lock the account until the window passes; a
//! locked account gets exactly the answer of a wrong password; an admin can unlock; the email
//! is matched without regard to case.

use serde_json::{Value, json};

use crate::support::*;

const WINDOW_MS: i64 = 15 * 60 * 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_lock_until_the_window_passes() {
    let s = Server::start().await;
    let id = s.active_user("ana@example.com").await;

    // The answer to a wrong password, and to an unknown email: the same.
    let wrong = s.login("ana@example.com", "wrong password 1").await;
    let wrong_body = wrong.json_with(401);
    assert_eq!(wrong_body["error"]["code"], "invalid_credentials");
    let unknown = s.login("nobody@example.com", "wrong password").await;
    assert_eq!(unknown.json_with(401), wrong_body);

    // Four more failures, some spelled in capitals: they count for the same account.
    for (n, email) in [
        "ANA@EXAMPLE.COM",
        "ana@example.com",
        "Ana@Example.Com",
        "ANA@example.com",
    ]
    .into_iter()
    .enumerate()
    {
        let reply = s.login(email, &format!("wrong password {}", n + 2)).await;
        assert_eq!(reply.json_with(401), wrong_body, "failure {}", n + 2);
    }
    let locked_at_latest = s.now_ms();

    // The sixth attempt, with the right password: the same answer as a wrong one.
    let sixth = s.login("ana@example.com", PASSWORD).await;
    assert_eq!(sixth.status, 401);
    assert_eq!(
        sixth.json(),
        wrong_body,
        "a locked account answers like a bad password"
    );
    assert!(sixth.header("retry-after").is_none());
    // In the browser too.
    let web = s.web_login("ana@example.com", PASSWORD, "/").await;
    web.expect(401);
    assert!(
        web.cookie("sid").is_none(),
        "no session for a locked account"
    );
    assert_contains(&web.text, "invalid email or password");

    let locks = s.audit("user.lock").await;
    assert!(
        locks
            .iter()
            .any(|a| a["target"].as_str().unwrap_or("").contains("ana")),
        "a user.lock record: {locks:?}"
    );
    let logins = s.audit("login").await;
    assert!(
        logins
            .iter()
            .any(|a| a["outcome"] == "denied" && a["actorId"] == id.as_str()),
        "a denied login of the locked account: {logins:?}"
    );
    let (of_ana, others): (Vec<&Value>, Vec<&Value>) =
        logins.iter().partition(|a| a["actorId"] == id.as_str());
    assert!(
        of_ana
            .iter()
            .all(|a| a["target"] == "user:default/ana" && a["org"] == "default"),
        "{logins:?}"
    );
    // The attempt for an address without an account is in the platform's trail, without the
    // address (the answer and its timing are those of a wrong password).
    assert_eq!(others.len(), 1, "{logins:?}");
    assert_eq!(others[0]["target"], "email:(no local account)");
    assert_eq!(others[0]["outcome"], "failure");
    assert_eq!(others[0]["details"]["reason"], "no local account");
    assert!(!others[0].to_string().contains("nobody"), "{logins:?}");
    assert!(others[0]["org"].is_null() && others[0]["actorId"].is_null());
    let failures = logins
        .iter()
        .filter(|a| a["outcome"] == "failure" && a["actorId"] == id.as_str())
        .count();
    assert_eq!(failures, 5, "{logins:?}");

    // Just before the window ends: still locked.
    s.advance_to_before(locked_at_latest + WINDOW_MS - 60_000);
    assert_eq!(
        s.login("ana@example.com", PASSWORD).await.json_with(401),
        wrong_body
    );
    // 15 min + 1 s after the lock: the right password works again.
    s.advance_to(locked_at_latest + WINDOW_MS + 1_000);
    let tokens = s.login_ok("ana@example.com", PASSWORD).await;
    s.me(&tokens.access).await.expect(200);
    assert!(
        s.audit("login")
            .await
            .iter()
            .any(|a| a["outcome"] == "success" && a["actorId"] == id.as_str()),
        "a successful login is audited"
    );

    // No password, right or wrong, is in the audit trail.
    let trail = s
        .get(ADMIN_KEY, "/api/v1/audit?limit=500")
        .await
        .json_with(200)
        .to_string();
    for secret in [PASSWORD, "wrong password 1", "wrong password 5"] {
        assert!(!trail.contains(secret), "{secret:?} is in the audit trail");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_unlocks_at_once() {
    let s = Server::start().await;
    let id = s.active_user("bob@example.com").await;
    let unlock = format!("/api/v1/orgs/default/users/{id}/unlock");
    assert_eq!(
        s.post(ADMIN_KEY, &unlock, json!({})).await.json_with(200)["wasLocked"],
        false
    );
    for n in 0..5 {
        s.login("bob@example.com", &format!("wrong {n}"))
            .await
            .error(401, "invalid_credentials");
    }
    s.login("bob@example.com", PASSWORD)
        .await
        .error(401, "invalid_credentials");
    let body: Value = s.post(ADMIN_KEY, &unlock, json!({})).await.json_with(200);
    assert_eq!(body["wasLocked"], true);
    let tokens = s.login_ok("bob@example.com", PASSWORD).await;
    s.me(&tokens.access).await.expect(200);
    // A member may not unlock anyone.
    s.post(&tokens.access, &unlock, json!({})).await.expect(403);

    let unlocks = s.audit("user.unlock").await;
    assert!(
        unlocks.iter().any(
            |a| a["target"].as_str().unwrap_or("").contains("bob") && a["actor"] == ADMIN_EMAIL
        ),
        "{unlocks:?}"
    );
    s.stop().await;
}

/// Changing the password checks the current one: it is refused like a sign-in while the
/// account is locked (a stolen session must not be a way to guess on), and each try counts
/// against the address's sign-in budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_takes_no_guess_while_locked_and_is_rate_limited() {
    let s = Server::start_with(Options {
        logins_per_minute: 12,
        ..Options::default()
    })
    .await;
    s.active_user("ana@example.com").await;
    let tokens = s.login_ok("ana@example.com", PASSWORD).await;
    let change = |current: &'static str| {
        s.post(
            &tokens.access,
            "/api/v1/me/password",
            json!({ "currentPassword": current, "newPassword": "an entirely new passphrase" }),
        )
    };
    // Five wrong guesses lock the account, as five wrong sign-ins do.
    for _ in 0..5 {
        change("not the password")
            .await
            .error(401, "invalid_credentials");
    }
    // The right password now gets the answer of a wrong one, and changes nothing.
    change(PASSWORD).await.error(401, "invalid_credentials");
    s.login("ana@example.com", "an entirely new passphrase")
        .await
        .expect(401);
    // The address's budget (12 a minute, partly spent above) runs out.
    let mut limited = false;
    for _ in 0..12 {
        if change("not the password").await.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "password changes are counted with sign-ins from the address"
    );
    s.stop().await;
}
