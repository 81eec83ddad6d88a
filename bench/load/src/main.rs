//! `portcullis-load URL RATE SECONDS CONNECTIONS [HEADER...]`: sends GET requests at RATE per
//! second over CONNECTIONS keep-alive connections for SECONDS and prints the latency
//! percentiles, measured from when each request was due (open loop: coordinated omission does
//! not hide a stall). Prints one line: `sent=… ok=… errors=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…`.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

struct Target {
    host: String,
    request: Vec<u8>,
}

fn parse(args: &[String]) -> Result<(Target, u64, u64, usize), String> {
    let usage = "usage: portcullis-load URL RATE SECONDS CONNECTIONS ['Name: value' ...]";
    let [url, rate, seconds, connections, headers @ ..] = args else {
        return Err(usage.into());
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let num = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{what}: not a number: {s}"))
    };
    Ok((
        Target {
            host: host.to_owned(),
            request: request.into_bytes(),
        },
        num(rate, "RATE")?,
        num(seconds, "SECONDS")?,
        num(connections, "CONNECTIONS")? as usize,
    ))
}

/// Reads one response (headers and a Content-Length or chunked body) and returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while buf.len() < head_end + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None if head.contains("transfer-encoding: chunked") => {
            while !buf[head_end..].windows(5).any(|w| w == b"0\r\n\r\n") {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => {}
    }
    Ok(status)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, rate, seconds, connections) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let target = Arc::new(target);
    // Due times are dealt round robin to the connections (each paces its own share, as wrk2
    // does); a connection still busy when its next request is due sends it late, and the wait
    // counts in that request's latency.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(u64, u64), ()>>();
    let mut lanes = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
        lanes.push(tx);
        let (target, done) = (target.clone(), done_tx.clone());
        tokio::spawn(async move {
            let mut stream = None;
            let mut buf = Vec::with_capacity(16 * 1024);
            while let Some(due) = rx.recv().await {
                if stream.is_none() {
                    match TcpStream::connect(&target.host).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            stream = Some(s);
                        }
                        Err(_) => {
                            let _ = done.send(Err(()));
                            continue;
                        }
                    }
                }
                let Some(s) = stream.as_mut() else { continue };
                let sent = Instant::now();
                let result = match s.write_all(&target.request).await {
                    Ok(()) => read_response(s, &mut buf).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(status) if (200..300).contains(&status) => {
                        let _ = done.send(Ok((due.elapsed().as_micros() as u64, sent.elapsed().as_micros() as u64)));
                    }
                    Ok(_) => {
                        let _ = done.send(Err(()));
                    }
                    Err(_) => {
                        stream = None;
                        let _ = done.send(Err(()));
                    }
                }
            }
        });
    }
    drop(done_tx);
    let total = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now() + Duration::from_millis(50);
    // The pace is kept by a thread of its own with sleeps of microsecond precision: a runtime
    // timer ticks in whole milliseconds and would send a request up to 1 ms after it was due,
    // which would count as latency of the server.
    std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if lanes[i as usize % lanes.len()].send(due).is_err() {
                return;
            }
        }
    });
    let mut latencies = Vec::with_capacity(total as usize);
    let mut service = Vec::with_capacity(total as usize);
    let mut errors = 0u64;
    while let Some(r) = done_rx.recv().await {
        match r {
            Ok((us, served)) => {
                latencies.push(us);
                service.push(served);
            }
            Err(()) => errors += 1,
        }
        if latencies.len() as u64 + errors == total {
            break;
        }
    }
    latencies.sort_unstable();
    service.sort_unstable();
    let pct = |v: &[u64], p: f64| -> u64 {
        if v.is_empty() {
            return 0;
        }
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "sent={total} ok={} errors={errors} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} service_p50_us={} service_p99_us={}",
        latencies.len(),
        pct(&latencies, 0.50),
        pct(&latencies, 0.90),
        pct(&latencies, 0.99),
        pct(&latencies, 0.999),
        latencies.last().copied().unwrap_or(0),
        pct(&service, 0.50),
        pct(&service, 0.99),
    );
}
