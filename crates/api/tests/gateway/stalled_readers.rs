//! Peers that stop reading. A client that asks and then reads nothing (a slow-read attack):
//! once an answer has waited `idle_timeout` for the client to take any of it, the connection is
//! closed, so the client cannot hold the connection, its task and the backend's connection for
//! as long as it likes (a download on the raw lane and on hyper's server, and answers to
//! requests pipelined without a credential). Over HTTP/2, a stream whose window the client
//! keeps shut is reset after that time, and the connection's other streams go on. A backend
//! that takes none of an upload (over HTTP/1.1, or keeping an HTTP/2 stream's window shut):
//! a 504, as a backend that does not answer.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const IDLE: Duration = Duration::from_secs(2);
/// Time for the close after the idle time, on a loaded machine.
const LEEWAY: Duration = Duration::from_secs(10);
/// The download asked for: far more than the sockets on the way can hold.
const DOWNLOAD_MB: u64 = 64;

/// A connection to `env` whose receive buffer is small, as a client that reads nothing keeps
/// it full.
async fn connect(env: &Env) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(env.addr).await.unwrap()
}

/// Reads what `conn` still has, as a client that finally reads: how many bytes came before the
/// connection ended (closed or reset), or none if it had not ended within `within`.
async fn read_the_rest(conn: &mut TcpStream, within: Duration) -> Option<u64> {
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let reading = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    };
    tokio::time::timeout(within, reading).await.ok()
}

/// Asks for a download of [`DOWNLOAD_MB`] with `request_line`, reads nothing for longer than
/// the idle time, then reads: the connection must have been closed part way.
async fn assert_unread_download_is_cut(request_line: &str) {
    let env = Env::start(Options {
        idle_timeout: IDLE,
        ..Options::default()
    })
    .await;
    let mut conn = connect(&env).await;
    let request = format!(
        "{request_line}\r\nHost: gateway.test\r\nx-api-key: {}\r\n\r\n",
        env.dev.key
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(IDLE + Duration::from_secs(3)).await;
    let got = read_the_rest(&mut conn, LEEWAY)
        .await
        .expect("the connection was not closed");
    assert!(got > 0, "{request_line}: nothing was answered");
    assert!(
        got < DOWNLOAD_MB * MIB,
        "{request_line}: all {got} bytes came: the answer waited for the client"
    );
    // The server serves the next client as before.
    let next = env.get("/big?mb=1", Some(&env.dev.key), &[]).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.text.len() as u64, MIB);
}

#[tokio::test]
async fn a_download_the_client_does_not_read_is_cut_after_the_idle_time() {
    assert_unread_download_is_cut(&format!("GET /big?mb={DOWNLOAD_MB} HTTP/1.1")).await;
}

/// HTTP/1.0 is served by hyper's server rather than the raw lane.
#[tokio::test]
async fn a_download_the_client_does_not_read_is_cut_on_the_general_server_too() {
    assert_unread_download_is_cut(&format!("GET /big?mb={DOWNLOAD_MB} HTTP/1.0")).await;
}

/// Without any credential, a client can pipeline requests and read none of the answers: the
/// connection is closed once the answers wait, and the client's next write fails, rather than
/// the connection (and its task) staying open with the server waiting to write.
#[tokio::test]
async fn pipelined_requests_whose_answers_are_not_read_end_the_connection() {
    let env = Env::start(Options {
        idle_timeout: IDLE,
        ..Options::default()
    })
    .await;
    let conn = connect(&env).await;
    let (mut reader, mut writer) = conn.into_split();
    let sending = tokio::spawn(async move {
        let request = b"GET /admin/reports HTTP/1.1\r\nHost: gateway.test\r\n\r\n".repeat(1000);
        let mut sent = 0u64;
        // Until the server stops taking them: the answers (401s of some 300 bytes each) soon
        // fill the sockets, and then the server waits to write.
        while writer.write_all(&request).await.is_ok() {
            sent += 1000;
        }
        sent
    });
    // However large the socket buffers, the writes stop within this time.
    let sent = tokio::time::timeout(IDLE + LEEWAY * 3, sending)
        .await
        .expect("the server still waits to write: the connection was never closed")
        .unwrap();
    let mut answers = Vec::new();
    let _ = tokio::time::timeout(LEEWAY, reader.read_to_end(&mut answers)).await;
    let answered = answers.windows(12).filter(|w| w == b"HTTP/1.1 401").count() as u64;
    assert!(answered > 0, "nothing was answered");
    assert!(
        answered < sent,
        "{answered} of {sent} requests were answered"
    );
}

/// Uploads `size` bytes to `/raw/*` and asserts the answer is a 504 saying the backend stopped
/// taking the request, after its write timeout ([`IDLE`], as the backend's timeout) and not
/// never.
async fn assert_upload_is_a_504(env: &Env, size: u64) {
    let started = std::time::Instant::now();
    let uploading = raw_upload(env.addr, "POST", "/raw/upload", &[], size);
    let reply = tokio::time::timeout(Duration::from_secs(30), uploading)
        .await
        .expect("no answer: the gateway still waits for the backend to read");
    assert_eq!(reply.status, 504, "{reply:?}");
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "gateway_timeout", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("stopped taking the request"), "{message}");
    assert!(started.elapsed() >= IDLE, "{:?}", started.elapsed());
}

/// A backend that accepts connections and reads nothing from them (holding them open).
async fn deaf_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

/// A backend that takes nothing of an upload for the longer of its timeout (`scripted`'s,
/// 2 s) and the idle time (2 s here) fails the exchange, as one that does not answer: without
/// it the client, its connection and the backend's would wait for ever on a backend that never
/// reads.
#[tokio::test]
async fn an_upload_the_backend_takes_none_of_is_a_504() {
    let env = Env::start(Options {
        scripted_backend: Some(deaf_backend().await),
        idle_timeout: IDLE,
        ..Options::default()
    })
    .await;
    // Far more than the sockets on the way hold, and under the body limit.
    assert_upload_is_a_504(&env, 128 * MIB).await;
}

/// Over HTTP/2 a client can read the connection and keep one stream's window shut: that stream
/// is reset (`CANCEL`) once its answer has waited the idle time on the window, while the
/// connection's other streams go on.
#[tokio::test]
async fn an_http2_stream_whose_window_the_client_keeps_shut_is_reset() {
    let env = Env::start(Options {
        idle_timeout: IDLE,
        ..Options::default()
    })
    .await;
    let tcp = TcpStream::connect(env.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .adaptive_window(false)
        .initial_stream_window_size(65_535)
        // Room for every stream's data on the connection: only the one stream's window is shut.
        .initial_connection_window_size(1 << 28)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = |path: &str| {
        hyper::Request::get(format!("http://gateway.test{path}"))
            .header("x-api-key", &env.dev.key)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let stalled = sender
        .send_request(request(&format!("/big?mb={DOWNLOAD_MB}")))
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    // Nothing of it is read, so its window stays shut; another stream is served meanwhile.
    let other = sender.send_request(request("/big?mb=1")).await.unwrap();
    assert_eq!(other.status(), 200);
    let body = other.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len() as u64, MIB);
    tokio::time::sleep(IDLE + Duration::from_secs(3)).await;
    // The stalled stream was reset: read now, it ends in an error, short of the download.
    let mut body = stalled.into_body();
    let mut got = 0u64;
    let ended = tokio::time::timeout(LEEWAY, async {
        while let Some(frame) = body.frame().await {
            got += frame?.data_ref().map_or(0, |d| d.len() as u64);
        }
        Ok::<(), hyper::Error>(())
    })
    .await
    .expect("the stalled stream still waits");
    let error = ended.expect_err("the whole answer came: the stream waited for the client");
    assert!(got < DOWNLOAD_MB * MIB, "{got}");
    // The stream was reset, not the connection closed.
    let reason = format!("{:?}", std::error::Error::source(&error));
    assert!(reason.contains("CANCEL"), "{reason}");
}

/// A client that reads an HTTP/2 answer slowly but steadily, taking far longer than the idle
/// time in all, gets the whole of it: each part waits on its window for less than the idle time.
#[tokio::test]
async fn a_slow_steady_http2_reader_gets_the_whole_answer() {
    let idle = Duration::from_secs(1);
    let env = Env::start(Options {
        idle_timeout: idle,
        ..Options::default()
    })
    .await;
    let tcp = TcpStream::connect(env.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .adaptive_window(false)
        .initial_stream_window_size(65_535)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("http://gateway.test/big?mb=1")
        .header("x-api-key", &env.dev.key)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    let started = std::time::Instant::now();
    let mut body = answer.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap_or_else(|e| panic!("cut after {got} bytes: {e:?}"));
        got += frame.data_ref().map_or(0, |d| d.len() as u64);
        // Some 400 KB/s at most: a megabyte takes more than twice the idle time.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(got, MIB);
    assert!(started.elapsed() > idle * 2, "{:?}", started.elapsed());
}

/// An HTTP/2 (h2c) backend that takes every stream and reads and answers none of them: its
/// windows stay shut once the first megabyte or so of a body has come.
async fn deaf_h2_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        // Held, unread, for ever.
                        let _request = request;
                        std::future::pending::<
                            Result<hyper::Response<Empty<bytes::Bytes>>, std::convert::Infallible>,
                        >()
                        .await
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    addr
}

/// Over HTTP/2 a backend can read its connection and keep one upload stream's window shut:
/// that upload is given up on after the longer of the backend's timeout and the idle time (2 s
/// both here), a 504 as over HTTP/1.1.
#[tokio::test]
async fn an_upload_an_http2_backend_keeps_its_window_shut_on_is_a_504() {
    let env = Env::start(Options {
        scripted_backend: Some(deaf_h2_backend().await),
        scripted_h2: true,
        idle_timeout: IDLE,
        ..Options::default()
    })
    .await;
    assert_upload_is_a_504(&env, 16 * MIB).await;
}
