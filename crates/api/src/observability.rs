//! Metrics: the Prometheus recorder and per-request counters and latencies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The upper bounds (seconds) of the latency histograms' buckets: from half a millisecond (a
/// gateway's own cost) to a minute (the longest backend timeout people set). Buckets rather
/// than the exporter's default summaries: Prometheus can add buckets up across instances and
/// compute any quantile from them, and folding a sample into a bucket costs a comparison or
/// two where a summary's sketch costs far more.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The process-wide recorder (installed once; several servers in one test process share it).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Fails only for an empty list; the exporter's summaries are then the fallback.
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histogram samples pile up until drained: without this, a server nobody scrapes
            // would grow by every request's latency sample forever.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start the metrics upkeep thread");
            }
            // Fails only when another recorder is installed; ours then renders nothing, which
            // /metrics shows rather than crashing the server.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Counts requests and their latency by method, route template and status.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("portcullis_http_requests_total", &labels).increment(1);
    metrics::histogram!("portcullis_http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}

/// The metrics label of a request method: the standard methods by name, any other `OTHER`.
/// A client may send any token as its method; labelling by it would let anyone create new
/// series (memory in the server and in Prometheus) without limit.
fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

/// The request-id header, kept from the client when usable or generated.
pub const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// A new request id: a UUID (version 8, RFC 9562) made of a random per-process prefix and a
/// counter, so that no request pays for a random-number syscall.
pub fn new_request_id() -> HeaderValue {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    // A counter per thread, numbered from the thread's own range (bits 46 to 61; the top two
    // carry the UUID variant), so that threads never write one shared counter.
    thread_local! {
        static NEXT: std::cell::Cell<u64> = std::cell::Cell::new(
            THREADS.fetch_add(1, Ordering::Relaxed) << 46,
        );
    }
    let n = NEXT.with(|next| {
        let n = next.get();
        next.set(n.wrapping_add(1));
        n
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // The first half (with the version) is the same for every id of the process: formatted
    // once. The second half is the counter, with the variant bits.
    static HEAD: OnceLock<[u8; 19]> = OnceLock::new();
    let head = HEAD.get_or_init(|| {
        let prefix = portcullis_authn::random::random_bytes::<8>()
            .map(u64::from_le_bytes)
            .unwrap_or_else(|_| {
                // Without entropy, ids stay unique within the process; the time keeps them
                // apart across restarts.
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            });
        let mut bytes = prefix.to_be_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
        let mut text = [b'-'; 19];
        for (i, at) in [0, 2, 4, 6, 9, 11, 14, 16].into_iter().enumerate() {
            text[at] = HEX[(bytes[i] >> 4) as usize];
            text[at + 1] = HEX[(bytes[i] & 15) as usize];
        }
        text
    });
    let mut tail = n.to_be_bytes();
    tail[0] = (tail[0] & 0x3f) | 0x80; // variant RFC 9562
    let mut out = [b'-'; 36];
    out[..19].copy_from_slice(head);
    for (i, at) in [19, 21, 24, 26, 28, 30, 32, 34].into_iter().enumerate() {
        out[at] = HEX[(tail[i] >> 4) as usize];
        out[at + 1] = HEX[(tail[i] & 15) as usize];
    }
    // Ids are cut from a per-thread buffer: a reference count instead of an allocation each.
    thread_local! {
        static ARENA: std::cell::RefCell<bytes::BytesMut> =
            std::cell::RefCell::new(bytes::BytesMut::new());
    }
    ARENA
        .with(|arena| {
            let mut arena = arena.borrow_mut();
            if arena.capacity() - arena.len() < out.len() {
                *arena = bytes::BytesMut::with_capacity(out.len() * 128);
            }
            arena.extend_from_slice(&out);
            HeaderValue::from_maybe_shared(arena.split().freeze())
        })
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request's own id when it is usable (printable, at most 128 bytes), else a new one.
pub fn request_id_of(headers: &axum::http::HeaderMap) -> HeaderValue {
    match headers.get(REQUEST_ID) {
        Some(v)
            if !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic) =>
        {
            v.clone()
        }
        _ => new_request_id(),
    }
}

/// Generates request ids for the control plane's layers (the same form as the gateway's).
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestId;

impl tower_http::request_id::MakeRequestId for MakeRequestId {
    fn make_request_id<B>(
        &mut self,
        _request: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        Some(tower_http::request_id::RequestId::new(new_request_id()))
    }
}

/// Counts one gateway decision by result.
pub fn gateway_decision(result: &'static str) {
    // Results are a handful of constants: the handles are registered once each, and read
    // without a lock.
    type Handles = HashMap<&'static str, metrics::Counter, foldhash::fast::RandomState>;
    static HANDLES: LazyLock<ArcSwap<Handles>> = LazyLock::new(Default::default);
    if let Some(c) = HANDLES.load().get(result) {
        c.increment(1);
        return;
    }
    let counter = metrics::counter!("portcullis_gateway_decisions_total", "result" => result);
    counter.increment(1);
    HANDLES.rcu(|map| {
        let mut map = Handles::clone(map);
        map.insert(result, counter.clone());
        map
    });
}

/// The metric handles of one route, backend and status.
#[derive(Clone)]
struct RequestHandles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Handles by route label, backend label and status: labels are formatted and registered once
/// per combination (bounded by the configuration), not once per request; requests read the
/// table without a lock, and a new combination replaces it.
type HandleTable = HashMap<String, HashMap<String, HashMap<u16, RequestHandles>>>;

static REQUEST_HANDLES: LazyLock<ArcSwap<HandleTable>> = LazyLock::new(Default::default);

/// More combinations than this are counted without caching their handles.
const MAX_HANDLE_SETS: usize = 4096;
/// Combinations cached so far.
static HANDLE_SETS: AtomicU64 = AtomicU64::new(0);

/// A route label, backend label and status with their handles, kept at hand by a thread.
type RecentHandles = (Box<str>, Box<str>, u16, RequestHandles);

/// Combinations each thread keeps at hand.
const RECENT_PER_THREAD: usize = 8;

/// Counts one gateway request and records its latency, by route template and backend.
pub fn gateway_request(route: Option<&str>, backend: Option<&str>, status: u16, elapsed: Duration) {
    let (route, backend) = (route.unwrap_or("(none)"), backend.unwrap_or("(none)"));
    let seconds = elapsed.as_secs_f64();
    // The few combinations a thread served last, compared by value: cheaper than hashing
    // three keys into the shared table.
    thread_local! {
        static RECENT: std::cell::RefCell<Vec<RecentHandles>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let recent = RECENT.with(|recent| {
        recent
            .borrow()
            .iter()
            .find(|(r, b, s, _)| *s == status && **r == *route && **b == *backend)
            .map(|(.., h)| {
                h.requests.increment(1);
                h.duration.record(seconds);
            })
            .is_some()
    });
    if recent {
        return;
    }
    let table = REQUEST_HANDLES.load();
    if let Some(h) = table
        .get(route)
        .and_then(|b| b.get(backend))
        .and_then(|s| s.get(&status))
    {
        h.requests.increment(1);
        h.duration.record(seconds);
        RECENT.with(|recent| {
            let mut recent = recent.borrow_mut();
            if recent.len() >= RECENT_PER_THREAD {
                recent.remove(0);
            }
            recent.push((route.into(), backend.into(), status, h.clone()));
        });
        return;
    }
    let h = RequestHandles {
        requests: metrics::counter!("portcullis_gateway_requests_total", "route" => route.to_owned(), "backend" => backend.to_owned(), "status" => status.to_string()),
        duration: metrics::histogram!("portcullis_gateway_request_duration_seconds", "route" => route.to_owned(), "backend" => backend.to_owned()),
    };
    h.requests.increment(1);
    h.duration.record(seconds);
    if HANDLE_SETS.fetch_add(1, Ordering::Relaxed) < MAX_HANDLE_SETS as u64 {
        REQUEST_HANDLES.rcu(|table| {
            let mut table = HandleTable::clone(table);
            table
                .entry(route.to_owned())
                .or_default()
                .entry(backend.to_owned())
                .or_default()
                .insert(status, h.clone());
            table
        });
    }
}

/// Counts the gateway's websockets: `portcullis_gateway_websockets_open` by backend, and
/// `portcullis_gateway_websockets_closed_total` by backend and how each ended (`reason`).
/// Opened and closed far more rarely than requests are made: the handles are looked up each
/// time.
pub struct WebsocketMetrics;

impl portcullis_gateway::UpgradeEvents for WebsocketMetrics {
    fn opened(&self, backend: &str) {
        metrics::gauge!("portcullis_gateway_websockets_open", "backend" => backend.to_owned())
            .increment(1.0);
    }

    fn ended(&self, backend: &str, how: portcullis_gateway::UpgradedEnd) {
        metrics::gauge!("portcullis_gateway_websockets_open", "backend" => backend.to_owned())
            .decrement(1.0);
        metrics::counter!(
            "portcullis_gateway_websockets_closed_total",
            "backend" => backend.to_owned(),
            "reason" => how.as_str()
        )
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        use axum::http::Method;
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), m);
        }
        for m in ["get", "PROPFIND", "XQZ1", "BREW"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "OTHER"
            );
        }
    }

    #[test]
    fn request_ids_are_distinct_version_8_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 36, "{text}");
            let parts: Vec<&str> = text.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('8'), "version 8: {text}");
            assert!(
                matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
                "variant: {text}"
            );
        }
    }
}
