//! Sessions: idle logout after 60 minutes of silence, absolute end after 24 hours even when
//! active, refresh-token rotation (a spent token presented again revokes the session), logout,
//! and the session lists and revocation of users and admins.

use serde_json::json;

use crate::support::*;

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_after_60_minutes_of_silence() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;
    let before = s.now_ms();
    let (active, reply) = s.browser_login("ana@example.com", PASSWORD).await;
    let after = s.now_ms();

    // Browser cookies: the sid is the access token and lives as long as the session.
    let sid = reply.cookie("sid").expect("a sid cookie");
    assert_eq!(sid.value, active.access);
    assert_eq!(sid.attribute("Path"), Some("/"));
    assert!(sid.has("HttpOnly") && sid.has("SameSite=Lax"), "{sid:?}");
    assert!(!sid.has("Secure"), "no Secure over plain http: {sid:?}");
    let max_age: i64 = sid.attribute("Max-Age").unwrap().parse().unwrap();
    assert!((86_300..=86_400).contains(&max_age), "{sid:?}");
    let refresh = reply
        .cookie("refresh_token")
        .expect("a refresh_token cookie");
    assert_eq!(refresh.value, active.refresh);
    assert_eq!(refresh.attribute("Path"), Some("/refreshtoken"));
    assert!(refresh.has("HttpOnly"), "{refresh:?}");
    let expire_at = active.body["expireAt"].as_i64().unwrap() * 1000;
    assert!(
        expire_at > before + 24 * HOUR_MS - 2_000 && expire_at <= after + 24 * HOUR_MS,
        "a browser token lives as long as its session: {}",
        active.body
    );

    // A second session, never used again.
    let (silent, _) = s.browser_login("ana@example.com", PASSWORD).await;

    // A request every 50 minutes keeps the first alive for more than three hours.
    for step in 1..=4 {
        s.advance(50 * MINUTE);
        let me = s.get_with_cookie(&active.access, "/api/v1/me").await;
        assert_eq!(me.status, 200, "after {} minutes: {}", step * 50, me.text);
        if step == 2 {
            // 100 minutes without a request.
            let msg = s
                .get_with_cookie(&silent.access, "/api/v1/me")
                .await
                .error(401, "unauthenticated");
            assert_contains(&msg, "inactivity");
            s.refresh(&silent.refresh)
                .await
                .error(401, "invalid_refresh_token");
        }
    }

    // 60 minutes and one second of silence end it, whatever the credential.
    let last = s.now_ms();
    s.advance_to(last + HOUR_MS + 1_000);
    let msg = s
        .get_with_cookie(&active.access, "/api/v1/me")
        .await
        .error(401, "unauthenticated");
    assert_contains(&msg, "inactivity");
    s.me(&active.access).await.expect(401);
    s.get(&active.access, "/userinfo").await.expect(401);
    s.refresh(&active.refresh)
        .await
        .error(401, "invalid_refresh_token");
    // A browser is sent to the login page, and its stale cookie cleared.
    let page = s
        .send(
            s.request(reqwest::Method::GET, "/api/v1/me")
                .header("cookie", format!("sid={}", active.access))
                .header("accept", "text/html"),
        )
        .await;
    page.expect(302);
    assert_eq!(page.location(), "/web-login?redirect=/api/v1/me");
    let cleared = page.cookie("sid").expect("the sid cookie cleared");
    assert!(cleared.value.is_empty() && cleared.attribute("Max-Age") == Some("0"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_after_24_hours_even_when_active() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;
    let (tokens, _) = s.browser_login("ana@example.com", PASSWORD).await;
    let sessions = s
        .get(&tokens.access, "/api/v1/me/sessions")
        .await
        .json_with(200);
    let this = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == tokens.sid.as_str())
        .unwrap_or_else(|| panic!("the session in {sessions}"))
        .clone();
    assert_eq!(this["current"], true);
    let created = millis(&this["createdAt"]);
    let ends = millis(&this["expiresAt"]);
    assert_eq!(ends - created, 24 * HOUR_MS, "{this}");

    // Active every 30 minutes, for 23.5 hours; a refresh on the way.
    let mut refresh = tokens.refresh.clone();
    for step in 1..=47 {
        s.advance(30 * MINUTE);
        let me = s.get_with_cookie(&tokens.access, "/api/v1/me").await;
        assert_eq!(me.status, 200, "after {} min: {}", step * 30, me.text);
        if step == 46 {
            // Activity is written to the store in batches (every 100 ms here), and a refresh
            // reads it there: let the batch of this request land first, as it would long
            // before a real half hour passed.
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            let pair = s.refresh(&refresh).await.json_with(200);
            refresh = pair["refreshToken"].as_str().unwrap().to_owned();
            // An API token never outlives its session.
            assert!(pair["expireAt"].as_i64().unwrap() * 1000 <= ends, "{pair}");
        }
    }
    // Two seconds before the end: alive.
    s.advance_to_before(ends - 2_000);
    s.get_with_cookie(&tokens.access, "/api/v1/me")
        .await
        .expect(200);
    // One second after the end: over, for the cookie and for the refresh token.
    s.advance_to(ends + 1_000);
    s.get_with_cookie(&tokens.access, "/api/v1/me")
        .await
        .error(401, "unauthenticated");
    s.refresh(&refresh)
        .await
        .error(401, "invalid_refresh_token");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_session() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;
    let first = s.login_ok("ana@example.com", PASSWORD).await;

    let second = s.refresh(&first.refresh).await.json_with(200);
    let (a2, r2) = (
        second["accessToken"].as_str().unwrap().to_owned(),
        second["refreshToken"].as_str().unwrap().to_owned(),
    );
    assert_ne!(r2, first.refresh);
    assert_ne!(a2, first.access);
    assert_eq!(jwt_part(&a2, 1)["sid"], first.sid.as_str(), "same session");
    s.me(&a2).await.expect(200);

    // The grant form of /oauth/token rotates too.
    let third = s
        .token(json!({ "grantType": "refresh_token", "refreshToken": r2 }))
        .await
        .json_with(200);
    let (a3, r3) = (
        third["accessToken"].as_str().unwrap().to_owned(),
        third["refreshToken"].as_str().unwrap().to_owned(),
    );
    s.me(&a3).await.expect(200);
    s.refresh("pcr_not-a-token-of-ours")
        .await
        .error(401, "invalid_refresh_token");
    s.me(&a3).await.expect(200);

    // The first refresh token, spent, presented again: refused, and the session is over.
    s.refresh(&first.refresh)
        .await
        .error(401, "invalid_refresh_token");
    s.me(&a3).await.expect(401);
    s.me(&a2).await.expect(401);
    s.me(&first.access).await.expect(401);
    s.refresh(&r3).await.error(401, "invalid_refresh_token");
    // Another session of the same user is not affected.
    let other = s.login_ok("ana@example.com", PASSWORD).await;
    s.me(&other.access).await.expect(200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_session_and_clears_the_cookies() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;

    let api = s.login_ok("ana@example.com", PASSWORD).await;
    let out = s
        .call(reqwest::Method::POST, "/logout", Some(&api.access), None)
        .await;
    out.expect(204);
    for name in ["sid", "refresh_token"] {
        let c = out
            .cookie(name)
            .unwrap_or_else(|| panic!("{name} cleared: {:?}", out.headers));
        assert!(c.value.is_empty(), "{c:?}");
        assert_eq!(c.attribute("Max-Age"), Some("0"), "{c:?}");
    }
    s.me(&api.access).await.error(401, "unauthenticated");
    s.refresh(&api.refresh)
        .await
        .error(401, "invalid_refresh_token");

    // A browser: GET /logout with the cookie, then a redirect on this site.
    let (browser, _) = s.browser_login("ana@example.com", PASSWORD).await;
    s.get_with_cookie(&browser.access, "/api/v1/me")
        .await
        .expect(200);
    let out = s
        .send(
            s.request(reqwest::Method::GET, "/logout?redirect=/projects")
                .header("cookie", format!("sid={}", browser.access)),
        )
        .await;
    out.expect(302);
    assert_eq!(out.location(), "/projects");
    assert_eq!(out.cookie("sid").map(|c| c.value), Some(String::new()));
    s.get_with_cookie(&browser.access, "/api/v1/me")
        .await
        .expect(401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_admins_list_and_revoke_sessions() {
    let s = Server::start().await;
    let id = s.active_user("ana@example.com").await;
    let sessions_path = format!("/api/v1/orgs/default/users/{id}/sessions");
    let t1 = s.login_ok("ana@example.com", PASSWORD).await;
    let t2 = s.login_ok("ana@example.com", PASSWORD).await;

    let listed = s.get(ADMIN_KEY, &sessions_path).await.json_with(200);
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![t1.sid.as_str(), t2.sid.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "{listed}");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["stage"] == "active"),
        "{listed}"
    );
    // A member may not list someone's sessions.
    s.get(&t1.access, &sessions_path).await.expect(403);

    // The admin revokes one: refused on its next request, the other one lives.
    s.delete(ADMIN_KEY, &format!("{sessions_path}/{}", t1.sid))
        .await
        .expect(204);
    s.me(&t1.access).await.error(401, "unauthenticated");
    s.refresh(&t1.refresh)
        .await
        .error(401, "invalid_refresh_token");
    s.me(&t2.access).await.expect(200);
    s.delete(ADMIN_KEY, &format!("{sessions_path}/{}", t1.sid))
        .await
        .expect(404);
    let listed = s.get(ADMIN_KEY, &sessions_path).await.json_with(200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // The user sees their own sessions and ends one of them.
    let t3 = s.login_ok("ana@example.com", PASSWORD).await;
    let mine = s
        .get(&t2.access, "/api/v1/me/sessions")
        .await
        .json_with(200);
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter()
            .any(|x| x["id"] == t2.sid.as_str() && x["current"] == true)
    );
    assert!(
        mine.iter()
            .any(|x| x["id"] == t3.sid.as_str() && x["current"] == false)
    );
    s.delete(&t2.access, &format!("/api/v1/me/sessions/{}", t3.sid))
        .await
        .expect(204);
    s.me(&t3.access).await.expect(401);
    s.me(&t2.access).await.expect(200);

    // The admin ends all of them.
    let t4 = s.login_ok("ana@example.com", PASSWORD).await;
    let revoked = s.delete(ADMIN_KEY, &sessions_path).await.json_with(200);
    assert_eq!(revoked["revoked"], 2, "{revoked}");
    s.me(&t2.access).await.expect(401);
    s.me(&t4.access).await.expect(401);
    assert_eq!(
        s.get(ADMIN_KEY, &sessions_path).await.json_with(200),
        json!([])
    );
    let audit = s.audit("session.revoke").await;
    assert!(audit.len() >= 3, "{audit:?}");
    s.stop().await;
}

/// A refresh body that is sent must be good, and a bad one gets the JSON error every endpoint
/// answers with (the token may also come as the cookie, with no body at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_refresh_body_is_a_clear_json_error() {
    let s = Server::start().await;
    let send = |content_type: &'static str, body: &'static str| {
        s.send(
            s.request(reqwest::Method::POST, "/refreshtoken")
                .header("content-type", content_type)
                .body(body),
        )
    };
    for body in [
        "",
        "null",
        "[]",
        "{\"refreshToken\": 5}",
        "{\"unknown\": 1}",
    ] {
        let message = send("application/json", body)
            .await
            .error(400, "bad_request");
        assert!(!message.contains("Failed to"), "{body:?}: {message}");
    }
    send("text/plain", "x")
        .await
        .error(415, "unsupported_media_type");
    // Neither a body nor the cookie: nothing to refresh.
    let reply = s
        .send(s.request(reqwest::Method::POST, "/refreshtoken"))
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    s.stop().await;
}
