//! Logins per second through `POST /oauth/token` (password grant, argon2id verification,
//! session and refresh token written to SQLite, token signed), with as many concurrent clients
//! as cores. The reference measured in the same run: bare argon2id verifications per second on
//! the same number of threads, the ceiling of any login with OWASP's parameters. Run:
//! `cargo bench -p portcullis-api --bench logins`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(8);

#[tokio::main]
async fn main() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let dir = tempfile::tempdir().expect("tempdir");
    let admin_key = "bench-admin-key-0123456789abcdefghijklmnop".to_owned();
    let running = portcullis_api::start(portcullis_api::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: format!("sqlite://{}/bench.db", dir.path().display()),
        admin_email: "admin@example.com".into(),
        admin_api_key: Some(admin_key.clone()),
        activity_flush_interval: Duration::from_secs(1),
        tls: None,
        gateway: Default::default(),
        rbac: Default::default(),
        auth: portcullis_api::AuthSettings {
            data_dir: Some(dir.path().to_owned()),
            login_attempts_per_minute: 1_000_000,
            ..Default::default()
        },
    })
    .await
    .expect("server");
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{base}/api/v1/orgs/default/users"))
        .header("x-api-key", &admin_key)
        .json(&serde_json::json!({"email": "bench@example.com"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let temporary = created["temporaryPassword"]
        .as_str()
        .expect("temp")
        .to_owned();
    let tokens: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": temporary}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = tokens["accessToken"].as_str().expect("token").to_owned();
    let password = "a long enough bench password";
    let changed = http
        .post(format!("{base}/api/v1/me/password"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"currentPassword": temporary, "newPassword": password}))
        .send()
        .await
        .expect("change");
    assert_eq!(changed.status(), 204);

    // Reference: bare argon2id verifications on `threads` threads.
    let phc = portcullis_authn::password::hash(password).expect("hash");
    let verified = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (phc, verified) = (phc.clone(), verified.clone());
            std::thread::spawn(move || {
                while start.elapsed() < RUN {
                    assert!(portcullis_authn::password::verify(&phc, password));
                    verified.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("thread");
    }
    let reference = verified.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();

    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let (http, base, done) = (http.clone(), base.clone(), done.clone());
            tokio::spawn(async move {
                while start.elapsed() < RUN {
                    let r = http
                        .post(format!("{base}/oauth/token"))
                        .json(&serde_json::json!({"email": "bench@example.com", "password": password}))
                        .send()
                        .await
                        .expect("login");
                    assert_eq!(r.status(), 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    let logins = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!("threads/clients: {threads}");
    println!("argon2id verifications/s (reference): {reference:.1}");
    println!("logins/s through POST /oauth/token:   {logins:.1}");
    println!(
        "ratio logins / bare verifications:     {:.2}",
        logins / reference
    );
    running.shutdown().await;
}
