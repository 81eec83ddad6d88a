//! Refusals in the audit trail under load: every one is written (in batches, off the request
//! path), or counted in an `audit.unrecorded` record when the database cannot keep up; none is
//! lost silently, and none made just before a stop is lost at all.

use std::time::Duration;

use sqlx::Connection;

use crate::support::{Env, Options};

/// Sends `count` refused requests (no credential, a route that needs one) over `connections`
/// kept-alive connections, each answered 401 without waiting on the database.
async fn refusals(env: &Env, count: usize, connections: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (http, base) = (env.http.clone(), env.base.clone());
        let share = count / connections + usize::from(c < count % connections);
        tasks.spawn(async move {
            for _ in 0..share {
                let status = http
                    .get(format!("{base}/admin/panel"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 401);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// A connection holding the server's database's write lock until it rolls back.
async fn write_lock(env: &Env) -> sqlx::sqlite::SqliteConnection {
    let mut lock = sqlx::sqlite::SqliteConnection::connect(&env.database_url())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

/// Waits until the refusals in the trail plus those counted as unrecorded reach `expected`;
/// returns both.
async fn accounted(env: &Env, expected: i64) -> (i64, i64) {
    let mut seen = (0, 0);
    for _ in 0..200 {
        let (recorded, _) = env.trail("gateway.request").await;
        let (_, unrecorded) = env.trail("audit.unrecorded").await;
        let counted = unrecorded
            .iter()
            .map(|r| r["details"]["count"].as_i64().expect("count"))
            .sum();
        seen = (recorded, counted);
        if recorded + counted >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refusals_is_written_whole() {
    let env = Env::start(Options::default()).await;
    refusals(&env, 3000, 16).await;
    let (recorded, unrecorded) = accounted(&env, 3000).await;
    assert_eq!(
        (recorded, unrecorded),
        (3000, 0),
        "every refusal written, none lost"
    );
    let (_, records) = env.trail("gateway.request").await;
    let record = &records[0];
    assert_eq!(record["actor"], "anonymous");
    assert_eq!(record["target"], "GET /admin/panel");
    assert_eq!(record["outcome"], "denied");
    assert_eq!(record["details"]["status"], 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beyond_the_queue_are_counted_in_the_trail() {
    let env = Env::start(Options {
        audit_queue: 16,
        ..Options::default()
    })
    .await;
    // Another connection holds the database's write lock: the writer waits for it (up to the
    // busy timeout) while the refusals keep coming.
    let mut lock = write_lock(&env).await;
    let started = std::time::Instant::now();
    refusals(&env, 500, 8).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refusals are answered without waiting for the database: {:?}",
        started.elapsed()
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    let (recorded, unrecorded) = accounted(&env, 500).await;
    assert_eq!(
        recorded + unrecorded,
        500,
        "each refusal is written or counted"
    );
    // At most what the writer had taken when the lock held it, and a full queue behind.
    assert!(
        (16..=32).contains(&recorded),
        "written: {recorded}, counted: {unrecorded}"
    );
    let (_, notes) = env.trail("audit.unrecorded").await;
    assert_eq!(notes[0]["actor"], "system");
    assert_eq!(notes[0]["outcome"], "failure");
    let metrics = env.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_audit_unrecorded_total"))
        .unwrap_or_else(|| panic!("no unrecorded counter in {metrics}"));
    let total: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(total >= unrecorded as f64, "{line} (counted {unrecorded})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_made_just_before_a_stop_are_in_the_trail() {
    let mut env = Env::start(Options::default()).await;
    // The database is locked while the refusals come and the stop begins: they are still
    // waiting to be written when the workers have finished.
    let mut lock = write_lock(&env).await;
    refusals(&env, 1000, 8).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    });
    env.stop().await;
    release.await.unwrap();
    let mut db = sqlx::sqlite::SqliteConnection::connect(&env.database_url())
        .await
        .unwrap();
    let (written,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_events WHERE action = 'gateway.request'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(written, 1000, "the stop waited for the trail");
}

#[tokio::test]
async fn query_strings_stay_out_of_the_trail() {
    let env = Env::start(Options::default()).await;
    // Refused on the gateway and by forward-auth, each with a token in its query string.
    let reply = env
        .get("/admin/panel?access_token=s3cret-gw&tab=1", None, &[])
        .await;
    assert_eq!(reply.status, 401);
    let reply = env
        .get(
            "/auth",
            None,
            &[
                ("x-original-uri", "/admin/panel?token=s3cret-fa"),
                ("x-original-method", "GET"),
            ],
        )
        .await;
    assert_eq!(reply.status, 401);
    let (_, records) = accounted_records(&env, 2).await;
    for record in &records {
        assert_eq!(record["target"], "GET /admin/panel", "{record}");
        assert!(!record.to_string().contains("s3cret"), "{record}");
    }
}

/// Waits until the trail holds `count` gateway records; returns them.
async fn accounted_records(env: &Env, count: i64) -> (i64, Vec<serde_json::Value>) {
    let mut seen = (0, Vec::new());
    for _ in 0..100 {
        seen = env.trail("gateway.request").await;
        if seen.0 >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.0, count, "{:?}", seen.1);
    seen
}
