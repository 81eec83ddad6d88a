//! An org that requires MFA steers a local user without it into enrollment at the next login
//! and blocks everything else until the enrollment is confirmed, in the API and in the browser.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_required_steers_into_enrollment_and_blocks_everything_else() {
    let s = Server::start().await;
    let id = s.active_user("ana@example.com").await;
    let settings = s.org_settings(json!({ "mfaRequired": true })).await;
    assert_eq!(settings["mfaRequired"], true);

    let tokens = s.login_ok("ana@example.com", PASSWORD).await;
    assert_eq!(tokens.stage(), "mfa_enrollment", "{}", tokens.body);
    let msg = s
        .me(&tokens.access)
        .await
        .error(403, "mfa_enrollment_required");
    assert_contains(&msg, "MFA");
    s.get(&tokens.access, "/api/v1/orgs")
        .await
        .error(403, "mfa_enrollment_required");
    s.get(&tokens.access, "/api/v1/me/sessions")
        .await
        .error(403, "mfa_enrollment_required");
    // No way around it with an API key made from this session.
    s.post(
        &tokens.access,
        "/api/v1/me/keys",
        json!({ "name": "bypass" }),
    )
    .await
    .error(403, "mfa_enrollment_required");
    // The session refreshes, but stays in its stage.
    let refreshed = s.refresh(&tokens.refresh).await.json_with(200);
    assert_eq!(refreshed["stage"], "mfa_enrollment");
    let access = refreshed["accessToken"].as_str().unwrap().to_owned();
    s.me(&access).await.error(403, "mfa_enrollment_required");
    assert_eq!(
        s.get(&access, "/userinfo").await.json_with(200)["stage"],
        "mfa_enrollment"
    );

    // The enrollment endpoints are open to it; a wrong code leaves the session blocked.
    let begun = s
        .post(&access, "/api/v1/me/mfa/totp", json!({}))
        .await
        .json_with(201);
    let secret = begun["secret"].as_str().unwrap().to_owned();
    s.post(
        &access,
        "/api/v1/me/mfa/totp/confirm",
        json!({ "code": other_code(&s.totp(&secret)) }),
    )
    .await
    .error(401, "invalid_code");
    s.me(&access).await.error(403, "mfa_enrollment_required");
    let confirmed = s
        .post(
            &access,
            "/api/v1/me/mfa/totp/confirm",
            json!({ "code": s.totp(&secret) }),
        )
        .await
        .json_with(200);
    assert_eq!(confirmed["recoveryCodes"].as_array().unwrap().len(), 10);
    // The same token now works.
    assert_eq!(
        s.me(&access).await.json_with(200)["email"],
        "ana@example.com"
    );
    assert_eq!(
        s.get(&access, "/userinfo").await.json_with(200)["stage"],
        "active"
    );
    // The next login asks for the second factor.
    let body = s.login("ana@example.com", PASSWORD).await.json_with(401);
    assert_eq!(body["error"]["code"], "mfa_required");

    // An admin removes ana's authenticator: the browser login steers her into enrollment again.
    s.delete(ADMIN_KEY, &format!("/api/v1/orgs/default/users/{id}/mfa"))
        .await
        .expect(204);
    let reply = s
        .web_login("ana@example.com", PASSWORD, "/projects/web")
        .await;
    reply.expect(303);
    let location = reply.location().to_owned();
    assert!(
        location.starts_with("/web-login/mfa?redirect="),
        "{location}"
    );
    assert_contains(&location, "projects");
    let sid = reply
        .cookie("sid")
        .unwrap_or_else(|| panic!("a sid cookie: {:?}", reply.headers))
        .value;
    s.get_with_cookie(&sid, "/api/v1/me")
        .await
        .error(403, "mfa_enrollment_required");

    // The enrollment page shows the key; confirming with its code lets the session through.
    let page = s
        .send(
            s.request(reqwest::Method::GET, &location)
                .header("cookie", format!("sid={sid}")),
        )
        .await;
    page.expect(200);
    assert_contains(&page.text, "data:image/svg+xml;base64,");
    let start = page.text.find("Key: <code>").expect("the key on the page") + 11;
    let key = &page.text[start..start + page.text[start..].find('<').unwrap()];
    let csrf = hidden(&page.text, "csrf").unwrap();
    let csrf_cookie = page
        .cookie("pcl_csrf")
        .map(|c| c.value)
        .unwrap_or_else(|| csrf.clone());
    s.advance(std::time::Duration::from_secs(30));
    let done = s
        .post_form(
            "/web-login/mfa",
            &format!("sid={sid}; pcl_csrf={csrf_cookie}"),
            &[
                ("code", &s.totp(key)),
                ("redirect", "/projects/web"),
                ("csrf", &csrf),
            ],
        )
        .await;
    done.expect(200);
    assert_eq!(done.text.matches("<li><code>").count(), 10, "{}", done.text);
    s.get_with_cookie(&sid, "/api/v1/me").await.expect(200);
    s.stop().await;
}
