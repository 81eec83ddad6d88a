//! Forward-auth at `/auth` as nginx (`X-Original-URI` / `-Method`), Traefik
//! (`X-Forwarded-Uri` / `-Method`) and Envoy (the request itself under `/auth`) call it. The
//! proxy headers count only from a trusted proxy: the tests run two servers, one trusting
//! `127.0.0.1/32` (where the tests connect from) and one trusting nobody.

use reqwest::Method;

use crate::support::*;

const NGINX: [&str; 2] = ["x-original-uri", "x-original-method"];
const TRAEFIK: [&str; 2] = ["x-forwarded-uri", "x-forwarded-method"];

/// Asks `/auth` (or `/auth<suffix>`) about `method uri` with the proxy headers `names`.
async fn ask(
    env: &Env,
    suffix: &str,
    names: [&str; 2],
    method: &str,
    uri: &str,
    key: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let mut headers = vec![(names[0], uri), (names[1], method)];
    if let Some(key) = key {
        headers.push(("x-api-key", key));
    }
    headers.extend_from_slice(extra);
    env.get(&format!("/auth{suffix}"), None, &headers).await
}

/// Asserts a 200 that names `caller` in the identity headers.
#[track_caller]
fn assert_identity(reply: &Reply, caller: &Caller) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("x-portcullis-user"),
        Some(caller.username.as_str())
    );
    assert_eq!(
        reply.header("x-portcullis-user-id"),
        Some(caller.id.as_str())
    );
    assert_eq!(reply.header("x-portcullis-org"), Some("default"));
    assert!(
        reply
            .header("x-portcullis-assertion")
            .is_some_and(|a| a.split('.').count() == 3),
        "{reply:?}"
    );
    assert_eq!(
        reply.header("x-toolforge-user"),
        Some(caller.username.as_str())
    );
    assert_eq!(reply.header("miauserid"), Some(caller.id.as_str()));
}

/// Asserts a 200 without an identity (anonymous caller on an `auth: none` route): the identity
/// headers the proxy copies are there, empty, so that they replace any a client sent (Envoy
/// copies only the headers present), and no forged value is echoed.
#[track_caller]
fn assert_anonymous_ok(reply: &Reply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    for name in [
        "x-portcullis-user",
        "x-portcullis-user-id",
        "x-portcullis-groups",
        "x-portcullis-org",
        "x-portcullis-assertion",
        "x-toolforge-user",
        "miauserid",
    ] {
        assert_eq!(reply.header(name), Some(""), "{name} in {reply:?}");
    }
    for (name, _) in FORGED {
        assert!(
            reply.header(name).is_none_or(str::is_empty),
            "{name} in {reply:?}"
        );
    }
}

/// Asserts the 401 an API client gets, with the login URL for nginx's `error_page`.
#[track_caller]
fn assert_unauthenticated(reply: &Reply, login: &str) {
    assert_eq!(reply.json_with(401), unauthenticated_body());
    assert_eq!(reply.header("x-portcullis-login"), Some(login));
}

#[tokio::test]
async fn nginx_headers_from_a_trusted_proxy_name_the_request_checked() {
    let env = Env::start(Options::default()).await;
    let (dev, outsider) = (&env.dev, &env.outsider);
    let reply = ask(&env, "", NGINX, "GET", "/api/jobs?x=1", Some(&dev.key), &[]).await;
    assert_identity(&reply, dev);
    let mut groups: Vec<&str> = reply
        .header("x-portcullis-groups")
        .unwrap()
        .split(',')
        .collect();
    groups.sort();
    assert_eq!(groups, ["devs", "ops"]);
    // The same credential, another original request: the header decides what is checked.
    let reply = ask(&env, "", NGINX, "GET", "/admin/panel", Some(&dev.key), &[]).await;
    assert_eq!(reply.json_with(403), forbidden_body());
    let reply = ask(
        &env,
        "",
        NGINX,
        "GET",
        "/api/jobs",
        Some(&outsider.key),
        &[],
    )
    .await;
    assert_eq!(reply.json_with(403), forbidden_body());
    // nginx turns any answer but 2xx / 401 / 403 into a 500: an unknown route is a 403 there,
    // with Rönd's not-found message.
    let reply = ask(&env, "", NGINX, "GET", "/nowhere", Some(&dev.key), &[]).await;
    let mut expected = not_found_body("GET", "/nowhere");
    expected["statusCode"] = serde_json::json!(403);
    assert_eq!(reply.json_with(403), expected);
    // The original method counts: /upload is routed for POST and PUT only.
    let reply = ask(&env, "", NGINX, "POST", "/upload", Some(&dev.key), &[]).await;
    assert_identity(&reply, dev);
    let reply = ask(&env, "", NGINX, "DELETE", "/upload", Some(&dev.key), &[]).await;
    let mut expected = not_found_body("DELETE", "/upload");
    expected["statusCode"] = serde_json::json!(403);
    assert_eq!(reply.json_with(403), expected);
    // Anonymous: 200 without identity on an open route (forged headers are not echoed), and a
    // 401 with the login URL in a header on a closed one, for browsers too (nginx cannot pass
    // a redirect on; its error_page uses the header).
    let reply = ask(&env, "", NGINX, "GET", "/public/logo.png", None, &FORGED).await;
    assert_anonymous_ok(&reply);
    let login = "/web-login?redirect=/api/jobs%3Fx%3D1";
    let reply = ask(&env, "", NGINX, "GET", "/api/jobs?x=1", None, &[]).await;
    assert_unauthenticated(&reply, login);
    let html = [("accept", "text/html,application/xhtml+xml")];
    let reply = ask(&env, "", NGINX, "GET", "/api/jobs?x=1", None, &html).await;
    assert_unauthenticated(&reply, login);
    // Any method reaches /auth.
    let reply = env
        .send(
            env.request(Method::POST, "/auth")
                .header("x-original-uri", "/api/jobs")
                .header("x-original-method", "GET")
                .header("x-api-key", &dev.key),
        )
        .await;
    assert_identity(&reply, dev);
    assert!(env.backend.seen().is_empty(), "forward-auth never forwards");
}

#[tokio::test]
async fn proxy_headers_from_an_untrusted_peer_are_ignored() {
    let env = Env::start(Options {
        trusted_loopback: false,
        ..Options::default()
    })
    .await;
    let dev = &env.dev;
    for names in [NGINX, TRAEFIK] {
        // Asking about an open route does not open a closed one: the real request is checked.
        let reply = ask(&env, "/admin/panel", names, "GET", "/public/x", None, &[]).await;
        assert_unauthenticated(&reply, "/web-login?redirect=/admin/panel");
        let reply = ask(
            &env,
            "/admin/panel",
            names,
            "GET",
            "/api/jobs",
            Some(&dev.key),
            &[],
        )
        .await;
        assert_eq!(reply.json_with(403), forbidden_body(), "{names:?}");
        // Nor does it close an open one.
        let reply = ask(
            &env,
            "/api/jobs",
            names,
            "GET",
            "/admin/panel",
            Some(&dev.key),
            &[],
        )
        .await;
        assert_identity(&reply, dev);
        // The method header is ignored as well: GET /upload has no route.
        let reply = ask(
            &env,
            "/upload",
            names,
            "POST",
            "/upload",
            Some(&dev.key),
            &[],
        )
        .await;
        assert_eq!(
            reply.json_with(404),
            not_found_body("GET", "/upload"),
            "{names:?}"
        );
        // Bare /auth asks about `/`, whatever the header says.
        let reply = ask(&env, "", names, "GET", "/api/jobs", Some(&dev.key), &[]).await;
        assert_eq!(
            reply.json_with(404),
            not_found_body("GET", "/"),
            "{names:?}"
        );
    }
}

#[tokio::test]
async fn traefik_headers_from_a_trusted_proxy_name_the_request_checked() {
    let env = Env::start(Options::default()).await;
    let (dev, outsider) = (&env.dev, &env.outsider);
    let reply = ask(
        &env,
        "",
        TRAEFIK,
        "GET",
        "/api/builds/1",
        Some(&dev.key),
        &[],
    )
    .await;
    assert_identity(&reply, dev);
    let reply = ask(&env, "", TRAEFIK, "PUT", "/upload", Some(&dev.key), &[]).await;
    assert_identity(&reply, dev);
    let reply = ask(&env, "", TRAEFIK, "DELETE", "/upload", Some(&dev.key), &[]).await;
    assert_eq!(reply.json_with(404), not_found_body("DELETE", "/upload"));
    let reply = ask(
        &env,
        "",
        TRAEFIK,
        "GET",
        "/api/builds/1",
        Some(&outsider.key),
        &[],
    )
    .await;
    assert_eq!(reply.json_with(403), forbidden_body());
    // An API client gets the 401; a browser is redirected (Traefik passes the 302 on).
    let uri = "/api/builds/1?tab=2";
    let login = "/web-login?redirect=/api/builds/1%3Ftab%3D2";
    let reply = ask(&env, "", TRAEFIK, "GET", uri, None, &[]).await;
    assert_unauthenticated(&reply, login);
    let html = [("accept", "text/html,application/xhtml+xml")];
    let reply = ask(&env, "", TRAEFIK, "GET", uri, None, &html).await;
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(reply.header("location"), Some(login));
    // The Location stays relative whatever host and scheme Traefik names: the browser stays on
    // the origin and scheme it is on (a TLS load balancer in front of a plain-HTTP Traefik
    // would otherwise turn it into an http:// login page).
    let extra = [
        html[0],
        ("x-forwarded-host", "portal.example"),
        ("x-forwarded-proto", "http"),
    ];
    let reply = ask(&env, "", TRAEFIK, "GET", uri, None, &extra).await;
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(reply.header("location"), Some(login));
    let reply = ask(&env, "", TRAEFIK, "GET", "/public/logo.png", None, &[]).await;
    assert_anonymous_ok(&reply);
}

#[tokio::test]
async fn the_answer_names_the_tool_and_blanks_what_the_caller_lacks() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    // The tool is the one the matched route's path names, as on the gateway.
    let reply = env
        .get("/auth/tools/builder/run", Some(&dev.key), &[])
        .await;
    assert_identity(&reply, dev);
    assert_eq!(reply.header("x-toolforge-tool"), Some("builder"));
    let reply = ask(
        &env,
        "",
        NGINX,
        "GET",
        "/tools/builder/run",
        Some(&dev.key),
        &[],
    )
    .await;
    assert_eq!(reply.header("x-toolforge-tool"), Some("builder"));
    let echo = env.echo("/tools/builder/run", Some(&dev.key), &[]).await;
    assert_eq!(echo.one("x-toolforge-tool").as_deref(), Some("builder"));
    // A segment that is not spelled as a project name names no tool: trailing space (which a
    // backend's header parser would trim to `builder`), capitals, a comma.
    for path in [
        "builder%20",
        "%20builder",
        "Builder",
        "build%2Cer",
        "b%C3%BCilder",
    ] {
        let reply = env
            .get(&format!("/auth/tools/{path}/run"), Some(&dev.key), &[])
            .await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(reply.header("x-toolforge-tool"), Some(""), "{path}");
        let echo = env
            .echo(&format!("/tools/{path}/run"), Some(&dev.key), &[])
            .await;
        assert_eq!(echo.one("x-toolforge-tool"), None, "{path}");
    }
    // A path that names none: the header is there, empty, so that a proxy copying the
    // answer's headers (Envoy) replaces a client's `X-Toolforge-Tool` instead of passing it.
    let reply = env.get("/auth/api/jobs", Some(&dev.key), &[]).await;
    assert_identity(&reply, dev);
    assert_eq!(reply.header("x-toolforge-tool"), Some(""));
}

#[tokio::test]
async fn envoy_asks_with_the_request_itself_under_the_prefix() {
    for trusted_loopback in [true, false] {
        let env = Env::start(Options {
            trusted_loopback,
            ..Options::default()
        })
        .await;
        let (dev, outsider) = (&env.dev, &env.outsider);
        let reply = env.get("/auth/api/jobs?x=1", Some(&dev.key), &[]).await;
        assert_identity(&reply, dev);
        // The key as a bearer token works the same.
        let reply = env
            .send(
                env.request(Method::GET, "/auth/api/jobs")
                    .bearer_auth(&dev.key),
            )
            .await;
        assert_identity(&reply, dev);
        let reply = env
            .send(
                env.request(Method::PUT, "/auth/upload")
                    .header("x-api-key", &dev.key),
            )
            .await;
        assert_identity(&reply, dev);
        let reply = env
            .send(
                env.request(Method::DELETE, "/auth/upload")
                    .header("x-api-key", &dev.key),
            )
            .await;
        assert_eq!(reply.json_with(404), not_found_body("DELETE", "/upload"));
        let reply = env.get("/auth/api/jobs", Some(&outsider.key), &[]).await;
        assert_eq!(reply.json_with(403), forbidden_body());
        let reply = env.get("/auth/public/logo.png", None, &[]).await;
        assert_anonymous_ok(&reply);
        let reply = env.get("/auth/api/jobs", Some("pcl_not-a-key"), &[]).await;
        assert_eq!(reply.status, 401, "{reply:?}");
        let login = "/web-login?redirect=/api/jobs%3Fx%3D1";
        let reply = env.get("/auth/api/jobs?x=1", None, &[]).await;
        assert_unauthenticated(&reply, login);
        let reply = env
            .get("/auth/api/jobs?x=1", None, &[("accept", "text/html")])
            .await;
        assert_eq!(reply.status, 302, "{reply:?}");
        assert_eq!(reply.header("location"), Some(login));
        assert!(env.backend.seen().is_empty(), "forward-auth never forwards");
    }
}

#[tokio::test]
async fn a_request_named_two_ways_or_half_named_is_refused() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    // Behind Traefik, which passes client headers on, a client adds nginx's header naming an
    // open route: refused, not believed (dev may not see /admin/*, nobody may without a key).
    for key in [None, Some(dev.key.as_str())] {
        let reply = ask(
            &env,
            "",
            TRAEFIK,
            "GET",
            "/admin/panel",
            key,
            &[("x-original-uri", "/public/logo.png")],
        )
        .await;
        assert_error_mentions(&reply, 400, &["x-original-uri", "x-forwarded-uri"]);
    }
    // Behind nginx, the other way round.
    let reply = ask(
        &env,
        "",
        NGINX,
        "DELETE",
        "/upload",
        Some(&dev.key),
        &[("x-forwarded-method", "PUT")],
    )
    .await;
    reply.json_with(400);
    // Envoy passing on a client's header beside the request under the prefix.
    let reply = env
        .get(
            "/auth/admin/panel",
            None,
            &[
                ("x-original-uri", "/public/logo.png"),
                ("x-original-method", "GET"),
            ],
        )
        .await;
    reply.json_with(400);
    // Repeated: the proxy's value and a client's.
    let reply = env
        .get(
            "/auth",
            None,
            &[
                ("x-original-uri", "/public/logo.png"),
                ("x-original-uri", "/admin/panel"),
                ("x-original-method", "GET"),
            ],
        )
        .await;
    reply.json_with(400);
    // A URI without the proxy's method: a client could name the method.
    let reply = env
        .get("/auth", Some(&dev.key), &[("x-original-uri", "/upload")])
        .await;
    assert_error_mentions(&reply, 400, &["x-original-method"]);
    // From an untrusted peer none of this counts: the call itself is checked.
    let untrusted = Env::start(Options {
        trusted_loopback: false,
        ..Options::default()
    })
    .await;
    let reply = untrusted
        .get(
            "/auth/public/logo.png",
            None,
            &[
                ("x-original-uri", "/admin/panel"),
                ("x-forwarded-uri", "/x"),
            ],
        )
        .await;
    assert_anonymous_ok(&reply);
}

/// A URI a proxy names is refused where the proxy or the backend could read it otherwise than
/// the decision would, since the proxy forwards it as the client sent it:
/// - a raw `#`: nginx ends the path there (so does a backend that drops the fragment), and
///   `/admin/panel#/../../public/x` must not be decided as `/public/x`, an open route, while
///   nginx and the backend serve `/admin/panel`; in the query, `?force=true#` is `force=true`
///   to the backend;
/// - a raw space;
/// - a dot segment in any spelling: a router that keeps them serves `/admin/panel/../../x`
///   from its `/admin/*` handler, and `/admin//../x` is `/admin/x` to RFC 3986.
#[tokio::test]
async fn a_named_uri_other_servers_could_read_otherwise_is_refused() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    // The refusals count as decisions (the metrics are the process's: at least these).
    let bad_paths = || async {
        let text = env.metrics().await;
        crate::metrics::series(
            &text,
            "portcullis_gateway_decisions_total",
            &["\"BAD_PATH\""],
        )
    };
    let before = bad_paths().await;
    let dots = "segments are not allowed";
    for (uri, words) in [
        ("/admin/panel#/../../public/logo.png", "'#'"),
        ("/admin/panel#x", "'#'"),
        ("/public/logo.png?force=true#", "'#'"),
        ("/admin/panel /../../public/logo.png", "spaces"),
        ("/admin/panel/../../public/logo.png", dots),
        ("/admin/panel/%2e%2e/%2E%2E/public/logo.png", dots),
        ("/admin//../public/logo.png", dots),
        ("/public/./logo.png", dots),
    ] {
        for key in [None, Some(dev.key.as_str())] {
            // nginx's auth_request makes a 500 of a 400: the refusal is a 403 there.
            let reply = ask(&env, "", NGINX, "GET", uri, key, &[]).await;
            let body = reply.json_with(403);
            assert_eq!(body["message"], "The request path is not valid", "{uri}");
            assert!(
                body["error"].as_str().is_some_and(|e| e.contains(words)),
                "{uri}: {body}"
            );
            let reply = ask(&env, "", TRAEFIK, "GET", uri, key, &[]).await;
            let body = reply.json_with(400);
            assert!(
                body["error"].as_str().is_some_and(|e| e.contains(words)),
                "{uri}: {body}"
            );
        }
    }
    // Envoy names the request with the path under the prefix, as the client sent it.
    for target in [
        "/auth/admin/panel/../../public/logo.png",
        "/auth/admin/panel/%2e%2e/%2e%2e/public/logo.png",
    ] {
        let reply = raw_request(env.addr, "GET", target, &[]).await;
        assert_eq!(reply.status, 400, "{target}: {reply:?}");
    }
    // Encoded, the same characters are a path like any other; so are dots in a name, and a
    // dot segment in the query.
    for uri in [
        "/public/a%23b%20c",
        "/public/.well-known/...",
        "/public/x?next=../y",
    ] {
        let reply = ask(&env, "", NGINX, "GET", uri, None, &[]).await;
        assert_anonymous_ok(&reply);
    }
    // Eight URIs, two callers, two proxies, and Envoy's two.
    let counted = bad_paths().await - before;
    assert!(counted >= 34.0, "{counted} refusals counted");
    assert!(env.backend.seen().is_empty(), "forward-auth never forwards");
}

#[tokio::test]
async fn a_cookie_borne_change_must_come_from_this_site_behind_a_proxy_too() {
    let env = Env::start(Options::default()).await;
    let sid = session_cookie(&env).await;
    let cookie = format!("sid={sid}");
    let host = env.base.trim_start_matches("http://").to_owned();
    // The call itself is a GET; the original request is a POST from another site.
    let traefik = |origin: &'static str| {
        let cookie = cookie.clone();
        let env = &env;
        async move {
            env.get(
                "/auth",
                None,
                &[
                    ("x-forwarded-uri", "/upload"),
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-host", "portal.example"),
                    ("cookie", &cookie),
                    ("origin", origin),
                ],
            )
            .await
        }
    };
    let reply = traefik("https://evil.example").await;
    assert_error_mentions(&reply, 403, &["cross-site"]);
    // From the host the client asked for (Traefik's X-Forwarded-Host), it passes.
    let reply = traefik("https://portal.example").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-portcullis-user"), Some("carol"));
    // nginx: the call's own Host is the one checked.
    let nginx = |origin: String| {
        let cookie = cookie.clone();
        let env = &env;
        async move {
            env.get(
                "/auth",
                None,
                &[
                    ("x-original-uri", "/upload"),
                    ("x-original-method", "PUT"),
                    ("cookie", &cookie),
                    ("origin", &origin),
                ],
            )
            .await
        }
    };
    nginx("https://evil.example".into()).await.json_with(403);
    let reply = nginx(format!("http://{host}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // A read needs no such check, and an API key none at all.
    let reply = env
        .get(
            "/auth",
            None,
            &[
                ("x-original-uri", "/draining/page"),
                ("x-original-method", "GET"),
                ("cookie", &cookie),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = ask(
        &env,
        "",
        NGINX,
        "POST",
        "/upload",
        Some(&env.dev.key),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_identity(&reply, &env.dev);
    // A websocket handshake is a GET, and the cookie goes with it from a page of a sibling
    // host (same site): it must come from this site too (cross-site websocket hijacking), told
    // by its Sec-WebSocket-Key (nginx and Traefik drop Upgrade) or its Upgrade.
    let own = format!("http://{host}");
    for mark in [
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("upgrade", "websocket"),
    ] {
        for (origin, allowed) in [("https://evil.example", false), (own.as_str(), true)] {
            let extra = [("cookie", cookie.as_str()), ("origin", origin), mark];
            let reply = ask(&env, "", NGINX, "GET", "/draining/socket", None, &extra).await;
            if allowed {
                assert_eq!(reply.status, 200, "{reply:?}");
                assert_eq!(reply.header("x-portcullis-user"), Some("carol"));
            } else {
                assert_error_mentions(&reply, 403, &["cross-site websocket"]);
            }
        }
    }
    // Behind Traefik, at the host the client asked for.
    let reply = env
        .get(
            "/auth",
            None,
            &[
                ("x-forwarded-uri", "/draining/socket"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-host", "portal.example"),
                ("cookie", &cookie),
                ("origin", "https://evil.example"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
    assert_error_mentions(&reply, 403, &["cross-site websocket"]);
}

#[tokio::test]
async fn only_a_page_load_is_sent_to_the_login_page_with_a_stale_session_cleared() {
    let env = Env::start(Options::default()).await;
    let html = [("accept", "text/html")];
    let reply = ask(&env, "", TRAEFIK, "GET", "/api/jobs", None, &html).await;
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(
        reply.header("location"),
        Some("/web-login?redirect=/api/jobs")
    );
    assert!(
        reply
            .header("set-cookie")
            .is_some_and(|c| c.starts_with("sid=;") && c.contains("Max-Age=0")),
        "{reply:?}"
    );
    // A form post is not a page to come back to: the 401 with the login URL.
    let reply = ask(&env, "", TRAEFIK, "POST", "/upload", None, &html).await;
    assert_unauthenticated(&reply, "/web-login?redirect=/upload");
    // Envoy, anonymous on an open route with forged identity headers: the answer's identity
    // headers are empty, so Envoy replaces the forged ones.
    let reply = env.get("/auth/public/logo.png", None, &FORGED).await;
    assert_anonymous_ok(&reply);
}

/// The assertion in a forward-auth answer is for the application the proxy will call: the
/// route's backend when the route names one, otherwise the host the request was for.
#[tokio::test]
async fn the_assertion_names_the_application_it_is_for() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    let audience_of = |reply: &Reply| {
        assert_eq!(reply.status, 200, "{reply:?}");
        jwt_claims(reply.header("x-portcullis-assertion").unwrap())["aud"].clone()
    };
    // `/api/*` names the backend `echo`.
    let reply = ask(&env, "", NGINX, "GET", "/api/jobs", Some(&key), &[]).await;
    assert_eq!(audience_of(&reply), "echo");
    // `/sites/*` names none: Traefik's X-Forwarded-Host, in lower case.
    for (host, audience) in [
        ("Wiki.Example.com", "wiki.example.com"),
        ("grafana.example.com", "grafana.example.com"),
    ] {
        let extra = [("x-forwarded-host", host)];
        let reply = ask(&env, "", TRAEFIK, "GET", "/sites/wiki", Some(&key), &extra).await;
        assert_eq!(audience_of(&reply), audience, "{host}");
    }
    // nginx's call carries the host as its own Host (the example sets `Host $host`).
    let reply = ask(&env, "", NGINX, "GET", "/sites/wiki", Some(&key), &[]).await;
    assert_eq!(audience_of(&reply), env.addr.to_string());
}

/// An assertion is for the application that receives it, never a credential at Portcullis:
/// one whose `aud` is Portcullis's own session audience (a proxy asking for the host
/// `portcullis`) is still refused when an application sends it back as a bearer token.
#[tokio::test]
async fn an_assertion_sent_back_to_portcullis_is_refused() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    let extra = [("x-forwarded-host", "portcullis")];
    let reply = ask(&env, "", TRAEFIK, "GET", "/sites/wiki", Some(&key), &extra).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let assertion = reply.header("x-portcullis-assertion").unwrap().to_owned();
    assert_eq!(jwt_claims(&assertion)["aud"], "portcullis");
    let bearer = format!("Bearer {assertion}");
    let as_bearer = [("authorization", bearer.as_str())];
    // The control plane, the gateway and forward-auth all refuse it.
    for path in ["/api/v1/me", "/api/whoami"] {
        let reply = env.get(path, None, &as_bearer).await;
        assert_eq!(reply.status, 401, "{path}: {reply:?}");
    }
    let reply = ask(&env, "", NGINX, "GET", "/api/jobs", None, &as_bearer).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    // The key it was made for still works.
    assert_eq!(env.get("/api/v1/me", Some(&key), &[]).await.status, 200);
}
