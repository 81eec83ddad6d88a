//! User statistics (`/api/licensed-users-info/…`): how many users have used Portcullis, and
//! who, as JSON or CSV; only for policy administrators.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

const QUANTITY: &str = "/api/licensed-users-info/users/quantity";
const USERS: &str = "/api/licensed-users-info/users";

/// Whether `text` is an HTTP date as the reference writes `lastTimeLogin`:
/// `Thu, 22 Aug 2024 16:27:41 GMT`.
fn is_http_date(text: &str) -> bool {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split(' ').collect();
    parts.len() == 6
        && parts[0]
            .strip_suffix(',')
            .is_some_and(|d| days.contains(&d))
        && parts[1].len() == 2
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && months.contains(&parts[2])
        && parts[3].len() == 4
        && parts[3].bytes().all(|b| b.is_ascii_digit())
        && parts[4].len() == 8
        && parts[4].bytes().enumerate().all(|(i, b)| {
            if i == 2 || i == 5 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        })
        && parts[5] == "GMT"
}

/// Polls the quantity until it is `want`.
async fn wait_for_quantity(s: &Server, want: &str) -> Value {
    let found = eventually(Duration::from_secs(10), || async {
        let body = s.get(s.admin(), QUANTITY).await.json_with(200);
        (body["quantity"] == want).then_some(body)
    })
    .await;
    found.unwrap_or_else(|| panic!("the quantity never became {want}"))
}

#[tokio::test]
async fn user_statistics_count_and_list_users_who_used_portcullis() {
    let s = Server::start().await;
    // The admin's own requests count it.
    assert_eq!(wait_for_quantity(&s, "1").await, json!({ "quantity": "1" }));

    // A machine user with a display name that needs quoting in CSV.
    let bot = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "bot@example.com", "kind": "machine", "name": "Bot, Build" }),
        )
        .await;
    let bot_id = bot["id"].as_str().unwrap().to_owned();
    let key = s.create_key_for(s.admin(), "default", &bot_id, "ci").await;
    let bot_key = key["key"].as_str().unwrap().to_owned();
    // Users who never called are not counted.
    s.machine("default", "idle@example.com", "member").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.get(s.admin(), QUANTITY).await.json_with(200),
        json!({ "quantity": "1" })
    );

    // Once the bot calls (even a call it may not make), it is counted.
    s.get(&bot_key, QUANTITY).await.expect(403);
    assert_eq!(wait_for_quantity(&s, "2").await, json!({ "quantity": "2" }));

    let list = s.get(s.admin(), USERS).await.json_with(200);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["displayName", "email", "lastTimeLogin", "userEntityRef"],
            "{item}"
        );
        assert!(
            is_http_date(item["lastTimeLogin"].as_str().unwrap()),
            "{item}"
        );
    }
    assert_eq!(items[0]["userEntityRef"], "user:default/admin");
    assert_eq!(items[0]["email"], ADMIN_EMAIL);
    assert!(!items[0]["displayName"].as_str().unwrap().is_empty());
    assert_eq!(items[1]["userEntityRef"], "user:default/bot");
    assert_eq!(items[1]["email"], "bot@example.com");
    assert_eq!(items[1]["displayName"], "Bot, Build");

    // CSV, asked for with Accept or (as in the seed's example) with Content-Type.
    for header in ["accept", "content-type"] {
        let r = s
            .send(
                s.request(Method::GET, USERS)
                    .bearer_auth(s.admin())
                    .header(header, "text/csv"),
            )
            .await;
        r.expect(200);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/csv")),
            "{:?}",
            r.headers
        );
        let lines: Vec<&str> = r.text.lines().collect();
        assert_eq!(
            lines[0], "userEntityRef,displayName,email,lastTimeLogin",
            "{}",
            r.text
        );
        assert_eq!(lines.len(), 3, "{}", r.text);
        let admin_prefix = format!(
            "user:default/admin,{},{ADMIN_EMAIL},\"",
            items[0]["displayName"].as_str().unwrap()
        );
        assert!(lines[1].starts_with(&admin_prefix), "{}", r.text);
        let bot_line = format!(
            "user:default/bot,\"Bot, Build\",bot@example.com,\"{}\"",
            items[1]["lastTimeLogin"].as_str().unwrap()
        );
        // The bot has not called since the JSON list was read: the same instant.
        assert_eq!(lines[2], bot_line, "{}", r.text);
    }
    // JSON when JSON is asked for.
    let r = s
        .send(
            s.request(Method::GET, USERS)
                .bearer_auth(s.admin())
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(r.json_with(200).as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn user_statistics_need_a_policy_administrator() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    for path in [QUANTITY, USERS] {
        let message = backstage(
            &s.get(&bot, path).await,
            403,
            "NotAllowedError",
            "GET",
            path,
        );
        assert_contains(&message, "policy.entity.read");
    }
    let r = s
        .send(
            s.request(Method::GET, USERS)
                .bearer_auth(&bot)
                .header("accept", "text/csv"),
        )
        .await;
    backstage(&r, 403, "NotAllowedError", "GET", USERS);

    // Through a role holding policy-entity read, they become readable.
    create_role(&s, s.admin(), "role:default/stats", &["user:default/bot"]).await;
    add_policy(&s, "role:default/stats", "policy-entity", "read", "allow").await;
    let quantity = s.get(&bot, QUANTITY).await.json_with(200);
    assert!(quantity["quantity"].as_str().is_some(), "{quantity}");
    s.get(&bot, USERS).await.expect(200);
}
