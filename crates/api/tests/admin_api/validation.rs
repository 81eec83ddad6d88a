//! Bad input: malformed JSON, wrong types and unknown fields (400, naming the field), bodies that
//! are not JSON (415), too large (413), and well-formed values that break a rule (422).

use reqwest::Method;
use serde_json::json;

use crate::support::*;

const USERS: &str = "/api/v1/orgs/default/users";

/// POSTs `raw` as `application/json` to the users endpoint.
async fn post_raw(s: &Server, raw: &str) -> Reply {
    s.send(
        s.request(Method::POST, USERS)
            .bearer_auth(s.admin())
            .header("content-type", "application/json")
            .body(raw.to_owned()),
    )
    .await
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_400_naming_the_field() {
    let s = Server::start().await;

    let broken = post_raw(&s, r#"{"email":"#).await;
    assert!(
        broken
            .error(400, "bad_request")
            .starts_with("malformed JSON")
    );
    let not_json = post_raw(&s, "email=a@example.com").await;
    assert!(
        not_json
            .error(400, "bad_request")
            .starts_with("malformed JSON")
    );
    post_raw(&s, "").await.error(400, "bad_request");
    // An array of the fields in order is not the object it would stand for, and nothing is made.
    let array = post_raw(&s, r#"["a@example.com", "alice"]"#).await;
    assert_eq!(
        array.error(400, "bad_request"),
        "invalid request body: invalid type: sequence, expected a JSON object at line 1 column 0"
    );
    let org = s
        .post(s.admin(), "/api/v1/orgs", json!(["arrays", "Array Org"]))
        .await;
    assert_contains(&org.error(400, "bad_request"), "expected a JSON object");
    s.get(s.admin(), "/api/v1/orgs/arrays")
        .await
        .error(404, "not_found");

    let wrong_type = post_raw(&s, r#"{"email": 5}"#).await;
    assert_eq!(
        wrong_type.error(400, "bad_request"),
        "invalid request body: email: invalid type: integer `5`, expected a string at line 1 column 11"
    );
    let nested = s
        .patch(s.admin(), "/api/v1/orgs/default", json!({ "name": ["a"] }))
        .await;
    assert_contains(&nested.error(400, "bad_request"), "name: invalid type");
    let flag = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "a@example.com", "consoleAccess": "yes" }),
        )
        .await;
    assert_contains(&flag.error(400, "bad_request"), "consoleAccess");

    let unknown = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "a@example.com", "nickname": "al" }),
        )
        .await;
    let message = unknown.error(400, "bad_request");
    assert_contains(&message, "unknown field `nickname`");
    let snake = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "a@example.com", "org_role": "admin" }),
        )
        .await;
    assert_contains(&snake.error(400, "bad_request"), "org_role");
    let missing = s.post(s.admin(), USERS, json!({ "name": "Al" })).await;
    assert_contains(&missing.error(400, "bad_request"), "missing field `email`");
    let kind = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "a@example.com", "kind": "robot" }),
        )
        .await;
    let message = kind.error(400, "bad_request");
    assert!(
        message.contains("kind") && message.contains("robot"),
        "{message}"
    );
    let role = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "a@example.com", "orgRole": "owner" }),
        )
        .await;
    assert_contains(&role.error(400, "bad_request"), "owner");
    s.post(s.admin(), "/api/v1/orgs", json!(["default"]))
        .await
        .error(400, "bad_request");

    // None of it created anything.
    let list = s.get(s.admin(), USERS).await.json_with(200);
    assert_eq!(list["total"], 1);
    s.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_declared_json_are_refused_with_415() {
    let s = Server::start().await;
    let body = r#"{"email":"a@example.com"}"#;
    let no_type = s
        .send(
            s.request(Method::POST, USERS)
                .bearer_auth(s.admin())
                .body(body),
        )
        .await;
    assert_contains(
        &no_type.error(415, "unsupported_media_type"),
        "application/json",
    );
    let text = s
        .send(
            s.request(Method::POST, USERS)
                .bearer_auth(s.admin())
                .header("content-type", "text/plain")
                .body(body),
        )
        .await;
    text.error(415, "unsupported_media_type");
    let form = s
        .send(
            s.request(Method::PATCH, "/api/v1/orgs/default")
                .bearer_auth(s.admin())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=x"),
        )
        .await;
    form.error(415, "unsupported_media_type");
    // A JSON type with parameters is fine.
    let charset = s
        .send(
            s.request(Method::POST, USERS)
                .bearer_auth(s.admin())
                .header("content-type", "application/json; charset=utf-8")
                .body(body),
        )
        .await;
    charset.expect(201);
    assert_eq!(s.get(s.admin(), USERS).await.json_with(200)["total"], 2);
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let s = Server::start().await;
    let huge = format!(
        r#"{{"email":"a@example.com","name":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let r = post_raw(&s, &huge).await;
    r.error(413, "payload_too_large");
    s.stop().await;
}

#[tokio::test]
async fn a_path_segment_that_is_not_text_is_refused_with_a_json_400() {
    let s = Server::start().await;
    for path in [
        "/api/v1/orgs/%C3%28",
        "/api/v1/orgs/default/users/%FF",
        "/api/v1/orgs/default/groups/%C3%28/members",
        // The Rönd-style documents' routes too.
        "/api/v1/orgs/%FF/roles",
        "/api/v1/orgs/default/bindings/%FF",
    ] {
        let message = s.get(s.admin(), path).await.error(400, "bad_request");
        assert!(message.contains("UTF-8"), "{path}: {message}");
    }
    s.stop().await;
}

#[tokio::test]
async fn values_that_break_a_rule_are_refused_with_422_naming_the_field() {
    let s = Server::start().await;
    let cases = [
        (
            json!({ "email": "a@example.com", "username": "bad name!" }),
            "username: may contain only",
        ),
        (
            json!({ "email": "a@example.com", "username": ".alice" }),
            "username: ",
        ),
        (
            json!({ "email": "a@example.com", "username": "alice-" }),
            "username: ",
        ),
        (
            json!({ "email": "a@example.com", "username": "a--b" }),
            "username: ",
        ),
        (
            json!({ "email": "a@example.com", "username": "" }),
            "username: must not be empty",
        ),
        (
            json!({ "email": "a@example.com", "username": "a".repeat(64) }),
            "username: must be at most 63",
        ),
        (json!({ "email": "not-an-email" }), "email: "),
        (json!({ "email": "a@" }), "email: "),
        (json!({ "email": "" }), "email: must not be empty"),
        (json!({ "email": "a b@example.com" }), "email: "),
        (
            json!({ "email": "a@example.com", "name": "line\nbreak" }),
            "name: ",
        ),
        (
            json!({ "email": "a@example.com", "name": "n".repeat(201) }),
            "name: ",
        ),
        // Text that displays in another order than it has, or an address with an invisible
        // character in it: either reads as something it is not.
        (
            json!({ "email": "a@example.com", "name": "evil\u{202E}gnp.exe" }),
            "name: must not contain bidirectional",
        ),
        (
            json!({ "email": "adm\u{200B}in@example.com" }),
            "email: must not contain invisible characters",
        ),
    ];
    for (body, prefix) in cases {
        let r = s.post(s.admin(), USERS, body.clone()).await;
        let message = r.error(422, "invalid");
        assert!(message.starts_with(prefix), "{body}: {message}");
    }
    // 63 characters is fine.
    let long = "a".repeat(63);
    let ok = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "a@example.com", "username": long }),
        )
        .await;
    assert_eq!(ok["username"], long);
    assert_eq!(s.get(s.admin(), USERS).await.json_with(200)["total"], 2);

    let project = s
        .post(
            s.admin(),
            "/api/v1/orgs/default/projects",
            json!({ "name": "p", "description": "a\u{7}b" }),
        )
        .await;
    assert!(project.error(422, "invalid").starts_with("description: "));
    // An org's name must say something, when it is made and when it is changed.
    for name in ["", "   "] {
        let made = s
            .post(
                s.admin(),
                "/api/v1/orgs",
                json!({ "slug": "named", "name": name }),
            )
            .await;
        assert!(
            made.error(422, "invalid")
                .starts_with("name: must not be empty")
        );
        let renamed = s
            .patch(s.admin(), "/api/v1/orgs/default", json!({ "name": name }))
            .await;
        assert!(
            renamed
                .error(422, "invalid")
                .starts_with("name: must not be empty")
        );
    }
    s.stop().await;
}
