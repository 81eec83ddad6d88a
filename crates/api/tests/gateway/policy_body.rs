//! A Rego policy decides on the JSON body the backend will read: whatever its framing
//! (`Content-Length` or chunked) and whatever JSON media type it is sent as. A body the policy
//! cannot read (too large for it, or not the JSON it says it is) is refused, never forwarded
//! unseen. `/orders/*` refuses an order over 100 and allows a body that says nothing.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

/// `method path` as the bench caller with a JSON `body` and `headers` besides.
async fn send_json(
    env: &Env,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Reply {
    let mut req = env
        .request(method, path)
        .header("x-api-key", &env.dev.key)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    env.send(req).await
}

#[tokio::test]
async fn the_policy_reads_the_body_however_it_is_framed_or_typed() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    let small = json!({"amount": 50}).to_string();
    let large = json!({"amount": 500}).to_string();
    // Input -> expected status, for each way of sending the same JSON.
    let table: &[(&str, &str, &str, u16)] = &[
        ("content-length", "application/json", &small, 200),
        ("content-length", "application/json", &large, 403),
        (
            "content-length",
            "Application/JSON; charset=utf-8",
            &large,
            403,
        ),
        (
            "content-length",
            "application/merge-patch+json",
            &large,
            403,
        ),
        ("chunked", "application/json", &small, 200),
        ("chunked", "application/json", &large, 403),
        ("chunked", "application/vnd.api+json", &large, 403),
        // Not JSON by its type: the policy decides without a body (and allows).
        ("content-length", "text/plain", &large, 200),
    ];
    for &(framing, content_type, body, expected) in table {
        let headers = [("x-api-key", key.as_str()), ("content-type", content_type)];
        let reply = if framing == "chunked" {
            // A chunk a byte long: the body arrives in pieces.
            raw_chunked(
                env.addr,
                "POST",
                "/orders/new",
                &headers,
                body.as_bytes(),
                1,
            )
            .await
        } else {
            raw_with_body(env.addr, "POST", "/orders/new", &headers, body.as_bytes()).await
        };
        assert_eq!(
            reply.status,
            expected,
            "{framing} {content_type} {body}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        if expected == 200 {
            // Forwarded whole after the policy read it.
            assert_eq!(
                reply.json()["bodyBytes"],
                body.len(),
                "{framing} {content_type}"
            );
        }
    }
    // Only the allowed requests reached the backend.
    assert_eq!(env.backend.seen().len(), 3, "{:?}", env.backend.seen());
}

/// Two types for one body (two fields, or a list in one) on a route whose policy reads JSON:
/// the policy would see `text/plain` and decide without the body while a backend reading the
/// other type parses the order. Refused; elsewhere bodies pass as before.
#[tokio::test]
async fn a_body_of_two_types_is_refused_where_a_policy_reads_bodies() {
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    let large = json!({"amount": 500}).to_string();
    for types in [
        &[
            ("content-type", "text/plain"),
            ("content-type", "application/json"),
        ][..],
        &[("content-type", "text/plain, application/json")][..],
        &[("content-type", "application/json, text/plain")][..],
    ] {
        let mut headers = vec![("x-api-key", key.as_str())];
        headers.extend_from_slice(types);
        let reply =
            raw_with_body(env.addr, "POST", "/orders/new", &headers, large.as_bytes()).await;
        assert_eq!(reply.status, 400, "{types:?}: {reply:?}");
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("one Content-Type")),
            "{types:?}: {reply:?}"
        );
    }
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
    // A route without a policy is not concerned; one type with a quoted comma is one type.
    let headers = [
        ("x-api-key", key.as_str()),
        ("content-type", "text/plain; charset=\"utf-8,x\""),
    ];
    let reply = raw_with_body(env.addr, "POST", "/orders/new", &headers, large.as_bytes()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let headers = [
        ("x-api-key", key.as_str()),
        ("content-type", "text/plain"),
        ("content-type", "application/json"),
    ];
    let reply = raw_with_body(env.addr, "POST", "/upload", &headers, large.as_bytes()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn a_body_that_says_json_but_is_not_is_a_400() {
    let env = Env::start(Options::default()).await;
    for body in [
        r#"{"amount": 500,}"#,
        r#"{"amount": 500} trailing"#,
        "\u{1}",
    ] {
        let reply = send_json(&env, Method::PUT, "/orders/1", &[], body.into()).await;
        assert_error_mentions(&reply, 400, &["JSON", "policy"]);
    }
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
}

#[tokio::test]
async fn a_json_body_larger_than_the_policy_reads_is_a_413_on_policy_routes_only() {
    let env = Env::start(Options::default()).await;
    // `gateway.policy_body_kb` is 1024 by default: this body is half as large again.
    let big = format!(r#"{{"amount": 500, "pad": "{}"}}"#, "x".repeat(1536 * 1024));
    let declared = send_json(&env, Method::POST, "/orders/new", &[], big.clone()).await;
    assert_error_mentions(&declared, 413, &["policy_body_kb", "1048576 bytes"]);
    let chunked = raw_chunked(
        env.addr,
        "POST",
        "/orders/new",
        &[
            ("x-api-key", &env.dev.key),
            ("content-type", "application/json"),
        ],
        big.as_bytes(),
        64 * 1024,
    )
    .await;
    assert_eq!(
        chunked.status,
        413,
        "{}",
        String::from_utf8_lossy(&chunked.body)
    );
    assert_eq!(chunked.json()["error"]["code"], "payload_too_large");
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
    // A route without a policy forwards the same body as it streams (up to max_body_mb).
    let forwarded = send_json(&env, Method::POST, "/upload", &[], big.clone()).await;
    assert_eq!(forwarded.json_with(200)["bodyBytes"], big.len());
}

/// Policies that never read `input.request.body` leave bodies alone: a JSON body larger than
/// `gateway.policy_body_kb` streams to the backend on a policy route, and the policy still
/// decides (on a header here).
#[tokio::test]
async fn a_json_body_streams_past_policies_that_never_read_it() {
    const HEADERS_ONLY: &str = "package policies\ntenant_acme {\n  get_header(\"X-Tenant\", input.request.headers) == \"acme\"\n}\norders_within_limit {\n  get_header(\"X-Tenant\", input.request.headers) == \"acme\"\n}\n";
    let env = Env::start(Options {
        policies: HEADERS_ONLY,
        ..Options::default()
    })
    .await;
    let big = format!(r#"{{"amount": 500, "pad": "{}"}}"#, "x".repeat(1536 * 1024));
    let as_tenant = |tenant| [("x-tenant", tenant)];
    let allowed = send_json(
        &env,
        Method::POST,
        "/orders/new",
        &as_tenant("acme"),
        big.clone(),
    )
    .await;
    assert_eq!(allowed.json_with(200)["bodyBytes"], big.len());
    let denied = send_json(&env, Method::POST, "/orders/new", &as_tenant("globex"), big).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(env.backend.seen().len(), 1, "{:?}", env.backend.seen());
}

/// Rönd's `requestFlow.preventBodyLoad` on an OpenAPI operation: the policy decides without the
/// body (an order over 100 passes a policy that would refuse it), and the body, of any size,
/// streams to the backend unread.
#[tokio::test]
async fn prevent_body_load_keeps_the_body_from_the_policy() {
    let env = Env::start(Options::default()).await;
    let over_limit = json!({"amount": 500}).to_string();
    let reply = send_json(
        &env,
        Method::POST,
        "/streamed-orders/7",
        &[],
        over_limit.clone(),
    )
    .await;
    assert_eq!(reply.json_with(200)["bodyBytes"], over_limit.len());
    let big = format!(r#"{{"amount": 500, "pad": "{}"}}"#, "x".repeat(1536 * 1024));
    let reply = send_json(&env, Method::POST, "/streamed-orders/7", &[], big.clone()).await;
    assert_eq!(reply.json_with(200)["bodyBytes"], big.len());
    // The same order on the configured route, whose policy reads the body, is refused.
    let reply = send_json(&env, Method::POST, "/orders/7", &[], over_limit).await;
    assert_eq!(reply.status, 403, "{reply:?}");
}

/// The body a policy waits for must come within the idle time: a client that sends part of it
/// and stops is a 408, and nothing is forwarded.
#[tokio::test]
async fn a_policy_body_that_stops_coming_is_a_408() {
    use std::time::Duration;
    let env = Env::start(Options {
        idle_timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let request = format!(
        "POST /orders/1 HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 40\r\nConnection: close\r\n\r\n{{\"amount\": ",
        env.dev.key
    );
    assert_stalled_body_is_a_408(env.addr, &request, Duration::from_secs(2)).await;
    assert!(!env.backend.saw_path("/orders/1"));
}

/// The idle time is for each read of a policy's body, not for all of it (nginx's
/// `client_body_timeout`): a body that comes steadily but takes longer than the idle time in
/// all is read and decided on.
#[tokio::test]
async fn a_policy_body_that_comes_slowly_but_steadily_is_decided_on() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    let env = Env::start(Options {
        idle_timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    for (amount, expected) in [(50, "200"), (500, "403")] {
        let body = format!(r#"{{"amount": {amount}, "note": "sent in five pieces"}}"#);
        let head = format!(
            "POST /orders/1 HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            env.dev.key,
            body.len()
        );
        let started = Instant::now();
        let mut conn = tokio::net::TcpStream::connect(env.addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        for piece in body.as_bytes().chunks(body.len().div_ceil(5)) {
            tokio::time::sleep(Duration::from_millis(700)).await;
            conn.write_all(piece).await.unwrap();
        }
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut answer)
            .await
            .unwrap();
        assert!(started.elapsed() > Duration::from_secs(3));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {expected}")),
            "{amount}: {answer}"
        );
    }
    assert_eq!(env.backend.seen().len(), 1, "{:?}", env.backend.seen());
}

/// A caller who may not reach the policy (not signed in where the route needs it, or refused by
/// the route's `groups` before its policy) is refused at once: the gateway neither waits for
/// nor reads its body, so a body too large, not JSON, or never sent gets the same 401 or 403.
/// A caller the checks before the policy let through still has the body read and decided on.
#[tokio::test]
async fn a_caller_refused_before_the_policy_is_refused_without_reading_the_body() {
    use std::time::{Duration, Instant};
    let env = Env::start(Options {
        idle_timeout: Duration::from_secs(4),
        ..Options::default()
    })
    .await;
    let big = format!(r#"{{"amount": 5, "pad": "{}"}}"#, "x".repeat(1536 * 1024));
    // Caller (none: anonymous), route, body -> expected status.
    let table: &[(Option<&str>, &str, &str, u16)] = &[
        (None, "/orders/1", &big, 401),
        (None, "/orders/1", "{not json", 401),
        (None, "/ops-orders/1", r#"{"amount": 5}"#, 401),
        (Some(&env.outsider.key), "/ops-orders/1", &big, 403),
        (Some(&env.outsider.key), "/ops-orders/1", "{not json", 403),
        (
            Some(&env.outsider.key),
            "/ops-orders/1",
            r#"{"amount": 5}"#,
            403,
        ),
        // Past the checks before the policy, the body is read: too large, not JSON, decided.
        (Some(&env.dev.key), "/ops-orders/1", &big, 413),
        (Some(&env.dev.key), "/ops-orders/1", "{not json", 400),
        (
            Some(&env.dev.key),
            "/ops-orders/1",
            r#"{"amount": 500}"#,
            403,
        ),
        (Some(&env.dev.key), "/ops-orders/1", r#"{"amount": 5}"#, 200),
    ];
    for &(key, path, body, expected) in table {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(key.map(|k| ("x-api-key", k)));
        let reply = raw_with_body(env.addr, "POST", path, &headers, body.as_bytes()).await;
        assert_eq!(
            reply.status,
            expected,
            "{key:?} {path} {}: {}",
            &body[..body.len().min(20)],
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(env.backend.seen().len(), 1, "{:?}", env.backend.seen());
    // A body that never comes: the refusal does not wait for it (the idle time is 4 s).
    for (key, expected) in [(None, "401"), (Some(&env.outsider.key), "403")] {
        let credential = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
        let request = format!(
            "POST /ops-orders/1 HTTP/1.1\r\nHost: x\r\n{credential}Content-Type: application/json\r\n\
             Content-Length: 40\r\nConnection: close\r\n\r\n{{\"amount\": "
        );
        let started = Instant::now();
        let mut conn = tokio::net::TcpStream::connect(env.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut conn, request.as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(&mut conn, &mut answer),
        )
        .await
        .expect("the refusal came before the idle time")
        .unwrap();
        let head = String::from_utf8_lossy(&answer[..n]);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {expected}")),
            "{key:?}: {head}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{key:?}");
    }
    assert_eq!(env.backend.seen().len(), 1, "{:?}", env.backend.seen());
}

/// A refused request's body is not read for the backend, but the connection takes (and throws
/// away) what the client still sends: a client that writes all of a large body before it
/// reads gets its 401 or 403, not a connection reset or a wait for ever.
#[tokio::test]
async fn a_client_writing_a_large_body_reads_its_refusal() {
    let env = Env::start(Options::default()).await;
    let body = vec![b'x'; 32 << 20];
    for (key, path, expected) in [
        (None, "/upload", 401),
        (Some(env.outsider.key.as_str()), "/admin/upload", 403),
    ] {
        let mut headers = vec![("content-type", "application/octet-stream")];
        headers.extend(key.map(|k| ("x-api-key", k)));
        let reply = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            raw_with_body(env.addr, "POST", path, &headers, &body),
        )
        .await
        .expect("an answer");
        assert_eq!(reply.status, expected, "{path}: {reply:?}");
    }
    assert!(env.backend.seen().is_empty(), "{:?}", env.backend.seen());
}
