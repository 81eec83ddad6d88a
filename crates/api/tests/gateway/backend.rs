//! The backend behind the gateway: an axum server on `127.0.0.1:0` that answers every path with
//! what it received (method, path, query, every header with all its values, the body length),
//! (`?set-cookies` adds two `Set-Cookie` headers, one of them Portcullis's session cookie;
//! `?unauthorized` makes it a 401 with a `Basic` challenge),
//! plus `/slow` (answers after 3 s), `/big?mb=N` (streams N MiB), `/h2/ticks` (an event
//! stream: one event, then another 20 s later) and `/upload` (counts a streamed request body
//! without keeping it). It records the path of every request it serves, so a test
//! can tell that a refused request never reached it.
//!
//! `/big` needs a body produced chunk by chunk; neither an `http_body::Frame` nor a `Stream`
//! trait can be named from this crate's dependencies, so the bytes come from a raw TCP source
//! (a loop writing 64 KiB at a time) and the handler hands that connection's body on as its
//! own, still streaming.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One MiB.
pub const MIB: u64 = 1024 * 1024;

/// A running test backend.
#[derive(Clone)]
pub struct Backend {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct BackendState {
    seen: Arc<Mutex<Vec<String>>>,
    bulk: SocketAddr,
    http: reqwest::Client,
}

impl Backend {
    /// Starts a backend on a free port of the current runtime.
    pub async fn start() -> Self {
        let bulk = bulk_source().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = BackendState {
            seen: seen.clone(),
            bulk,
            http: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .route("/slow", any(slow))
            .route("/draining/slow", any(slow))
            .route("/big", get(big))
            .route("/h2/ticks", get(ticks))
            .route("/upload", any(upload))
            .fallback(echo)
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The paths (with `METHOD ` in front) of every request served so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether any request for `path` arrived.
    pub fn saw_path(&self, path: &str) -> bool {
        self.seen()
            .iter()
            .any(|s| s.split_once(' ').is_some_and(|(_, p)| p == path))
    }
}

fn record(state: &BackendState, req: &Request) {
    let line = format!("{} {}", req.method(), req.uri().path());
    state.seen.lock().unwrap().push(line);
}

/// Reads a body to its end frame by frame, keeping only the count and the names of any
/// trailers.
async fn count_body(mut body: Body) -> Result<(u64, Vec<String>), axum::Error> {
    let (mut total, mut trailers) = (0u64, Vec::new());
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
        } else if let Some(fields) = frame.trailers_ref() {
            trailers.extend(fields.keys().map(|n| n.as_str().to_owned()));
        }
    }
    Ok((total, trailers))
}

/// Puts what [`count_body`] read into an echo answer (`trailers` only when some came).
fn note_body(answer: &mut Value, read: Result<(u64, Vec<String>), axum::Error>) {
    match read {
        Ok((n, trailers)) => {
            answer["bodyBytes"] = json!(n);
            if !trailers.is_empty() {
                answer["trailers"] = json!(trailers);
            }
        }
        Err(e) => answer["bodyError"] = json!(e.to_string()),
    }
}

fn describe(req: &Request) -> Value {
    let mut headers: Map<String, Value> = Map::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Value::Array(list) = headers
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::String(value));
        }
    }
    json!({
        "method": req.method().as_str(),
        "version": format!("{:?}", req.version()),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    })
}

async fn echo(State(state): State<BackendState>, req: Request) -> Response {
    record(&state, &req);
    let mut answer = describe(&req);
    // `?set-cookies`: the answer also tries to set Portcullis's session cookie.
    let set_cookies = req.uri().query() == Some("set-cookies");
    let req_unauthorized = req.uri().query() == Some("unauthorized");
    note_body(&mut answer, count_body(req.into_body()).await);
    let mut response = Json(answer).into_response();
    // `?unauthorized`: the backend's own refusal, with its challenge.
    if req_unauthorized {
        *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Basic realm=\"backend\""),
        );
    }
    if set_cookies {
        for cookie in ["sid=chosen-by-the-backend; Path=/", "theme=dark"] {
            response
                .headers_mut()
                .append("set-cookie", cookie.parse().unwrap());
        }
    }
    response
}

async fn slow(State(state): State<BackendState>, req: Request) -> Response {
    record(&state, &req);
    tokio::time::sleep(Duration::from_secs(3)).await;
    Json(describe(&req)).into_response()
}

async fn upload(State(state): State<BackendState>, req: Request) -> Response {
    record(&state, &req);
    let mut answer = describe(&req);
    note_body(&mut answer, count_body(req.into_body()).await);
    Json(answer).into_response()
}

async fn big(State(state): State<BackendState>, req: Request) -> Response {
    record(&state, &req);
    let mb: u64 = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("mb=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    relay(&state, &format!("/?mb={mb}")).await
}

async fn ticks(State(state): State<BackendState>, req: Request) -> Response {
    record(&state, &req);
    relay(&state, "/ticks").await
}

/// The raw source's answer to `target`, streamed on as this backend's own (with its length and
/// type).
async fn relay(state: &BackendState, target: &str) -> Response {
    let source = state
        .http
        .get(format!("http://{}{target}", state.bulk))
        .send()
        .await
        .unwrap();
    let source: axum::http::Response<reqwest::Body> = source.into();
    let (parts, body) = source.into_parts();
    let mut response = Response::new(Body::new(body));
    for name in ["content-length", "content-type"] {
        if let Some(v) = parts.headers.get(name) {
            response.headers_mut().insert(name, v.clone());
        }
    }
    response
}

/// The event stream of `/ticks`: one event at once, the next 20 s later.
async fn write_ticks(conn: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    let event = |n: u32| {
        let data = format!("data: tick {n}\n\n");
        format!("{:x}\r\n{data}\r\n", data.len())
    };
    conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n{}",
            event(1)
        )
        .as_bytes(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    conn.write_all(format!("{}0\r\n\r\n", event(2)).as_bytes())
        .await
}

/// A raw HTTP/1.1 source: answers each connection with `mb` MiB written 64 KiB at a time, or
/// with the event stream of `/ticks`.
async fn bulk_source() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                if head.starts_with("GET /ticks ") {
                    let _ = write_ticks(&mut conn).await;
                    return;
                }
                let mb: u64 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|target| target.split_once("mb="))
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(1);
                let total = mb * MIB;
                let start = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                     content-length: {total}\r\nconnection: close\r\n\r\n"
                );
                if conn.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if conn.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}
