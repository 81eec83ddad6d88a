//! Two replicas on one PostgreSQL database: a revocation made through one is refused by the
//! other within a measured bound. Needs `PORTCULLIS_TEST_POSTGRES_URL` (required when `CI=true`).

use std::time::{Duration, Instant};

use portcullis_api::ServerConfig;
use serde_json::{Value, json};
use sqlx::Connection;

async fn fresh_database() -> Option<(String, String, String)> {
    let Ok(base) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PORTCULLIS_TEST_POSTGRES_URL must be set in CI");
        }
        eprintln!("skipping the replica test: PORTCULLIS_TEST_POSTGRES_URL is not set");
        return None;
    };
    let name = format!("portcullis_replicas_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some((format!("{prefix}/{name}"), base, name))
}

/// Drops the test's database `name` (made by [`fresh_database`]) through `base`.
async fn drop_database(base: &str, name: &str) {
    let mut admin_conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin_conn)
    .await
    .ok();
}

fn config(url: &str) -> ServerConfig {
    config_with(
        url,
        portcullis_model::Clock::system(),
        Default::default(),
        "",
    )
}

/// [`config`] with a clock, gateway settings and route rules (YAML) of the test's choosing.
fn config_with(
    url: &str,
    clock: portcullis_model::Clock,
    gateway: portcullis_api::gateway::GatewaySettings,
    routes: &str,
) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: url.to_owned(),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some("replica-test-admin-key-0123456789abcdef".into()),
        activity_flush_interval: Duration::from_secs(1),
        tls: None,
        gateway,
        // Replicas of one database share the secret key that seals the signing keys, and the
        // public URL that issues their tokens.
        auth: portcullis_api::AuthSettings {
            secret_key: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
            public_url: Some("http://portcullis.test".into()),
            clock,
            ..Default::default()
        },
        rbac: portcullis_api::RbacSettings {
            routes: if routes.is_empty() {
                Default::default()
            } else {
                yaml_serde::from_str(routes).unwrap()
            },
            ..Default::default()
        },
    }
}

/// Polls `url` with `key` until the status is `want`; returns how long that took.
async fn until_status(http: &reqwest::Client, url: &str, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let status = http
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica B still answers {status}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn revocations_reach_the_other_replica() {
    let Some((url, base, name)) = fresh_database().await else {
        return;
    };
    let a = portcullis_api::start(config(&url)).await.unwrap();
    let b = portcullis_api::start(config(&url)).await.unwrap();
    let admin = "replica-test-admin-key-0123456789abcdef";
    let http = reqwest::Client::new();
    let on_a = |path: &str| format!("http://{}{path}", a.addr);
    let on_b = |path: &str| format!("http://{}{path}", b.addr);

    // A machine user with a key, both made through replica A.
    let bot: Value = http
        .post(on_a("/api/v1/orgs/default/users"))
        .bearer_auth(admin)
        .json(&json!({"email": "ci@example.com", "kind": "machine", "orgRole": "auditor"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = bot["id"].as_str().unwrap().to_owned();
    let created: Value = http
        .post(on_a(&format!("/api/v1/orgs/default/users/{id}/keys")))
        .bearer_auth(admin)
        .json(&json!({"name": "jenkins"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let users_on_b = on_b("/api/v1/orgs/default/users");

    let appear = until_status(&http, &users_on_b, &key, 200).await;

    let deactivated = http
        .post(on_a(&format!("/api/v1/orgs/default/users/{id}/deactivate")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), 200);
    let deactivation = until_status(&http, &users_on_b, &key, 403).await;

    let reactivated = http
        .post(on_a(&format!("/api/v1/orgs/default/users/{id}/reactivate")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(reactivated.status(), 200);
    until_status(&http, &users_on_b, &key, 200).await;

    let key_id = created["id"].as_str().unwrap();
    let deleted = http
        .delete(on_a(&format!(
            "/api/v1/orgs/default/users/{id}/keys/{key_id}"
        )))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let deletion = until_status(&http, &users_on_b, &key, 401).await;

    eprintln!(
        "replica B saw: new key after {appear:?}, deactivation after {deactivation:?}, key deletion after {deletion:?}"
    );
    for (what, took) in [
        ("new key", appear),
        ("deactivation", deactivation),
        ("key deletion", deletion),
    ] {
        assert!(
            took < Duration::from_secs(2),
            "{what} took {took:?} to reach replica B"
        );
    }

    // RBAC: a role and a policy made through A decide on B.
    let check_on_b = || async {
        let body = json!({"items": [{"principal": "user:default/ci", "permission": {"type": "basic", "name": "kubernetes.proxy", "attributes": {}}}]});
        let answer: Value = http
            .post(on_b("/api/v1/check"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["items"][0]["result"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(check_on_b().await, "DENY");
    let role = http
        .post(on_a("/api/permission/roles"))
        .bearer_auth(admin)
        .json(&json!({"name": "role:default/proxy", "memberReferences": ["user:default/ci"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(role.status(), 201);
    let policy = http
        .post(on_a("/api/permission/policies"))
        .bearer_auth(admin)
        .json(&json!([{"entityReference": "role:default/proxy", "permission": "kubernetes.proxy", "policy": "use", "effect": "allow"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), 201);
    let started = Instant::now();
    while check_on_b().await != "ALLOW" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the policy did not reach replica B"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "replica B allowed by the new policy after {:?}",
        started.elapsed()
    );

    // Sessions: a local user signs in through A; the token works on B at once (B reads the
    // session it has not seen), and a logout through A is refused by B.
    let token = signed_in(&http, &on_a(""), admin, "ana@example.com").await;
    let me_on_b = on_b("/api/v1/me");
    let seen = until_status(&http, &me_on_b, &token, 200).await;
    let out = http
        .post(on_a("/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let revoked = until_status(&http, &me_on_b, &token, 401).await;
    eprintln!("replica B: session usable after {seen:?}, logout refused after {revoked:?}");
    assert!(
        revoked < Duration::from_secs(2),
        "logout took {revoked:?} to reach replica B"
    );

    a.shutdown().await;
    b.shutdown().await;
    drop_database(&base, &name).await;
}

/// A new local user `email` of the default org, made through the server at `base` by the
/// admin, signed in past its first password change: an access token of an active session.
async fn signed_in(http: &reqwest::Client, base: &str, admin: &str, email: &str) -> String {
    let created: Value = http
        .post(format!("{base}/api/v1/orgs/default/users"))
        .bearer_auth(admin)
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let temporary = created["temporaryPassword"].as_str().unwrap().to_owned();
    let login = |password: &str| {
        let request = http
            .post(format!("{base}/oauth/token"))
            .json(&json!({ "email": email, "password": password }));
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["accessToken"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = login(&temporary).await;
    let changed = http
        .post(format!("{base}/api/v1/me/password"))
        .bearer_auth(&first)
        .json(&json!({"currentPassword": temporary, "newPassword": "replicas share sessions"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    login("replicas share sessions").await
}

/// Whether the websocket `ws` echoes a message within `wait` (false: it was closed).
async fn echoes(ws: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 64];
    if ws.write_all(b"ping").await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(wait, ws.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// A backend that switches any request to websocket and echoes what it then receives.
async fn websocket_echo() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let switched = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if conn.write_all(switched).await.is_err() {
                    return;
                }
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A websocket held open on replica A by a session whose requests go to replica B stays open
/// past the org's idle logout as A alone knows it (A reads the session from the store before it
/// ends the connection), and is closed once the session is idle for both.
#[tokio::test]
async fn a_websocket_lives_while_its_session_is_used_on_the_other_replica() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((url, base, name)) = fresh_database().await else {
        return;
    };
    let echo = websocket_echo().await;
    let gateway = || portcullis_api::gateway::GatewaySettings {
        backends: vec![portcullis_gateway::Backend::new(
            "echo",
            format!("http://{echo}").parse().unwrap(),
            Duration::from_secs(5),
        )],
        ..Default::default()
    };
    let routes = "- path: /ws/*\n  groups: \"true\"\n  backend: echo\n";
    let clock = portcullis_model::Clock::adjustable();
    let a = portcullis_api::start(config_with(&url, clock.clone(), gateway(), routes))
        .await
        .unwrap();
    let b = portcullis_api::start(config_with(&url, clock.clone(), gateway(), routes))
        .await
        .unwrap();
    let admin = "replica-test-admin-key-0123456789abcdef";
    let http = reqwest::Client::new();
    let on_a = |path: &str| format!("http://{}{path}", a.addr);
    let on_b = |path: &str| format!("http://{}{path}", b.addr);
    // Idle logout after a minute, set before the session opens.
    let set = http
        .patch(on_a("/api/v1/orgs/default"))
        .bearer_auth(admin)
        .json(&json!({"settings": {"idleLogout": {"enabled": true, "minutes": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let token = signed_in(&http, &on_a(""), admin, "bea@example.com").await;

    let mut ws = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    let handshake = format!(
        "GET /ws/echo HTTP/1.1\r\nHost: portcullis.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    ws.write_all(handshake.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = ws.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the switch");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(echoes(&mut ws, Duration::from_secs(5)).await);

    // 40 s on, a request on B (B writes the session's activity to the store within a second).
    clock.advance(Duration::from_secs(40));
    let me = http
        .get(on_b("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // 70 s on: idle on A by what A saw, 30 s since the request on B. A asks the store.
    clock.advance(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        echoes(&mut ws, Duration::from_secs(2)).await,
        "the websocket was closed while its session was in use on replica B"
    );
    // Over a minute since the last request anywhere: closed.
    clock.advance(Duration::from_secs(40));
    let mut closed = false;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !echoes(&mut ws, Duration::from_millis(500)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the websocket outlived its idle session");
    let refused = http
        .get(on_a("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    a.shutdown().await;
    b.shutdown().await;
    drop_database(&base, &name).await;
}
