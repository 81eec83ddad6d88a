//! A per-address limit on login attempts slows password spraying across accounts.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_login_attempts_from_one_address_get_429() {
    let s = Server::start_with(Options {
        logins_per_minute: 3,
        ..Options::default()
    })
    .await;
    let ana = s.create_user("ana@example.com").await;

    // Three attempts, on three accounts: answered.
    for email in ["ana@example.com", "bob@example.com", "carol@example.com"] {
        s.login(email, "spraying password")
            .await
            .error(401, "invalid_credentials");
    }
    // The fourth, even with the right password: 429 with Retry-After.
    let reply = s.login("ana@example.com", &ana.temporary).await;
    let msg = reply.error(429, "too_many_requests");
    assert_contains(&msg, "too many");
    let retry: u64 = reply
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // The login page's form is limited with the same budget.
    let page = s.web_login("ana@example.com", &ana.temporary, "/").await;
    page.expect(429);
    assert!(page.header("retry-after").is_some(), "{:?}", page.headers);
    assert!(page.cookie("sid").is_none());
    s.stop().await;
}
