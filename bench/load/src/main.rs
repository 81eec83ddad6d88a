//! `portcullis-load URL RATE SECONDS CONNECTIONS [HEADER...]`: sends GET requests at RATE per
//! second over CONNECTIONS keep-alive connections for SECONDS and prints the latency
//! percentiles, measured from when each request was due (open loop: coordinated omission does
//! not hide a stall). Prints one line: `sent=… ok=… errors=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…`.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

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

#[tokio::main]
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
    // Each due time goes to whichever connection is free; a backlog waits in the queue and its
    // wait counts in the latency.
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(Mutex::new(rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<u64, ()>>();
    for _ in 0..connections {
        let (target, rx, done) = (target.clone(), rx.clone(), done_tx.clone());
        tokio::spawn(async move {
            let mut stream = None;
            let mut buf = Vec::with_capacity(16 * 1024);
            loop {
                let due = match rx.lock().await.recv().await {
                    Some(d) => d,
                    None => return,
                };
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
                let result = match s.write_all(&target.request).await {
                    Ok(()) => read_response(s, &mut buf).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(status) if (200..300).contains(&status) => {
                        let _ = done.send(Ok(due.elapsed().as_micros() as u64));
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
    let start = Instant::now();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..total {
            ticker.tick().await;
            // The due time is the schedule's, not the tick's: a late tick still counts from when
            // the request should have gone.
            let _ = tx.send(start + interval * i as u32);
        }
    });
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0u64;
    while let Some(r) = done_rx.recv().await {
        match r {
            Ok(us) => latencies.push(us),
            Err(()) => errors += 1,
        }
        if latencies.len() as u64 + errors == total {
            break;
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    println!(
        "sent={total} ok={} errors={errors} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        latencies.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        latencies.last().copied().unwrap_or(0)
    );
}
