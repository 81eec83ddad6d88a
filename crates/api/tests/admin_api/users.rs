//! Users of an org: create, read, update, list with filters and paging, unique emails, adding
//! existing users to other orgs, and the last access of a user.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const USERS: &str = "/api/v1/orgs/default/users";

#[tokio::test]
async fn admins_create_read_and_update_users() {
    let s = Server::start().await;

    let alice = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "Alice.Smith+ops@Example.com" }),
        )
        .await;
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    assert!(!alice_id.is_empty());
    assert_eq!(
        alice["email"], "Alice.Smith+ops@Example.com",
        "the email is kept as given"
    );
    assert_eq!(
        alice["username"], "Alice.Smith-ops",
        "derived from the local part"
    );
    assert_eq!(alice["ref"], "user:default/alice.smith-ops");
    assert_eq!(alice["name"], "");
    assert_eq!(alice["kind"], "local");
    assert_eq!(alice["consoleAccess"], true);
    assert_eq!(alice["orgRole"], "member");
    assert_eq!(alice["status"], "active");
    assert_eq!(alice["groups"], json!([]));
    assert_eq!(alice["projects"], json!([]));
    assert_eq!(alice["lastAccessAt"], json!(null));
    assert!(
        is_timestamp(&alice["createdAt"]) && is_timestamp(&alice["joinedAt"]),
        "{alice}"
    );

    let bob = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "bob@example.com", "username": "bob", "name": "Bob Builder", "kind": "sso", "consoleAccess": false, "orgRole": "auditor" }),
        )
        .await;
    assert_eq!(bob["username"], "bob");
    assert_eq!(bob["ref"], "user:default/bob");
    assert_eq!(bob["name"], "Bob Builder");
    assert_eq!(bob["kind"], "sso");
    assert_eq!(bob["consoleAccess"], false);
    assert_eq!(bob["orgRole"], "auditor");

    let ci = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "ci@example.com", "kind": "machine" }),
        )
        .await;
    assert_eq!(ci["consoleAccess"], false, "machines never get the console");
    let console = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "ci2@example.com", "kind": "machine", "consoleAccess": true }),
        )
        .await;
    assert!(console.error(422, "invalid").starts_with("consoleAccess: "));
    s.patch(
        s.admin(),
        &format!("{USERS}/{}", ci["id"].as_str().unwrap()),
        json!({ "consoleAccess": true }),
    )
    .await
    .error(422, "invalid");

    let taken = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "other@example.com", "username": "BOB" }),
        )
        .await;
    assert_contains(&taken.error(409, "conflict"), "BOB");
    // A username the client did not send (made from the address) says so.
    let derived = s
        .post(
            s.admin(),
            USERS,
            json!({ "email": "bob@elsewhere.example" }),
        )
        .await;
    assert_contains(
        &derived.error(409, "conflict"),
        "'bob' (made from the email address) is taken; send a 'username'",
    );

    let read = s
        .get(s.admin(), &format!("{USERS}/{alice_id}"))
        .await
        .json_with(200);
    assert_eq!(read, alice);
    s.get(s.admin(), &format!("{USERS}/not-a-user-id"))
        .await
        .error(404, "not_found");
    s.get(s.admin(), &format!("{USERS}/{}", uuid::Uuid::now_v7()))
        .await
        .error(404, "not_found");

    let changed = s
        .patch(
            s.admin(),
            &format!("{USERS}/{alice_id}"),
            json!({ "name": "Alice Smith", "orgRole": "admin", "consoleAccess": false, "username": "alice" }),
        )
        .await
        .json_with(200);
    assert_eq!(changed["id"], alice["id"]);
    assert_eq!(changed["name"], "Alice Smith");
    assert_eq!(changed["orgRole"], "admin");
    assert_eq!(changed["consoleAccess"], false);
    assert_eq!(changed["username"], "alice");
    assert_eq!(changed["ref"], "user:default/alice");
    assert_eq!(changed["email"], alice["email"], "unchanged fields stay");
    assert_eq!(changed["createdAt"], alice["createdAt"]);
    let read = s
        .get(s.admin(), &format!("{USERS}/{alice_id}"))
        .await
        .json_with(200);
    assert_eq!(read, changed, "the change is stored");

    let new_email = s
        .patch(
            s.admin(),
            &format!("{USERS}/{alice_id}"),
            json!({ "email": "alice@example.com" }),
        )
        .await
        .json_with(200);
    assert_eq!(new_email["email"], "alice@example.com");
    s.patch(
        s.admin(),
        &format!("{USERS}/{alice_id}"),
        json!({ "email": "BOB@example.com" }),
    )
    .await
    .error(409, "conflict");
    s.patch(
        s.admin(),
        &format!("{USERS}/{alice_id}"),
        json!({ "email": "no-at-sign" }),
    )
    .await
    .error(422, "invalid");
    s.patch(
        s.admin(),
        &format!("{USERS}/{alice_id}"),
        json!({ "username": "bob" }),
    )
    .await
    .error(409, "conflict");

    // An admin cannot demote, deactivate or remove themselves.
    let admin_id = s.admin_id().await;
    let demote = s
        .patch(
            s.admin(),
            &format!("{USERS}/{admin_id}"),
            json!({ "orgRole": "member" }),
        )
        .await;
    assert_contains(&demote.error(409, "conflict"), "yourself");
    s.post_empty(s.admin(), &format!("{USERS}/{admin_id}/deactivate"))
        .await
        .error(409, "conflict");
    s.delete(s.admin(), &format!("{USERS}/{admin_id}"))
        .await
        .error(409, "conflict");

    let list = s.get(s.admin(), USERS).await.json_with(200);
    assert_eq!(list["total"], 4);
    assert_eq!(
        (list["limit"].as_u64(), list["offset"].as_u64()),
        (Some(50), Some(0))
    );
    assert_eq!(
        strings(&list["items"], "email"),
        [
            "admin@localhost",
            "alice@example.com",
            "bob@example.com",
            "ci@example.com"
        ],
        "ordered by email"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_email_in_another_letter_case_is_refused_in_every_org() {
    let s = Server::start().await;
    s.create_user(
        s.admin(),
        "default",
        json!({ "email": "alice@example.com" }),
    )
    .await;
    s.create_org("b").await;

    for (org, email) in [
        ("default", "ALICE@example.com"),
        ("default", "Alice@Example.COM"),
        ("b", "alice@EXAMPLE.com"),
        ("b", "alice@example.com"),
    ] {
        for body in [
            json!({ "email": email }),
            json!({ "email": email, "username": "someone-else" }),
        ] {
            let r = s
                .post(
                    s.admin(),
                    &format!("/api/v1/orgs/{org}/users"),
                    body.clone(),
                )
                .await;
            let message = r.error(409, "conflict");
            assert_contains(&message, "email");
        }
    }
    // Surrounding blanks do not make an email different either.
    s.post(
        s.admin(),
        USERS,
        json!({ "email": "  alice@example.com ", "username": "x1" }),
    )
    .await
    .error(409, "conflict");
    // Nor does changing another user's email to it.
    let bob = s
        .create_user(s.admin(), "b", json!({ "email": "bob@example.com" }))
        .await;
    s.patch(
        s.admin(),
        &format!("/api/v1/orgs/b/users/{}", bob["id"].as_str().unwrap()),
        json!({ "email": "ALICE@EXAMPLE.COM" }),
    )
    .await
    .error(409, "conflict");

    let b_users = s
        .get(s.admin(), "/api/v1/orgs/b/users")
        .await
        .json_with(200);
    assert_eq!(
        strings(&b_users["items"], "email"),
        ["admin@localhost", "bob@example.com"],
        "nothing was created by the refused requests"
    );
    let default_users = s.get(s.admin(), USERS).await.json_with(200);
    assert_eq!(default_users["total"], 2);
    s.stop().await;
}

#[tokio::test]
async fn existing_users_are_added_to_other_orgs_by_email() {
    let s = Server::start().await;
    let sam = s
        .create_user(
            s.admin(),
            "default",
            json!({ "email": "Sam@example.com", "kind": "sso", "name": "Sam" }),
        )
        .await;
    s.create_org("b").await;

    let added = s
        .post(
            s.admin(),
            "/api/v1/orgs/b/members",
            json!({ "email": "sam@EXAMPLE.com", "orgRole": "auditor" }),
        )
        .await
        .json_with(201);
    assert_eq!(added["id"], sam["id"], "the same user, not a new one");
    assert_eq!(added["email"], "Sam@example.com");
    assert_eq!(added["ref"], "user:b/sam");
    assert_eq!(added["orgRole"], "auditor");
    assert_eq!(added["status"], "active");
    assert_eq!(added["kind"], "sso");
    assert!(is_timestamp(&added["joinedAt"]));

    let again = s
        .post(
            s.admin(),
            "/api/v1/orgs/b/members",
            json!({ "email": "sam@example.com" }),
        )
        .await;
    assert_contains(&again.error(409, "conflict"), "already a member");
    let unknown = s
        .post(
            s.admin(),
            "/api/v1/orgs/b/members",
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_contains(&unknown.error(404, "not_found"), "nobody@example.com");
    let bad = s
        .post(
            s.admin(),
            "/api/v1/orgs/b/members",
            json!({ "email": "nobody" }),
        )
        .await;
    assert!(bad.error(422, "invalid").starts_with("email: "));

    let b_users = s
        .get(s.admin(), "/api/v1/orgs/b/users")
        .await
        .json_with(200);
    assert_eq!(
        strings(&b_users["items"], "ref"),
        ["user:b/admin", "user:b/sam"]
    );
    // The role is per org.
    let in_default = s
        .get(
            s.admin(),
            &format!("{USERS}/{}", sam["id"].as_str().unwrap()),
        )
        .await
        .json_with(200);
    assert_eq!(in_default["orgRole"], "member");
    s.stop().await;
}

/// Creates the users of the listing test; returns the ids by email.
async fn populate(s: &Server) -> Vec<(String, String)> {
    let people = [
        json!({ "email": "u01@example.com", "name": "Ann Builder" }),
        json!({ "email": "u02@example.com", "kind": "sso" }),
        json!({ "email": "u03@example.com", "kind": "machine" }),
        json!({ "email": "u04@example.com", "kind": "machine", "username": "deploy-bot" }),
        json!({ "email": "u05@corp.test", "kind": "sso" }),
        json!({ "email": "under_score@corp.test" }),
    ];
    let mut out = Vec::new();
    for p in people {
        let u = s.create_user(s.admin(), "default", p).await;
        out.push((
            u["email"].as_str().unwrap().to_owned(),
            u["id"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

async fn emails(s: &Server, query: &str) -> (Vec<String>, Value) {
    let page = s
        .get(s.admin(), &format!("{USERS}?{query}"))
        .await
        .json_with(200);
    (strings(&page["items"], "email"), page["total"].clone())
}

#[tokio::test]
async fn users_are_listed_in_pages_and_filtered() {
    let s = Server::start().await;
    let ids = populate(&s).await;
    let id = |email: &str| ids.iter().find(|(e, _)| e == email).unwrap().1.clone();
    s.post(
        s.admin(),
        "/api/v1/orgs/default/groups",
        json!({ "name": "ops" }),
    )
    .await
    .expect(201);
    for email in ["u02@example.com", "u03@example.com"] {
        s.post(
            s.admin(),
            "/api/v1/orgs/default/groups/ops/members",
            json!({ "userId": id(email) }),
        )
        .await
        .expect(200);
    }
    s.post_empty(
        s.admin(),
        &format!("{USERS}/{}/deactivate", id("u05@corp.test")),
    )
    .await
    .expect(200);

    // Paging: total counts every match, items only the page.
    let all = [
        "admin@localhost",
        "u01@example.com",
        "u02@example.com",
        "u03@example.com",
        "u04@example.com",
        "u05@corp.test",
        "under_score@corp.test",
    ];
    let first = s
        .get(s.admin(), &format!("{USERS}?limit=2"))
        .await
        .json_with(200);
    assert_eq!(first["total"], 7);
    assert_eq!(
        (first["limit"].as_u64(), first["offset"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(strings(&first["items"], "email"), all[..2]);
    let last = s
        .get(s.admin(), &format!("{USERS}?limit=2&offset=6"))
        .await
        .json_with(200);
    assert_eq!(last["total"], 7);
    assert_eq!(last["offset"], 6);
    assert_eq!(strings(&last["items"], "email"), all[6..]);
    let beyond = s
        .get(s.admin(), &format!("{USERS}?limit=2&offset=50"))
        .await
        .json_with(200);
    assert_eq!(
        (beyond["items"].clone(), beyond["total"].clone()),
        (json!([]), json!(7))
    );
    let mut walked = Vec::new();
    for offset in (0..7).step_by(3) {
        walked.extend(emails(&s, &format!("limit=3&offset={offset}")).await.0);
    }
    assert_eq!(walked, all, "pages neither skip nor repeat");
    assert_eq!(emails(&s, "limit=500").await.0, all);

    for bad in ["limit=0", "limit=501", "limit=-1", "limit=ten", "offset=-3"] {
        let r = s.get(s.admin(), &format!("{USERS}?{bad}")).await;
        let param = bad.split('=').next().unwrap();
        assert_contains(&r.error(400, "bad_request"), param);
    }
    let unknown = s.get(s.admin(), &format!("{USERS}?colour=red")).await;
    assert_contains(&unknown.error(400, "bad_request"), "colour");
    let kind = s.get(s.admin(), &format!("{USERS}?kind=robot")).await;
    assert_contains(&kind.error(400, "bad_request"), "robot");
    s.get(s.admin(), &format!("{USERS}?status=gone"))
        .await
        .error(400, "bad_request");

    // Filters.
    assert_eq!(
        emails(&s, "email=EXAMPLE.COM").await,
        (all[1..5].iter().map(|e| e.to_string()).collect(), json!(4)),
        "email contains, ignoring case"
    );
    assert_eq!(emails(&s, "email=u03").await.0, ["u03@example.com"]);
    assert_eq!(
        emails(&s, "email=_").await.0,
        ["under_score@corp.test"],
        "'_' is a character, not a wildcard"
    );
    assert_eq!(emails(&s, "email=%25").await, (vec![], json!(0)));
    assert_eq!(
        emails(&s, "kind=machine").await.0,
        ["u03@example.com", "u04@example.com"]
    );
    assert_eq!(
        emails(&s, "kind=sso").await.0,
        ["u02@example.com", "u05@corp.test"]
    );
    assert_eq!(emails(&s, "kind=local").await.1, json!(3));
    assert_eq!(
        emails(&s, "group=ops").await.0,
        ["u02@example.com", "u03@example.com"]
    );
    assert_eq!(
        emails(&s, "group=OPS").await.0.len(),
        2,
        "group names ignore case"
    );
    assert_eq!(emails(&s, "group=nobody").await, (vec![], json!(0)));
    assert_eq!(
        emails(&s, "group=ops&kind=machine").await.0,
        ["u03@example.com"]
    );
    assert_eq!(emails(&s, "status=deactivated").await.0, ["u05@corp.test"]);
    assert_eq!(emails(&s, "status=active").await.1, json!(6));
    assert_eq!(emails(&s, "name=builder").await.0, ["u01@example.com"]);
    assert_eq!(emails(&s, "name=DEPLOY").await.0, ["u04@example.com"]);
    let filtered_page = s
        .get(
            s.admin(),
            &format!("{USERS}?email=example.com&limit=1&offset=1"),
        )
        .await
        .json_with(200);
    assert_eq!(
        filtered_page["total"], 4,
        "total counts the filtered matches"
    );
    assert_eq!(
        strings(&filtered_page["items"], "email"),
        ["u02@example.com"]
    );
    let grouped = s
        .get(s.admin(), &format!("{USERS}/{}", id("u02@example.com")))
        .await
        .json_with(200);
    assert_eq!(grouped["groups"], json!(["ops"]));
    s.stop().await;
}

/// A request whose head is still arriving when the server is told to stop is served while the
/// workers drain; the last access it records must still reach the database.
#[tokio::test]
async fn activity_of_a_request_served_during_the_stop_is_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = Server::start().await;
    let (bot_id, bot_key) = s.machine("default", "drain@example.com", "member").await;
    let keys_path = format!("{USERS}/{bot_id}/keys");
    let keys = s.get(s.admin(), &keys_path).await.json_with(200);
    assert_eq!(keys[0]["lastUsedAt"], json!(null), "never used yet");

    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /auth/reports HTTP/1.1\r\nHost: portcullis\r\n")
        .await
        .unwrap();
    // The server reads the first part before it is told to stop (an unread connection counts
    // as idle and is closed at once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = format!("x-api-key: {bot_key}\r\n\r\n");
    let client = tokio::spawn(async move {
        // Sent once the stop has begun (the restart below starts it at once).
        tokio::time::sleep(Duration::from_millis(300)).await;
        tcp.write_all(rest.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    s.restart().await;
    let answer = client.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request is answered during the drain: {answer}"
    );
    let keys = s.get(s.admin(), &keys_path).await.json_with(200);
    assert!(
        is_timestamp(&keys[0]["lastUsedAt"]),
        "the key's use during the drain was recorded: {keys}"
    );
    s.stop().await;
}

#[tokio::test]
async fn last_access_appears_after_a_key_is_used() {
    let s = Server::start().await;
    let (bot_id, bot_key) = s.machine("default", "bot@example.com", "member").await;
    let path = format!("{USERS}/{bot_id}");
    let before = s.get(s.admin(), &path).await.json_with(200);
    assert_eq!(before["lastAccessAt"], json!(null), "never used yet");
    let keys = s
        .get(s.admin(), &format!("{path}/keys"))
        .await
        .json_with(200);
    assert_eq!(keys[0]["lastUsedAt"], json!(null));

    s.get(&bot_key, "/api/v1/orgs/default").await.expect(200);
    let used = eventually(Duration::from_secs(3), || async {
        let user = s.get(s.admin(), &path).await.json_with(200);
        is_timestamp(&user["lastAccessAt"]).then_some(user)
    })
    .await
    .expect("lastAccessAt is written within 3 s of a request");
    assert!(millis(&used["lastAccessAt"]) >= millis(&before["createdAt"]));
    let key_used = eventually(Duration::from_secs(3), || async {
        let keys = s
            .get(s.admin(), &format!("{path}/keys"))
            .await
            .json_with(200);
        is_timestamp(&keys[0]["lastUsedAt"]).then_some(keys)
    })
    .await;
    assert!(key_used.is_some(), "the key's lastUsedAt is written too");
    // The admin's own requests count as well.
    let admin_id = s.admin_id().await;
    let admin = eventually(Duration::from_secs(3), || async {
        let user = s
            .get(s.admin(), &format!("{USERS}/{admin_id}"))
            .await
            .json_with(200);
        is_timestamp(&user["lastAccessAt"]).then_some(user)
    })
    .await;
    assert!(admin.is_some());
    s.stop().await;
}
