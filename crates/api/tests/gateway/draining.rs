//! Stopping: a request in flight through a worker finishes; new connections are refused.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_when_the_server_stops() {
    let mut env = Env::start(Options::default()).await;
    let (base, key) = (env.base.clone(), env.dev.key.clone());
    let started = Instant::now();
    // The backend answers /draining/slow after 3 s.
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("{base}/draining/slow"))
            .header("x-api-key", key)
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.backend.saw_path("/draining/slow"),
        "the request reached the backend"
    );
    env.stop().await;
    let stopped_after = started.elapsed();
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight got its answer");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/draining/slow", "{body}");
    assert!(
        stopped_after >= Duration::from_millis(2500),
        "the stop waited for the request in flight: {stopped_after:?}"
    );
    // Stopped: the listener is closed.
    let refused = reqwest::Client::new()
        .get(format!("{}/healthz", env.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a stopped server accepts nothing: {refused:?}"
    );
}
