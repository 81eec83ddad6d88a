//! Every `redirect` parameter stays on this origin: the login page, the login form post and
//! logout never send the browser to another site.

use crate::support::*;

/// The values as the server must see them (each is percent-encoded once more on the wire). The
/// first five are also used for a real sign-in each (an argon2 verification apiece).
const HOSTILE: &[&str] = &[
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "\\\\evil.example",
    "http:evil.example",
    "//evil.example/%2e%2e",
    "/\t/evil.example",
    " //evil.example",
];

#[track_caller]
fn assert_same_origin(what: &str, raw: &str, location: &str) {
    assert!(
        location.starts_with('/')
            && !location.starts_with("//")
            && !location.contains('\\')
            && !location.contains("evil.example"),
        "{what} with redirect {raw:?} sent the browser to {location:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_never_leave_the_origin() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;

    for (n, raw) in HOSTILE.iter().enumerate() {
        // The login page does not carry it into its form.
        let page = s.login_page(&format!("?redirect={}", encode(raw))).await;
        assert_eq!(page.redirect, "/", "login page with {raw:?}");
        assert!(
            !page.reply.text.contains("evil.example"),
            "login page with {raw:?}: {}",
            page.reply.text
        );

        // The logout redirect, without a session.
        let path = format!("/logout?redirect={}", encode(raw));
        let out = s.send(s.request(reqwest::Method::POST, &path)).await;
        out.expect(302);
        assert_same_origin("POST /logout", raw, out.location());
        assert_eq!(out.location(), "/web-login", "POST /logout with {raw:?}");
        if n >= 5 {
            continue;
        }

        // The form post (a hand-made one: the field holds the hostile value) lands on this site.
        let reply = s
            .post_form(
                "/web-login",
                &format!("pcl_csrf={}", page.csrf_cookie),
                &[
                    ("email", "ana@example.com"),
                    ("password", PASSWORD),
                    ("redirect", raw),
                    ("csrf", &page.csrf),
                ],
            )
            .await;
        reply.expect(303);
        assert!(reply.cookie("sid").is_some(), "signed in with {raw:?}");
        assert_same_origin("POST /web-login", raw, reply.location());
        assert_eq!(reply.location(), "/", "POST /web-login with {raw:?}");

        // Logout with the session.
        let sid = reply.cookie("sid").unwrap().value;
        let out = s
            .send(
                s.request(reqwest::Method::GET, &path)
                    .header("cookie", format!("sid={sid}")),
            )
            .await;
        out.expect(302);
        assert_same_origin("GET /logout", raw, out.location());
        assert_eq!(out.location(), "/web-login", "GET /logout with {raw:?}");
        s.get_with_cookie(&sid, "/api/v1/me").await.expect(401);
    }

    // A path on this site is kept, query included.
    let good = "/projects?x=1";
    let page = s.login_page(&format!("?redirect={}", encode(good))).await;
    assert_eq!(page.redirect, good);
    let reply = s.web_login("ana@example.com", PASSWORD, good).await;
    reply.expect(303);
    assert_eq!(reply.location(), good);
    let out = s
        .send(s.request(
            reqwest::Method::GET,
            &format!("/logout?redirect={}", encode(good)),
        ))
        .await;
    out.expect(302);
    assert_eq!(out.location(), good);

    // The 401 -> login redirect of a browser keeps the path it came from, on this site.
    let page = s
        .send(
            s.request(reqwest::Method::GET, "/api/v1/me")
                .header("accept", "text/html,application/xhtml+xml"),
        )
        .await;
    page.expect(302);
    assert_eq!(page.location(), "/web-login?redirect=/api/v1/me");
    // Without HTML in Accept: the API's 401.
    s.send(s.request(reqwest::Method::GET, "/api/v1/me"))
        .await
        .error(401, "unauthenticated");
    s.stop().await;
}
