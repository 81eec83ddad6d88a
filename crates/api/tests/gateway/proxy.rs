//! Requests sent to the gateway itself: route match on the normalised path, the checks, and
//! what the backend receives (identity headers, `X-Forwarded-For`, `X-Request-Id`), or the
//! JSON error when it cannot be reached in time or the body is too large.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

fn sorted_groups(value: &str) -> Vec<String> {
    let mut groups: Vec<String> = value.split(',').map(str::to_owned).collect();
    groups.sort();
    groups
}

#[tokio::test]
async fn an_allowed_request_reaches_the_backend_with_identity_headers_and_the_normalised_path() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    let reply = raw_request(
        env.addr,
        "GET",
        "/api//jobs/../jobs?x=1&y=two",
        &[("x-api-key", &dev.key), ("x-request-id", "gw-test-1")],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-request-id"), Some("gw-test-1"));
    let echo = Echo(reply.json());
    assert_eq!(echo.0["method"], "GET");
    assert_eq!(echo.path(), "/api/jobs");
    assert_eq!(echo.0["query"], "x=1&y=two");
    assert_eq!(echo.one("x-portcullis-user"), Some(dev.username.clone()));
    assert_eq!(echo.one("x-portcullis-user-id"), Some(dev.id.clone()));
    let groups = echo.one("x-portcullis-groups").unwrap();
    assert!(
        !groups.contains(' '),
        "groups are joined without spaces: {groups:?}"
    );
    assert_eq!(sorted_groups(&groups), ["devs", "ops"]);
    assert_eq!(echo.one("x-portcullis-org").as_deref(), Some("default"));
    let assertion = echo.one("x-portcullis-assertion").unwrap();
    assert_eq!(assertion.split('.').count(), 3, "a JWT: {assertion}");
    // Aliases: Toolforge's user, Rönd's id, groups and properties.
    assert_eq!(echo.one("x-toolforge-user"), Some(dev.username.clone()));
    assert_eq!(echo.one("miauserid"), Some(dev.id.clone()));
    assert_eq!(echo.one("miausergroups"), Some(groups.clone()));
    let properties: Value = serde_json::from_str(&echo.one("miauserproperties").unwrap()).unwrap();
    assert_eq!(properties["email"], "dev@example.com");
    assert_eq!(echo.one("x-request-id").as_deref(), Some("gw-test-1"));
    assert_eq!(echo.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(env.backend.seen(), ["GET /api/jobs"]);

    // Unreserved escapes are decoded before matching and forwarding.
    let reply = raw_request(
        env.addr,
        "GET",
        "/api/%6Aobs/%7E7",
        &[("x-api-key", &dev.key)],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(Echo(reply.json()).path(), "/api/jobs/~7");

    // Without an X-Request-Id, one is generated; the backend sees the one the client gets back.
    let reply = env.get("/api/request-id", Some(&dev.key), &[]).await;
    let echo = Echo(reply.json_with(200));
    let generated = echo.one("x-request-id").unwrap();
    assert!(generated.len() >= 16, "{generated:?}");
    assert_eq!(reply.header("x-request-id"), Some(generated.as_str()));
}

#[tokio::test]
async fn no_spelling_of_a_path_reaches_the_rule_of_another() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    // Under /public/ (no auth) by spelling, /admin/panel by meaning: the admin rule decides.
    let reply = raw_request(env.addr, "GET", "/public/../admin/panel", &[]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.json(), unauthenticated_body());
    // Under /api/ (dev allowed) by spelling; an encoded dot segment still leads to /admin/.
    let reply = raw_request(
        env.addr,
        "GET",
        "/api/%2e%2e/admin/x",
        &[("x-api-key", &dev.key)],
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reply.json(), forbidden_body());
    // An encoded slash is refused outright.
    let reply = raw_request(env.addr, "GET", "/public/..%2Fadmin/x", &[]).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({
            "error": "encoded slashes and backslashes (%2F, %5C) are not allowed in paths",
            "message": "The request path is not valid",
            "statusCode": 400,
        })
    );
    // Spellings other servers read as separators or cut off: a backslash (IIS, Windows) and
    // path parameters (`..;` is `..` to Tomcat, Jetty and Spring; `/admin;x` is `/admin`).
    for (target, error) in [
        (
            "/public/..\\admin/panel",
            "backslashes are not allowed in paths",
        ),
        (
            "/public/..;/admin/panel",
            "';' (path parameters) is not allowed in paths; encode it as %3B",
        ),
        (
            "/admin/panel;x=1",
            "';' (path parameters) is not allowed in paths; encode it as %3B",
        ),
    ] {
        let reply = raw_request(env.addr, "GET", target, &[]).await;
        assert_eq!(reply.status, 400, "{target}: {reply:?}");
        assert_eq!(reply.json()["error"], error, "{target}");
    }
    // A tunnel is not a request a route decides on.
    let reply = raw_request(env.addr, "CONNECT", "10.0.0.1:22", &[]).await;
    assert_eq!(reply.status, 405, "{reply:?}");
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
}

/// Outside ASCII, raw or escaped, a path is one path: the backend gets the escaped spelling
/// the rules decided on, whichever the client sent.
#[tokio::test]
async fn a_path_outside_ascii_is_forwarded_as_it_was_decided() {
    let env = Env::start(Options::default()).await;
    for target in [
        "/public/\u{dc}ber",
        "/public/%c3%9cber",
        "/public/%C3%9Cber",
    ] {
        let reply = raw_request(env.addr, "GET", target, &[]).await;
        assert_eq!(reply.status, 200, "{target}: {reply:?}");
        assert_eq!(Echo(reply.json()).path(), "/public/%C3%9Cber", "{target}");
    }
}

/// A chunked body's trailers end it and go no further: no rule saw them, and a name like
/// `X-Portcullis-User` there would reach the backend unchecked. The backend's time starts
/// when they come, as at any body's end.
#[tokio::test]
async fn request_trailers_are_not_forwarded_and_end_the_body() {
    let env = Env::start(Options::default()).await;
    let request = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\nTE: trailers\r\n\r\n\
             4\r\nabcd\r\n0\r\nX-Portcullis-User: mallory\r\nX-Checksum: 1\r\n\r\n",
            env.dev.key
        )
    };
    // To an HTTP/2 backend, and to an HTTP/1.1 one through hyper's client.
    for path in ["/h2/upload", "/upload"] {
        let reply = raw_bytes(env.addr, request(path).as_bytes()).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        let echo = reply.json();
        assert_eq!(echo["bodyBytes"], 4, "{path}: {echo}");
        assert!(echo.get("trailers").is_none(), "{path}: {echo}");
    }
    // The impatient backend (500 ms) answers /slow after 3 s: a 504 when the body has ended.
    let started = std::time::Instant::now();
    let reply = raw_bytes(env.addr, request("/slow").as_bytes()).await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn client_sent_identity_headers_never_reach_the_backend() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    let forged_values: Vec<&str> = FORGED.iter().map(|(_, v)| *v).collect();

    // An authenticated caller: every forged header is replaced by the caller's own, or dropped.
    let echo = env.echo("/api/spoof", Some(&dev.key), &FORGED).await;
    let expected = [
        ("x-portcullis-user", Some(dev.username.as_str())),
        ("x-portcullis-user-id", Some(dev.id.as_str())),
        ("x-portcullis-org", Some("default")),
        ("x-portcullis-impersonated-by", None),
        ("x-toolforge-user", Some(dev.username.as_str())),
        ("x-toolforge-tool", None),
        ("miauserid", Some(dev.id.as_str())),
    ];
    for (name, value) in expected {
        assert_eq!(echo.one(name).as_deref(), value, "{name}");
    }
    for name in ["x-portcullis-groups", "miausergroups"] {
        assert_eq!(
            sorted_groups(&echo.one(name).unwrap()),
            ["devs", "ops"],
            "{name}"
        );
    }
    let assertion = echo.one("x-portcullis-assertion").unwrap();
    assert_ne!(assertion, "forged.assertion.value");
    let properties: Value = serde_json::from_str(&echo.one("miauserproperties").unwrap()).unwrap();
    assert_eq!(properties["email"], "dev@example.com");
    for (name, _) in FORGED {
        for value in echo.all(name) {
            assert!(!forged_values.contains(&value.as_str()), "{name}: {value}");
        }
    }

    // Names in the identity namespaces that Portcullis does not set are not the client's to
    // send either: a backend may read them as Portcullis's.
    let unset = [
        ("x-portcullis-role", "admin"),
        ("X-Portcullis-Email", "mallory@evil.example"),
        ("x-toolforge-admin", "1"),
        ("miauserrole", "admin"),
    ];
    for (key, path) in [
        (Some(dev.key.as_str()), "/api/spoof"),
        (None, "/public/spoof"),
    ] {
        let echo = env.echo(path, key, &unset).await;
        for (name, _) in unset {
            assert_eq!(
                echo.all(&name.to_ascii_lowercase()),
                Vec::<String>::new(),
                "{name} reached the backend of {path}"
            );
        }
        // Through hyper too (a request with a body).
        let mut post = env.request(reqwest::Method::POST, "/upload").body("hi");
        post = post.header("x-api-key", &dev.key);
        for (name, value) in unset {
            post = post.header(name, value);
        }
        let echo = Echo(env.send(post).await.json_with(200));
        for (name, _) in unset {
            assert!(echo.all(&name.to_ascii_lowercase()).is_empty(), "{name}");
        }
    }

    // An anonymous caller on an `auth: none` route: none of them arrive at all.
    let echo = env.echo("/public/spoof", None, &FORGED).await;
    for (name, _) in FORGED {
        assert_eq!(
            echo.all(name),
            Vec::<String>::new(),
            "{name} reached the backend"
        );
    }

    // Forged headers open nothing either.
    let reply = env
        .get("/admin/panel", Some(&env.outsider.key), &FORGED)
        .await;
    assert_eq!(reply.json_with(403), forbidden_body());
    let as_dev = [
        ("x-portcullis-user", dev.username.as_str()),
        ("x-portcullis-groups", "devs"),
    ];
    let reply = env.get("/api/jobs", None, &as_dev).await;
    assert_eq!(reply.json_with(401), unauthenticated_body());
    assert!(!env.backend.saw_path("/admin/panel") && !env.backend.saw_path("/api/jobs"));
}

#[tokio::test]
async fn refusals_answer_with_their_exact_bodies_and_never_reach_the_backend() {
    let env = Env::start(Options::default()).await;
    // 401: an anonymous caller on a route that needs one.
    let reply = env.get("/api/jobs?x=1", None, &[]).await;
    assert_eq!(reply.json_with(401), unauthenticated_body());
    // ... and a browser is sent to the login page instead.
    let reply = env
        .get("/api/jobs?x=1", None, &[("accept", "text/html,*/*")])
        .await;
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(
        reply.header("location"),
        Some("/web-login?redirect=/api/jobs%3Fx%3D1")
    );
    // A wrong key is a 401 even where no credential is needed.
    let reply = env.get("/public/logo.png", Some("pcl_wrong"), &[]).await;
    assert_eq!(reply.json_with(401)["error"]["code"], "unauthenticated");
    // 403: the groups expression refuses.
    let reply = env.get("/api/jobs", Some(&env.outsider.key), &[]).await;
    assert_eq!(reply.json_with(403), forbidden_body());
    let reply = env.get("/admin/panel", Some(&env.dev.key), &[]).await;
    assert_eq!(reply.json_with(403), forbidden_body());
    // 404: no route, for anyone (the route match comes before the checks), and no method.
    let reply = env.get("/nowhere", Some(&env.dev.key), &[]).await;
    assert_eq!(reply.json_with(404), not_found_body("GET", "/nowhere"));
    let reply = env.get("/nowhere", None, &[]).await;
    assert_eq!(reply.json_with(404), not_found_body("GET", "/nowhere"));
    let reply = env
        .send(
            env.request(Method::DELETE, "/upload")
                .header("x-api-key", &env.dev.key),
        )
        .await;
    assert_eq!(reply.json_with(404), not_found_body("DELETE", "/upload"));
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
}

/// What installs PyJWT.
const PYJWT: &str = "pip install 'pyjwt[crypto]'";

/// Verifies an assertion with PyJWT against a JWKS, for an audience; prints the claims.
const VERIFY: &str = r#"
import json, sys, jwt
jwks, token, issuer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
kid = jwt.get_unverified_header(token)["kid"]
keys = [k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid]
assert len(keys) == 1, "the assertion's kid is not in the JWKS"
claims = jwt.decode(token, keys[0].key, algorithms=["EdDSA"], audience=sys.argv[4],
                    issuer=issuer, options={"require": ["exp", "iat", "sub", "iss", "aud"]})
print(json.dumps(claims))
"#;

#[tokio::test]
async fn the_identity_assertion_verifies_against_the_jwks() {
    if !crate::python::python_has(&["jwt", "cryptography"], PYJWT) {
        return;
    }
    let env = Env::start(Options::default()).await;
    let dev_token = env
        .echo("/api/whoami", Some(&env.dev.key), &[])
        .await
        .one("x-portcullis-assertion")
        .unwrap();
    let jwks = env.get("/.well-known/jwks.json", None, &[]).await;
    assert_eq!(jwks.status, 200, "{jwks:?}");
    // The backend `echo` has no audience set: its name is the assertion's audience.
    let (ok, out, err) = python(VERIFY, &[&jwks.text, &dev_token, &env.base, "echo"]);
    assert!(ok, "PyJWT refused the assertion: {err}");
    let claims: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claims["aud"], "echo");
    assert_eq!(claims["sub"], env.dev.id.as_str());
    assert_eq!(claims["org"], "default");
    assert_eq!(claims["user"]["userId"], env.dev.id.as_str());
    assert_eq!(claims["user"]["username"], env.dev.username.as_str());
    assert_eq!(claims["user"]["email"], "dev@example.com");
    let mut groups: Vec<String> = serde_json::from_value(claims["user"]["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["devs", "ops"]);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 60, "short-lived: {claims}");

    // Anonymous callers get no assertion.
    let anonymous = env.echo("/public/whoami", None, &[]).await;
    assert_eq!(anonymous.one("x-portcullis-assertion"), None);
    // Another caller's claims under the dev's header and signature do not verify.
    let reply = env
        .send(
            env.request(Method::POST, "/upload")
                .header("x-api-key", &env.outsider.key)
                .body("x"),
        )
        .await;
    let outsider_token = Echo(reply.json_with(200))
        .one("x-portcullis-assertion")
        .unwrap();
    let dev_parts: Vec<&str> = dev_token.split('.').collect();
    let outsider_parts: Vec<&str> = outsider_token.split('.').collect();
    let forged = format!("{}.{}.{}", dev_parts[0], outsider_parts[1], dev_parts[2]);
    let (ok, out, _) = python(VERIFY, &[&jwks.text, &forged, &env.base]);
    assert!(
        !ok,
        "a payload under another assertion's signature verified: {out}"
    );
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let env = Env::start(Options {
        trusted_loopback: false,
        ..Options::default()
    })
    .await;
    let echo = env
        .echo(
            "/api/xff",
            Some(&env.dev.key),
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(echo.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echo.all("x-forwarded-host"), [env.addr.to_string()]);
    assert_eq!(echo.all("x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_appended_to_with_the_proxys_address() {
    let env = Env::start(Options::default()).await;
    // The peer (127.0.0.1) is a trusted proxy that says its client was 198.51.100.1: the chain
    // the backend gets is the proxy's, plus the address this hop received the request from.
    let echo = env
        .echo(
            "/api/xff",
            Some(&env.dev.key),
            &[("x-forwarded-for", "198.51.100.1")],
        )
        .await;
    assert_eq!(echo.all("x-forwarded-for"), ["198.51.100.1, 127.0.0.1"]);
}

#[tokio::test]
async fn an_unreachable_backend_is_a_502() {
    let env = Env::start(Options::default()).await;
    let reply = env.get("/down/status", Some(&env.dev.key), &[]).await;
    let body = reply.json_with(502);
    assert_eq!(body["error"]["code"], "bad_gateway", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'down'"), "{message}");
}

#[tokio::test]
async fn a_backend_slower_than_its_timeout_is_a_504() {
    let env = Env::start(Options::default()).await;
    let started = Instant::now();
    let reply = env.get("/slow", Some(&env.dev.key), &[]).await;
    let took = started.elapsed();
    let body = reply.json_with(504);
    assert_eq!(body["error"]["code"], "gateway_timeout", "{body}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "answered after {took:?} (timeout 500 ms, backend 3 s)"
    );
    assert!(env.backend.saw_path("/slow"), "the request was forwarded");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_is_not_forwarded() {
    let env = Env::start(Options {
        max_body_bytes: MIB,
        ..Options::default()
    })
    .await;
    let upload = |body: Vec<u8>, content_type: &str| {
        env.request(Method::POST, "/upload")
            .header("x-api-key", &env.dev.key)
            .header("content-type", content_type)
            .body(body)
    };
    // Under the limit: forwarded whole.
    let reply = env
        .send(upload(vec![b'a'; 512 * 1024], "application/octet-stream"))
        .await;
    assert_eq!(reply.json_with(200)["bodyBytes"], 512 * 1024);
    // Declared over the limit: refused before anything is forwarded (also for JSON).
    for content_type in ["application/octet-stream", "application/json"] {
        let reply = env
            .send(upload(vec![b'a'; 2 * MIB as usize], content_type))
            .await;
        let body = reply.json_with(413);
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    }
    assert_eq!(env.backend.seen(), ["POST /upload"]);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_a_413() {
    let env = Env::start(Options {
        max_body_bytes: MIB,
        ..Options::default()
    })
    .await;
    // No Content-Length: the limit is met while streaming, to an HTTP/1.1 backend and to an
    // HTTP/2 one (whose client turns the body's failure into a bare stream reset).
    for path in ["/upload", "/h2/upload"] {
        let reply = raw_upload(
            env.addr,
            "POST",
            path,
            &[("x-api-key", &env.dev.key)],
            2 * MIB,
        )
        .await;
        assert_eq!(
            reply.status,
            413,
            "{path}: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["error"]["code"], "payload_too_large", "{path}");
    }
    // A garbled chunk on its way to the HTTP/2 backend: the client's 400, not a 502.
    let request = format!(
        "POST /h2/upload HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\nabc\r\n0\r\n\r\n",
        env.dev.key
    );
    let reply = raw_bytes(env.addr, request.as_bytes()).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.json()["error"]["code"], "bad_request");
}

/// A body the client garbles is the client's 400, not the backend's 502 (nor a warning in the
/// log and a failure in the backend's metrics); framing Portcullis cannot honour is refused
/// before anything is forwarded.
#[tokio::test]
async fn a_body_or_framing_the_client_gets_wrong_is_its_own_error() {
    let env = Env::start(Options::default()).await;
    let head = |extra: &str| {
        format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nConnection: close\r\n{extra}\r\n",
            env.dev.key
        )
    };
    // A chunk size that is not a number, and a chunk longer than its size: the backend may
    // have seen the start of the body, but the answer is the client's.
    for body in ["zz\r\nabc\r\n0\r\n\r\n", "3\r\nabcdef\r\n0\r\n\r\n"] {
        let request = format!("{}{body}", head("Transfer-Encoding: chunked\r\n"));
        let reply = raw_bytes(env.addr, request.as_bytes()).await;
        assert_eq!(reply.status, 400, "{body:?}: {reply:?}");
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "bad_request", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("request body could not be read"),
            "{error}"
        );
        // The parser's own words, not its wrapper's.
        assert!(message.contains("chunk"), "{error}");
    }
    // Chunked twice: the backend would get one chunked coding's bytes as the body.
    let request = format!(
        "{}7\r\n3\r\nabc\r\n\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked, chunked\r\n")
    );
    let reply = raw_bytes(env.addr, request.as_bytes()).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only once")
    );
    // A coding besides chunked would reach the backend undone (its bytes read as plain): 501.
    let request = format!(
        "{}3\r\nabc\r\n0\r\n\r\n",
        head("Transfer-Encoding: gzip, chunked\r\n")
    );
    let reply = raw_bytes(env.addr, request.as_bytes()).await;
    assert_eq!(reply.status, 501, "{reply:?}");
    assert_eq!(reply.json()["error"]["code"], "not_implemented");
    assert!(reply.header("x-request-id").is_some());
    // An expectation no hop can meet: 417.
    let request = format!("{}hi", head("Expect: 999-bogus\r\nContent-Length: 2\r\n"));
    let reply = raw_bytes(env.addr, request.as_bytes()).await;
    assert_eq!(reply.status, 417, "{reply:?}");
    assert_eq!(reply.json()["error"]["code"], "expectation_failed");
    let seen = env.backend.seen();
    assert!(
        seen.len() <= 2,
        "only the garbled bodies may have started: {seen:?}"
    );
}

/// A backend's timeout runs from when the whole request is out: an upload that takes longer
/// than it is not a 504. A client that stops sending its body for the idle time is a 408.
#[tokio::test]
async fn an_upload_longer_than_the_backend_timeout_passes_and_a_stalled_one_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start(Options {
        idle_timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let head = format!(
        "POST /impatient/upload HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nConnection: close\r\n",
        env.dev.key
    );
    // `impatient` has 500 ms: the body takes three times that, a part every 300 ms.
    let mut conn = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    conn.write_all(format!("{head}Content-Length: 30\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        conn.write_all(b"abcdef").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(started.elapsed() > Duration::from_millis(1400));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"bodyBytes\":30"), "{answer}");

    // Half a body, then nothing: refused after the idle time, whatever the backend's timeout.
    let request = format!("{head}Content-Length: 30\r\n\r\nabcdef");
    assert_stalled_body_is_a_408(env.addr, &request, Duration::from_secs(2)).await;
    // A backend slower than its timeout once the body is in is still a 504.
    let reply = env.get("/slow", Some(&env.dev.key), &[]).await;
    assert_eq!(reply.json_with(504)["error"]["code"], "gateway_timeout");
}

#[tokio::test]
async fn a_backend_marked_http2_is_spoken_to_in_h2c() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    let h2 = raw_request(env.addr, "GET", "/h2/jobs", &[("x-api-key", &dev.key)]).await;
    assert_eq!(h2.status, 200, "{h2:?}");
    let echo = Echo(h2.json());
    assert_eq!(echo.0["version"], "HTTP/2.0");
    assert_eq!(echo.path(), "/h2/jobs");
    assert_eq!(echo.one("x-portcullis-user"), Some(dev.username.clone()));
    let h1 = raw_request(env.addr, "GET", "/api/jobs", &[("x-api-key", &dev.key)]).await;
    assert_eq!(Echo(h1.json()).0["version"], "HTTP/1.1");
}

/// What the gateway prepares once per caller (route identity, groups, signed headers) is
/// rebuilt as soon as the groups or the user change: the very next request sees it.
#[tokio::test]
async fn identity_headers_and_decisions_follow_group_and_user_changes_at_once() {
    let env = Env::start(Options::default()).await;
    let dev = env.dev.clone();
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let mut req = env
            .request(method, path)
            .header("x-api-key", ADMIN_KEY)
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        env.send(req)
    };
    let groups_seen = |echo: &Echo| sorted_groups(&echo.one("x-portcullis-groups").unwrap());

    let before = env.echo("/api/whoami", Some(&dev.key), &[]).await;
    assert_eq!(groups_seen(&before), ["devs", "ops"]);
    let refused = env.get("/admin/panel", Some(&dev.key), &[]).await;
    assert_eq!(refused.status, 403, "{refused:?}");

    // Into `admins`: the next request carries the group and passes the admins' route.
    let added = admin(
        Method::POST,
        "/api/v1/orgs/default/groups/admins/members",
        Some(json!({ "userId": dev.id })),
    )
    .await;
    assert!(added.status < 300, "{added:?}");
    let after = env.echo("/admin/panel", Some(&dev.key), &[]).await;
    assert_eq!(groups_seen(&after), ["admins", "devs", "ops"]);
    assert_ne!(
        after.one("x-portcullis-assertion"),
        before.one("x-portcullis-assertion"),
        "the assertion is signed again with the new groups"
    );

    // Out of `devs`: the developers' route refuses the next request.
    let removed = admin(
        Method::DELETE,
        &format!("/api/v1/orgs/default/groups/devs/members/users/{}", dev.id),
        None,
    )
    .await;
    assert!(removed.status < 300, "{removed:?}");
    let refused = env.get("/api/whoami", Some(&dev.key), &[]).await;
    assert_eq!(refused.status, 403, "{refused:?}");

    // Renamed: the next request names the user by the new name.
    let renamed = admin(
        Method::PATCH,
        &format!("/api/v1/orgs/default/users/{}", dev.id),
        Some(json!({ "username": "dev-renamed" })),
    )
    .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let echo = env.echo("/admin/panel", Some(&dev.key), &[]).await;
    assert_eq!(
        echo.one("x-portcullis-user").as_deref(),
        Some("dev-renamed")
    );
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_a_431() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    // 30 KiB of headers pass (the default limit is 64 KiB)…
    let within = "a".repeat(30 * 1024);
    let reply = raw_request(
        env.addr,
        "GET",
        "/api/jobs",
        &[("x-api-key", &key), ("x-big", &within)],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // …80 KiB do not, and never reach the backend.
    let over = "a".repeat(80 * 1024);
    let reply = raw_request(
        env.addr,
        "GET",
        "/api/reports",
        &[("x-api-key", &key), ("x-big", &over)],
    )
    .await;
    assert_eq!(reply.status, 431, "{reply:?}");
    assert_eq!(env.backend.seen(), ["GET /api/jobs"]);
}

#[tokio::test]
async fn the_callers_credential_stays_with_portcullis() {
    let env = Env::start(Options::default()).await;
    let dev = &env.dev;
    let bearer = format!("Bearer {}", dev.key);
    // Every way a request travels: the raw lane (no body), HTTP/2 to the backend, hyper with
    // a body. The backend learns who calls from the identity headers, never the key.
    let raw = env
        .echo("/api/jobs", Some(&dev.key), &[("cookie", "theme=dark")])
        .await;
    let raw_bearer = env
        .echo("/api/jobs", None, &[("authorization", &bearer)])
        .await;
    let h2 = env
        .echo("/h2/jobs", None, &[("authorization", &bearer)])
        .await;
    assert_eq!(h2.0["version"], "HTTP/2.0");
    let with_body = Echo(
        env.send(
            env.request(Method::POST, "/upload")
                .header("x-api-key", &dev.key)
                .header("authorization", &bearer)
                .body(vec![7u8; 1000]),
        )
        .await
        .json_with(200),
    );
    assert_eq!(with_body.0["bodyBytes"], 1000);
    for echo in [&raw, &raw_bearer, &h2, &with_body] {
        assert!(echo.all("x-api-key").is_empty(), "{:?}", echo.0);
        assert!(echo.all("authorization").is_empty(), "{:?}", echo.0);
        assert_eq!(
            echo.one("x-portcullis-user").as_deref(),
            Some(dev.username.as_str())
        );
    }
    assert_eq!(raw.all("cookie"), ["theme=dark"], "other cookies pass");
    // Another scheme is the backend's own business.
    let basic = env
        .echo(
            "/api/jobs",
            Some(&dev.key),
            &[("authorization", "Basic YmFja2VuZDpwdw==")],
        )
        .await;
    assert_eq!(basic.all("authorization"), ["Basic YmFja2VuZDpwdw=="]);
    assert_eq!(basic.one("x-portcullis-user").as_deref(), Some("dev"));
    // ... and no Portcullis credential: on an open route the caller is anonymous.
    let open = env
        .echo(
            "/public/logo.png",
            None,
            &[("authorization", "Basic YmFja2VuZDpwdw==")],
        )
        .await;
    assert_eq!(open.all("authorization"), ["Basic YmFja2VuZDpwdw=="]);
    assert!(open.all("x-portcullis-user").is_empty(), "{:?}", open.0);

    // A browser session: the sid cookie is removed, and so are the refresh token and the CSRF
    // cookie a browser may send along; the page's other cookies stay.
    let sid = session_cookie(&env).await;
    let cookies = format!("theme=dark; sid={sid}; refresh_token=r1; pcl_csrf=c1; lang=en");
    let echo = env
        .echo("/draining/page", None, &[("cookie", &cookies)])
        .await;
    assert_eq!(echo.one("x-portcullis-user").as_deref(), Some("carol"));
    assert_eq!(echo.all("cookie"), ["theme=dark; lang=en"]);

    // A backend configured with `pass_credentials` gets them as sent.
    let echo = env
        .echo("/trusting/x", Some(&dev.key), &[("authorization", &bearer)])
        .await;
    assert_eq!(echo.all("x-api-key"), [dev.key.as_str()]);
    assert_eq!(echo.all("authorization"), [bearer.as_str()]);
    let echo = env
        .echo("/trusting/page", None, &[("cookie", &cookies)])
        .await;
    assert_eq!(echo.all("cookie"), [cookies.as_str()]);
}

#[tokio::test]
async fn a_backend_cannot_set_the_session_cookie() {
    let env = Env::start(Options::default()).await;
    // Through hyper's client (an h2c backend) and through the raw exchange (HTTP/1.1).
    for path in ["/h2/jobs?set-cookies", "/api/jobs?set-cookies"] {
        let reply = env.get(path, Some(&env.dev.key), &[]).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        let set: Vec<String> = reply
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(set, ["theme=dark"], "{path}");
    }
}

#[tokio::test]
async fn cookies_an_http2_client_splits_reach_an_http1_backend_as_one_header() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let env = Env::start(Options::default()).await;
    // HTTP/2 by prior knowledge (h2c); RFC 9113 lets the client send each cookie as a field.
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("an h2c handshake");
    tokio::spawn(conn);
    let request = hyper::Request::get(format!("http://{}/api/jobs", env.addr))
        .header("x-api-key", &env.dev.key)
        .header("cookie", "theme=dark")
        .header("cookie", "lang=en")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo = Echo(serde_json::from_slice(&body).unwrap());
    assert_eq!(echo.0["version"], "HTTP/1.1");
    assert_eq!(echo.all("cookie"), ["theme=dark; lang=en"]);
}

/// Client headers a backend could be misled by, sent on the raw lane (a GET) and through
/// hyper (a POST with a body); returns what the backend received of each.
async fn misleading_headers_as_received(env: &Env) -> Vec<Echo> {
    const SENT: [(&str, &str); 13] = [
        ("x_portcullis_user", "mallory"),
        ("x-forwarded-user", "mallory"),
        ("remote-user", "mallory"),
        (
            "x-forwarded-client-cert",
            "By=spiffe://x;URI=spiffe://admin",
        ),
        ("cf-connecting-ip", "6.6.6.6"),
        ("X_Toolforge_User", "mallory"),
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/admin/panel"),
        ("forwarded", "for=6.6.6.6;proto=https"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-prefix", "/evil"),
        ("x_custom", "1"),
        ("x-custom", "2"),
    ];
    let key = env.dev.key.clone();
    let get = env.echo("/api/jobs", Some(&key), &SENT).await;
    let mut post = env.request(reqwest::Method::POST, "/upload").body("hi");
    post = post.header("x-api-key", &key);
    for (name, value) in SENT {
        post = post.header(name, value);
    }
    let post = Echo(env.send(post).await.json_with(200));
    assert_eq!(post.0["method"], "POST");
    vec![get, post]
}

#[tokio::test]
async fn misleading_client_headers_never_reach_the_backend() {
    let untrusted = Env::start(Options {
        trusted_loopback: false,
        ..Options::default()
    })
    .await;
    for echo in misleading_headers_as_received(&untrusted).await {
        for name in [
            "x_portcullis_user",
            "x_toolforge_user",
            "x-http-method-override",
            "x-original-url",
            "forwarded",
            "x-real-ip",
            "cf-connecting-ip",
            "x-forwarded-prefix",
            "x-forwarded-user",
            "remote-user",
            "x-forwarded-client-cert",
            "x_custom",
        ] {
            assert!(
                echo.all(name).is_empty(),
                "{name} reached the backend: {:?}",
                echo.0
            );
        }
        assert_eq!(
            echo.all("x-portcullis-user"),
            [untrusted.dev.username.as_str()]
        );
        assert_eq!(echo.all("x-custom"), ["2"]);
    }
    // A trusted proxy's reports pass; overrides and underscores still do not.
    let trusted = Env::start(Options::default()).await;
    for echo in misleading_headers_as_received(&trusted).await {
        assert_eq!(echo.all("forwarded"), ["for=6.6.6.6;proto=https"]);
        assert_eq!(echo.all("x-real-ip"), ["6.6.6.6"]);
        assert_eq!(echo.all("cf-connecting-ip"), ["6.6.6.6"]);
        assert_eq!(echo.all("x-forwarded-prefix"), ["/evil"]);
        assert_eq!(echo.all("x-forwarded-user"), ["mallory"]);
        assert_eq!(echo.all("remote-user"), ["mallory"]);
        for name in [
            "x_portcullis_user",
            "x-http-method-override",
            "x-original-url",
            "x_custom",
        ] {
            assert!(
                echo.all(name).is_empty(),
                "{name} reached the backend: {:?}",
                echo.0
            );
        }
    }
}

#[tokio::test]
async fn a_cookie_borne_websocket_must_be_opened_from_this_site() {
    let env = Env::start(Options::default()).await;
    let sid = session_cookie(&env).await;
    let host = env.base.trim_start_matches("http://").to_owned();
    let upgrade = |origin: String| {
        let cookie = format!("sid={sid}");
        let env = &env;
        async move {
            env.get(
                "/draining/socket",
                None,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("cookie", &cookie),
                    ("origin", &origin),
                ],
            )
            .await
        }
    };
    // Another site's page opening a socket with the visitor's cookie: refused before the
    // backend hears of it.
    let reply = upgrade("https://evil.example".into()).await;
    assert_error_mentions(&reply, 403, &["cross-site websocket"]);
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
    // This site's page: the handshake reaches the backend (which answers it as a plain GET).
    let reply = upgrade(format!("http://{host}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(env.backend.seen(), ["GET /draining/socket"]);
}

#[tokio::test]
async fn a_client_type_rule_is_decided_on_each_request_header() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    // The same caller, method and path: only the Client-Type header differs, so no earlier
    // verdict may stand in for the next one.
    for (client_type, status) in [
        (Some("cms"), 200),
        (None, 403),
        (Some("cms"), 200),
        (Some("backoffice"), 403),
    ] {
        let headers: Vec<(&str, &str)> = client_type
            .map(|c| ("client-type", c))
            .into_iter()
            .collect();
        let reply = env.get("/cms/pages", Some(&key), &headers).await;
        assert_eq!(reply.status, status, "{client_type:?}: {reply:?}");
    }
    // Forward-auth reads it from the proxy's call the same way.
    let ask = |client_type: &'static str| {
        let key = key.clone();
        let env = &env;
        async move {
            env.get(
                "/auth/cms/pages",
                Some(&key),
                &[("client-type", client_type)],
            )
            .await
            .status
        }
    };
    assert_eq!(ask("cms").await, 200);
    assert_eq!(ask("other").await, 403);
}

/// Writes `request` on a new connection and reads the answer to the end.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    answer
}

/// A credential header sent twice is refused on the gateway as on the control plane, on the raw
/// lane (no body) and through hyper (a body) alike, whichever of the two is the good one.
#[tokio::test]
async fn a_credential_header_sent_twice_is_refused() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    for head in [
        "GET /api/jobs HTTP/1.1\r\n",
        "POST /upload HTTP/1.1\r\nContent-Length: 2\r\n",
    ] {
        let body = if head.starts_with("POST") { "hi" } else { "" };
        for keys in [
            format!("x-api-key: {key}\r\nx-api-key: bogus\r\n"),
            format!("Authorization: Bearer bogus\r\nAuthorization: Bearer {key}\r\n"),
        ] {
            let request = format!("{head}Host: x\r\n{keys}Connection: close\r\n\r\n{body}");
            let answer = exchange(env.addr, &request).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
            assert!(answer.contains("more than one"), "{answer}");
        }
    }
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
}

#[tokio::test]
async fn an_http_1_1_request_names_its_host_exactly_once() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    // The raw lane (a GET without a body) and hyper (a POST with one) alike.
    for head in [
        "GET /api/jobs HTTP/1.1\r\n",
        "POST /upload HTTP/1.1\r\nContent-Length: 2\r\n",
    ] {
        let body = if head.starts_with("POST") { "hi" } else { "" };
        for hosts in ["", "Host: a.example\r\nHost: b.example\r\n"] {
            let request =
                format!("{head}{hosts}x-api-key: {key}\r\nConnection: close\r\n\r\n{body}");
            let answer = exchange(env.addr, &request).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
            assert!(answer.contains("one Host header"), "{answer}");
        }
    }
    // A Host that is not one authority: a list, a path, a user name, a port out of range.
    for host in [
        "a.example, evil.example",
        "a.example/evil",
        "u@a.example",
        "a.example:99999",
    ] {
        for head in [
            "GET /api/jobs HTTP/1.1\r\n",
            "POST /upload HTTP/1.1\r\nContent-Length: 2\r\n",
        ] {
            let body = if head.starts_with("POST") { "hi" } else { "" };
            let request = format!(
                "{head}Host: {host}\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n{body}"
            );
            let answer = exchange(env.addr, &request).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
            assert!(answer.contains("Host header must be"), "{answer}");
        }
    }
    // Nor may an absolute-form target carry a user name and password.
    let answer = exchange(
        env.addr,
        &format!(
            "GET http://user:pw@portal.example/api/jobs HTTP/1.1\r\nHost: portal.example\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("user name or password"), "{answer}");
    // HTTP/1.0 may leave it out, but may not name two either.
    let answer = exchange(
        env.addr,
        &format!("GET /api/jobs HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\nx-api-key: {key}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
    let answer = exchange(
        env.addr,
        &format!("GET /api/jobs HTTP/1.0\r\nx-api-key: {key}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    // An absolute-form target names the host itself: its Host is ignored (RFC 9112 §3.2.2).
    let answer = exchange(
        env.addr,
        &format!(
            "GET http://portal.example/api/jobs HTTP/1.1\r\nHost: other.example\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let echo = Echo(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}")));
    assert_eq!(echo.all("x-forwarded-host"), ["portal.example"]);
}

/// An assertion names the backend it was sent to (`aud`): one backend cannot replay a caller's
/// assertion to another that checks its audience.
#[tokio::test]
async fn each_backend_gets_an_assertion_for_its_own_audience() {
    if !crate::python::python_has(&["jwt", "cryptography"], PYJWT) {
        return;
    }
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    let to_echo = env
        .echo("/api/whoami", Some(&key), &[])
        .await
        .one("x-portcullis-assertion")
        .unwrap();
    let to_trusting = env
        .echo("/trusting/whoami", Some(&key), &[])
        .await
        .one("x-portcullis-assertion")
        .unwrap();
    assert_eq!(jwt_claims(&to_echo)["aud"], "echo");
    // `trusting` is configured with `audience: https://trusting.example`.
    assert_eq!(jwt_claims(&to_trusting)["aud"], "https://trusting.example");
    // The same caller and claims otherwise.
    for claim in ["sub", "iss", "org", "user"] {
        assert_eq!(
            jwt_claims(&to_echo)[claim],
            jwt_claims(&to_trusting)[claim],
            "{claim}"
        );
    }
    // Signed once per caller and backend: the next request carries the same assertion.
    let again = env
        .echo("/api/whoami", Some(&key), &[])
        .await
        .one("x-portcullis-assertion");
    assert_eq!(again.as_deref(), Some(to_echo.as_str()));
    let jwks = env.get("/.well-known/jwks.json", None, &[]).await;
    let verify =
        |token: &str, audience: &str| python(VERIFY, &[&jwks.text, token, &env.base, audience]);
    assert!(verify(&to_trusting, "https://trusting.example").0);
    let (ok, _, err) = verify(&to_echo, "https://trusting.example");
    assert!(!ok, "echo's assertion must not pass at trusting");
    assert!(err.contains("InvalidAudience"), "{err}");
    let (ok, _, err) = verify(&to_trusting, "echo");
    assert!(!ok && err.contains("InvalidAudience"), "{err}");
}
