//! The HTML login: CSRF-protected forms, session cookies, the steps due after a password (TOTP,
//! a forced password change), and cookie-authenticated API calls that must come from this site.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_signs_in_with_cookies_and_csrf_protection() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;

    let page = s.login_page("?redirect=%2Fprojects").await;
    assert_contains(page.reply.header("content-type").unwrap(), "text/html");
    assert_eq!(page.reply.header("x-frame-options"), Some("DENY"));
    assert!(page.reply.header("content-security-policy").is_some());
    assert_contains(
        &page.reply.text,
        "<form method=\"post\" action=\"/web-login\"",
    );
    assert!(
        !page.reply.text.contains("<script"),
        "no script on the page"
    );
    assert_eq!(page.redirect, "/projects");
    assert_eq!(
        page.csrf, page.csrf_cookie,
        "the form carries the cookie's token"
    );
    let csrf_cookie = page.reply.cookie("pcl_csrf").unwrap();
    assert!(csrf_cookie.has("HttpOnly") && csrf_cookie.has("SameSite=Lax"));
    let cookie = format!("pcl_csrf={}", page.csrf_cookie);
    let other_token = "A".repeat(page.csrf.len());
    let login = |password: &'static str, csrf: Option<&str>| {
        let mut fields = vec![
            ("email", "ana@example.com".to_owned()),
            ("password", password.to_owned()),
            ("redirect", "/projects".to_owned()),
        ];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf.to_owned()));
        }
        fields
    };

    // CSRF: every one of these has the right password, and none signs in.
    for (what, reply) in [
        (
            "no csrf field",
            post_login(&s, &cookie, login(PASSWORD, None), None).await,
        ),
        (
            "no csrf cookie",
            post_login(&s, "", login(PASSWORD, Some(&page.csrf)), None).await,
        ),
        (
            "a csrf field that is not the cookie's",
            post_login(&s, &cookie, login(PASSWORD, Some(&other_token)), None).await,
        ),
        (
            "a foreign Origin",
            post_login(
                &s,
                &cookie,
                login(PASSWORD, Some(&page.csrf)),
                Some("http://evil.example"),
            )
            .await,
        ),
    ] {
        assert_eq!(reply.status, 403, "{what}: {}", reply.text);
        assert!(reply.cookie("sid").is_none(), "{what} signed in");
    }

    // A wrong password: the form again, with the error and the redirect kept.
    let reply = post_login(
        &s,
        &cookie,
        login("not the password", Some(&page.csrf)),
        None,
    )
    .await;
    reply.expect(401);
    assert_contains(&reply.text, "invalid email or password");
    assert_eq!(
        hidden(&reply.text, "redirect").as_deref(),
        Some("/projects")
    );
    assert!(reply.cookie("sid").is_none());

    // The right password (from this site): 303 to the page asked for, with the cookies.
    let reply = post_login(
        &s,
        &cookie,
        login(PASSWORD, Some(&page.csrf)),
        Some(&s.base),
    )
    .await;
    reply.expect(303);
    assert_eq!(reply.location(), "/projects");
    let sid = reply.cookie("sid").expect("a sid cookie");
    assert_eq!(sid.attribute("Path"), Some("/"));
    assert!(sid.has("HttpOnly") && sid.has("SameSite=Lax"), "{sid:?}");
    let refresh = reply
        .cookie("refresh_token")
        .expect("a refresh_token cookie");
    assert_eq!(refresh.attribute("Path"), Some("/refreshtoken"));
    assert!(refresh.has("HttpOnly"));

    // The cookie authenticates.
    let me = s
        .get_with_cookie(&sid.value, "/api/v1/me")
        .await
        .json_with(200);
    assert_eq!(me["email"], "ana@example.com");
    let info = s
        .get_with_cookie(&sid.value, "/userinfo")
        .await
        .json_with(200);
    assert_eq!(info["stage"], "active");

    // A change authenticated by the cookie alone must come from this site.
    let create_key = |origin: Option<&str>, fetch_site: Option<&str>| {
        let mut req = s
            .request(reqwest::Method::POST, "/api/v1/me/keys")
            .header("cookie", format!("sid={}", sid.value))
            .json(&json!({ "name": "laptop" }));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(f) = fetch_site {
            req = req.header("sec-fetch-site", f);
        }
        s.send(req)
    };
    create_key(Some("http://evil.example"), None)
        .await
        .error(403, "forbidden");
    create_key(None, None).await.error(403, "forbidden");
    create_key(None, Some("cross-site"))
        .await
        .error(403, "forbidden");
    create_key(Some(&format!("http://{}.evil.example", s.authority)), None)
        .await
        .error(403, "forbidden");
    let key = create_key(Some(&s.base), None).await.json_with(201);
    assert!(key["key"].as_str().unwrap().starts_with("pcl_"), "{key}");
    let keys = s
        .get_with_cookie(&sid.value, "/api/v1/me/keys")
        .await
        .json_with(200);
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "only one key made: {keys}"
    );

    // The refresh cookie works from this site only, and sets new cookies.
    let refresh_with = |origin: &str| {
        s.send(
            s.request(reqwest::Method::POST, "/refreshtoken")
                .header("cookie", format!("refresh_token={}", refresh.value))
                .header("origin", origin),
        )
    };
    refresh_with("http://evil.example")
        .await
        .error(403, "forbidden");
    let refreshed = refresh_with(&s.base).await;
    refreshed.expect(200);
    let new_sid = refreshed.cookie("sid").expect("a new sid cookie");
    assert_ne!(new_sid.value, sid.value);
    s.get_with_cookie(&new_sid.value, "/api/v1/me")
        .await
        .expect(200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_is_steered_through_a_forced_password_change() {
    let s = Server::start().await;
    let carol = s.create_user("carol@example.com").await;
    let reply = s
        .web_login("carol@example.com", &carol.temporary, "/projects")
        .await;
    reply.expect(303);
    assert_eq!(reply.location(), "/web-login/password?redirect=/projects");
    let sid = reply.cookie("sid").expect("a sid cookie").value;
    s.get_with_cookie(&sid, "/api/v1/me")
        .await
        .error(403, "password_change_required");

    let page = s
        .send(
            s.request(reqwest::Method::GET, reply.location())
                .header("cookie", format!("sid={sid}")),
        )
        .await;
    page.expect(200);
    let csrf = hidden(&page.text, "csrf").unwrap();
    assert_eq!(hidden(&page.text, "redirect").as_deref(), Some("/projects"));
    let cookies = format!("sid={sid}; pcl_csrf={csrf}");
    let differ = s
        .post_form(
            "/web-login/password",
            &cookies,
            &[
                ("current", &carol.temporary),
                ("new", PASSWORD),
                ("confirm", "something else entirely"),
                ("redirect", "/projects"),
                ("csrf", &csrf),
            ],
        )
        .await;
    differ.expect(422);
    assert_contains(&differ.text, "differ");
    let done = s
        .post_form(
            "/web-login/password",
            &cookies,
            &[
                ("current", &carol.temporary),
                ("new", PASSWORD),
                ("confirm", PASSWORD),
                ("redirect", "/projects"),
                ("csrf", &csrf),
            ],
        )
        .await;
    done.expect(303);
    assert_eq!(done.location(), "/projects");
    s.get_with_cookie(&sid, "/api/v1/me").await.expect(200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_login_asks_for_the_totp_code() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;
    let session = s.login_ok("ana@example.com", PASSWORD).await;
    let (secret, _) = s.enroll_totp(&session.access).await;
    s.advance(Duration::from_secs(30));

    let reply = s.web_login("ana@example.com", PASSWORD, "/projects").await;
    reply.expect(200);
    assert!(reply.cookie("sid").is_none(), "no session before the code");
    assert_contains(&reply.text, "action=\"/web-login/totp\"");
    let challenge = hidden(&reply.text, "challenge").expect("a challenge field");
    let csrf = hidden(&reply.text, "csrf").unwrap();
    let cookies = format!("pcl_csrf={csrf}");
    let code = s.totp(&secret);
    let submit = |code: String, csrf: String, cookies: String| {
        let (s, challenge) = (&s, challenge.clone());
        async move {
            s.post_form(
                "/web-login/totp",
                &cookies,
                &[
                    ("challenge", &challenge),
                    ("code", &code),
                    ("redirect", "/projects"),
                    ("csrf", &csrf),
                ],
            )
            .await
        }
    };
    submit(code.clone(), String::new(), cookies.clone())
        .await
        .expect(403);
    let wrong = submit(other_code(&code), csrf.clone(), cookies.clone()).await;
    wrong.expect(401);
    assert_contains(&wrong.text, "invalid or already used");
    assert!(wrong.cookie("sid").is_none());
    let done = submit(code, csrf, cookies).await;
    done.expect(303);
    assert_eq!(done.location(), "/projects");
    let sid = done.cookie("sid").expect("a sid cookie").value;
    s.get_with_cookie(&sid, "/api/v1/me").await.expect(200);
    s.stop().await;
}

/// Posts the sign-in form with these cookies, fields and `Origin`.
async fn post_login(
    s: &Server,
    cookies: &str,
    fields: Vec<(&str, String)>,
    origin: Option<&str>,
) -> Reply {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut req = s
        .request(reqwest::Method::POST, "/web-login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&pairs));
    if !cookies.is_empty() {
        req = req.header("cookie", cookies);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    s.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_https_site_a_plain_http_page_of_the_same_host_is_another_site() {
    // TLS ends in front of Portcullis (which listens on plain HTTP), as behind a load balancer.
    let s = Server::start_with(Options {
        public_url: Some("https://portal.test"),
        ..Options::default()
    })
    .await;
    s.active_user("ana@example.com").await;
    let reply = s.web_login("ana@example.com", PASSWORD, "/projects").await;
    reply.expect(303);
    let sid = reply.cookie("sid").expect("a sid cookie");
    assert!(sid.has("Secure"), "an https site's session cookie: {sid:?}");

    let create_key = |origin: String| {
        s.send(
            s.request(reqwest::Method::POST, "/api/v1/me/keys")
                .header("cookie", format!("sid={}", sid.value))
                .header("origin", origin)
                .json(&json!({ "name": "laptop" })),
        )
    };
    // A page of this host over plain http: whoever answers for the host on the network can
    // write it, so it may not act with the session.
    for origin in [
        format!("http://{}", s.authority),
        "http://portal.test".to_owned(),
    ] {
        let message = create_key(origin.clone()).await.error(403, "forbidden");
        assert_contains(&message, "cross-site");
    }
    // The same host over https, and the public URL itself, are this site.
    create_key(format!("https://{}", s.authority))
        .await
        .json_with(201);
    create_key("https://portal.test".to_owned())
        .await
        .json_with(201);
    let keys = s
        .get_with_cookie(&sid.value, "/api/v1/me/keys")
        .await
        .json_with(200);
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");

    // The sign-in form is refused from the plain http page as well.
    let page = s.login_page("").await;
    let fields = vec![
        ("email", "ana@example.com".to_owned()),
        ("password", PASSWORD.to_owned()),
        ("redirect", "/projects".to_owned()),
        ("csrf", page.csrf.clone()),
    ];
    let cookie = format!("pcl_csrf={}", page.csrf_cookie);
    let reply = post_login(&s, &cookie, fields.clone(), Some("http://portal.test")).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert!(reply.cookie("sid").is_none());
    let reply = post_login(&s, &cookie, fields, Some("https://portal.test")).await;
    reply.expect(303);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_form_that_cannot_be_read_is_a_400_naming_the_field() {
    let s = Server::start().await;
    let page = s.login_page("").await;
    let cookies = format!("pcl_csrf={}", page.csrf_cookie);
    let csrf = page.csrf.as_str();

    let missing = s
        .post_form(
            "/web-login",
            &cookies,
            &[("email", "ana@example.com"), ("csrf", csrf)],
        )
        .await
        .json_with(400);
    let message = missing["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("password"), "{missing}");

    let repeated = s
        .post_form(
            "/web-login",
            &cookies,
            &[
                ("email", "ana@example.com"),
                ("email", "eve@example.com"),
                ("password", PASSWORD),
                ("csrf", csrf),
            ],
        )
        .await
        .json_with(400);
    let message = repeated["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("email"), "{repeated}");

    let as_json = s
        .send(
            s.request(reqwest::Method::POST, "/web-login")
                .header("origin", &s.public)
                .header("cookie", &cookies)
                .header("content-type", "application/json")
                .body(json!({ "email": "ana@example.com", "password": PASSWORD }).to_string()),
        )
        .await
        .json_with(415);
    assert!(
        as_json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("x-www-form-urlencoded")),
        "{as_json}"
    );
    s.stop().await;
}
