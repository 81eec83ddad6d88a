//! 100 MB through the gateway each way without buffering it. The test, the server and the
//! backend share this process, so its resident set shows any copy held in memory: the peak
//! (`VmHWM`, reset before the transfer) may grow by far less than the 100 MB moved.

use crate::support::*;

const TOTAL_MB: u64 = 100;
/// Growth of the peak resident set allowed while moving `TOTAL_MB` (other tests run beside).
const ALLOWED_GROWTH: u64 = 50 * MIB;

/// The two transfers measure the same process's peak: one at a time, so that neither counts
/// the other's buffers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn peak_growth_since(before: (u64, u64), reset: bool) -> u64 {
    let (_, peak) = rss();
    // After a reset the peak started at the resident set of that moment.
    let base = if reset { before.0 } else { before.1 };
    peak.saturating_sub(base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_download_streams_through_with_flat_memory() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = Env::start(Options::default()).await;
    // Warm up connections and buffers before measuring.
    let warm = env.get("/big?mb=1", Some(&env.dev.key), &[]).await;
    assert_eq!(warm.status, 200);
    assert_eq!(warm.text.len() as u64, MIB);

    let reset = reset_peak_rss();
    let before = rss();
    let mut resp = env
        .request(reqwest::Method::GET, &format!("/big?mb={TOTAL_MB}"))
        .header("x-api-key", &env.dev.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some((TOTAL_MB * MIB).to_string().as_str())
    );
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        assert!(chunk.iter().all(|&b| b == b'x'));
        received += chunk.len() as u64;
    }
    let growth = peak_growth_since(before, reset);
    eprintln!(
        "download: peak RSS grew by {} KiB (reset: {reset})",
        growth / 1024
    );
    assert_eq!(received, TOTAL_MB * MIB);
    assert!(
        growth < ALLOWED_GROWTH,
        "the peak resident set grew by {} MiB while {TOTAL_MB} MiB streamed through",
        growth / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_streams_through_with_flat_memory() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = Env::start(Options::default()).await;
    let key = env.dev.key.clone();
    let warm = raw_upload(env.addr, "PUT", "/upload", &[("x-api-key", &key)], MIB).await;
    assert_eq!(warm.status, 200, "{warm:?}");

    let reset = reset_peak_rss();
    let before = rss();
    let reply = raw_upload(
        env.addr,
        "POST",
        "/upload",
        &[
            ("x-api-key", &key),
            ("content-type", "application/octet-stream"),
        ],
        TOTAL_MB * MIB,
    )
    .await;
    let growth = peak_growth_since(before, reset);
    eprintln!(
        "upload: peak RSS grew by {} KiB (reset: {reset})",
        growth / 1024
    );
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    let echo = Echo(reply.json());
    assert_eq!(echo.0["bodyBytes"], TOTAL_MB * MIB, "{:?}", echo.0);
    assert_eq!(echo.0["method"], "POST");
    assert!(
        growth < ALLOWED_GROWTH,
        "the peak resident set grew by {} MiB while {TOTAL_MB} MiB streamed through",
        growth / MIB
    );
}
