//! `portcullis serve` as a user runs it: a real process, a fresh data directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Starts `portcullis serve` in `dir` and reads its first lines until it listens.
/// Returns the child, the address and the printed admin key (if any).
fn start(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (Child, String, Option<String>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .current_dir(dir)
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_DATABASE_URL")
        .env_remove("PORTCULLIS_ADMIN_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn portcullis");
    let stdout = child.stdout.take().unwrap();
    let mut key = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(k) = line.trim().strip_prefix("pcl_") {
            key = Some(format!("pcl_{k}"));
        }
        if let Some(addr) = line.strip_prefix("Portcullis listening on http://") {
            return (child, addr.to_owned(), key);
        }
    }
    let status = child.wait();
    panic!("portcullis exited before listening: {status:?}");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    panic!("portcullis did not stop within 5 s of SIGTERM");
}

#[tokio::test]
async fn first_start_prints_a_working_key_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, key) = start(dir.path(), &[]);
    let key = key.expect("the first start prints the admin key");
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let me: serde_json::Value = http
        .get(format!("http://{addr}/api/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "admin@localhost");
    assert_eq!(me["orgs"][0]["slug"], "default");
    assert_eq!(me["orgs"][0]["role"], "admin");
    assert!(
        dir.path().join("portcullis-data/portcullis.db").exists(),
        "SQLite in ./portcullis-data"
    );
    assert!(terminate(&mut child).success(), "SIGTERM is a clean stop");

    // The second start keeps the data and prints no key; the first key still works.
    let (mut child, addr, again) = start(dir.path(), &[]);
    assert!(again.is_none(), "the key is shown once");
    let status = http
        .get(format!("http://{addr}/api/v1/me"))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert!(terminate(&mut child).success());
}

#[tokio::test]
async fn a_configured_admin_key_is_installed_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = "scripted-setup-key-0123456789abcdefghij";
    let (mut child, addr, printed) = start(
        dir.path(),
        &[
            ("PORTCULLIS_ADMIN_API_KEY", key),
            ("PORTCULLIS_ADMIN_EMAIL", "ops@example.com"),
        ],
    );
    assert!(printed.is_none());
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ops@example.com");
    assert!(terminate(&mut child).success());
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("PORTCULLIS_ADMIN_API_KEY", "too-short")],
            "PORTCULLIS_ADMIN_API_KEY",
        ),
        (
            &[("PORTCULLIS_LISTEN", "not-an-address")],
            "PORTCULLIS_LISTEN",
        ),
        (
            &[("PORTCULLIS_DATABASE_URL", "mysql://db/x")],
            "PORTCULLIS_DATABASE_URL",
        ),
    ];
    for (env, key) in cases {
        let out = Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{stderr}");
    }
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nadmn:\n  email: x@y\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admn"));
}

#[tokio::test]
async fn keys_rotate_publishes_a_new_signing_key_and_keeps_the_previous_ones() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = |addr: String| async move {
        let doc: serde_json::Value = reqwest::get(format!("http://{addr}/.well-known/jwks.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (mut child, addr, _) = start(dir.path(), &[]);
    let first = jwks(addr).await;
    assert_eq!(first.len(), 1, "a fresh database gets one signing key");
    assert!(terminate(&mut child).success());

    let rotate = |delay: &str| {
        Command::new(BIN)
            .args(["keys", "rotate", "--delay", delay])
            .current_dir(dir.path())
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = rotate("0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let kid = text
        .split_whitespace()
        .nth(3)
        .expect("New signing key <kid>: …")
        .trim_end_matches(':')
        .to_owned();
    assert!(!first.contains(&kid));

    let (mut child, addr, _) = start(dir.path(), &[]);
    let keys = jwks(addr.clone()).await;
    assert_eq!(keys.len(), 2, "the previous key still verifies: {keys:?}");
    assert!(keys.contains(&kid) && keys.contains(&first[0]));
    assert!(terminate(&mut child).success());

    // Two more rotations: the oldest key is retired (new, current and previous stay).
    assert!(rotate("0").status.success());
    assert!(rotate("600").status.success());
    let (mut child, addr, _) = start(dir.path(), &[]);
    let keys = jwks(addr).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(!keys.contains(&first[0]), "the oldest key is retired");
    assert!(terminate(&mut child).success());
}

/// Starts `portcullis serve --config <file>` with stderr (the log) going to `log`.
fn start_with_config(
    dir: &std::path::Path,
    config: &str,
    log: &std::path::Path,
) -> (Child, String) {
    start_under(Command::new(BIN), dir, config, log)
}

/// As [`start_with_config`], with `command` running the binary (prlimit, say), arguments
/// given so far kept.
fn start_under(
    mut command: Command,
    dir: &std::path::Path,
    config: &str,
    log: &std::path::Path,
) -> (Child, String) {
    let file = dir.join("portcullis.yaml");
    std::fs::write(&file, config).unwrap();
    let mut child = command
        .args(["serve", "--config"])
        .arg(&file)
        .current_dir(dir)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_DATABASE_URL")
        .env_remove("PORTCULLIS_ADMIN_API_KEY")
        .env_remove("PORTCULLIS_LOG_LEVEL")
        .env_remove("PORTCULLIS_LOG_FORMAT")
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn portcullis");
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("Portcullis listening on http://") {
            return (child, addr.to_owned());
        }
    }
    let status = child.wait();
    panic!("portcullis exited before listening: {status:?}");
}

/// Access-log lines (JSON) in a log file.
fn access_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "portcullis::access")
        .collect()
}

#[tokio::test]
async fn the_access_log_follows_its_own_switch_not_the_log_level() {
    // A backend nobody listens on: the request is still decided, answered (502) and logged.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = closed.local_addr().unwrap();
    drop(closed);
    let config = |access: bool| {
        format!(
            "log: {{ level: warn, format: json }}\n\
             auth: {{ trusted_proxies: [\"127.0.0.1\"] }}\n\
             gateway:\n  access_log: {access}\n  workers: 2\n  backends:\n    - {{ name: app, url: \"http://{backend}\", timeout_ms: 2000 }}\n\
             routes:\n  - {{ path: \"/app/*\", auth: none, backend: app }}\n"
        )
    };
    let http = reqwest::Client::new();
    for access in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let (mut child, addr) = start_with_config(dir.path(), &config(access), &log);
        let response = http
            .get(format!("http://{addr}/app/reports?page=2"))
            .header("x-request-id", "trace-me-1")
            // From a trusted proxy (this test): its client is the hop it appended.
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()["x-request-id"], "trace-me-1");
        // Forward-auth is logged too, under the request it was asked about.
        let response = http
            .get(format!("http://{addr}/auth/app/x?token=t"))
            .header("x-request-id", "trace-me-2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // A request refused before any route is looked at is logged too.
        let response = http
            .post(format!("http://{addr}/app/x"))
            .header("x-request-id", "trace-me-3")
            .header("expect", "999-bogus")
            .header("x-forwarded-for", "203.0.113.9")
            .body("hi")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 417);
        assert!(terminate(&mut child).success());
        let lines = access_lines(&log);
        if access {
            assert_eq!(lines.len(), 3, "one access line per request: {lines:?}");
            let fields = &lines[2]["fields"];
            assert_eq!(
                (&fields["method"], &fields["path"], &fields["status"]),
                (&"POST".into(), &"/app/x".into(), &417.into()),
                "{fields}"
            );
            assert_eq!(fields["request_id"], "trace-me-3");
            assert_eq!(fields["client"], "203.0.113.9");
            let fields = &lines[1]["fields"];
            assert_eq!(
                (&fields["method"], &fields["path"], &fields["status"]),
                (&"GET".into(), &"/app/x".into(), &200.into())
            );
            assert_eq!(fields["route"], "/app/*");
            assert_eq!(fields["backend"], "(none)");
            assert_eq!(fields["request_id"], "trace-me-2");
            assert_eq!(
                fields["client"], "127.0.0.1",
                "no X-Forwarded-For: the peer"
            );
            let fields = &lines[0]["fields"];
            assert_eq!(fields["method"], "GET");
            assert_eq!(fields["path"], "/app/reports");
            assert_eq!(fields["status"], 502);
            assert_eq!(fields["route"], "/app/*");
            assert_eq!(fields["backend"], "app");
            assert_eq!(fields["request_id"], "trace-me-1");
            assert_eq!(fields["client"], "203.0.113.7", "{fields}");
            assert_eq!(fields["peer"], "127.0.0.1");
            assert!(fields["duration_ms"].as_f64().is_some(), "{fields}");
        } else {
            assert!(lines.is_empty(), "access_log: false writes none: {lines:?}");
        }
    }
}

/// CPU time (user + system, in clock ticks) process `pid` has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 14th and 15th of the line, the 12th and 13th of these.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors with connections waiting on the TLS listener: each failed accept
/// is waited out, so the process stays idle instead of spinning a CPU on a listener that stays
/// ready; once descriptors free up, it serves again.
#[tokio::test]
async fn running_out_of_file_descriptors_does_not_spin_a_cpu() {
    let prlimit = Command::new("prlimit").arg("--version").output();
    if prlimit.is_err() || !std::path::Path::new("/proc/self/stat").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prlimit (util-linux) and /proc are needed in CI"
        );
        eprintln!("skipped: needs prlimit (util-linux) and /proc");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), pair.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), pair.signing_key.serialize_pem()).unwrap();
    let tls_port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let config = format!(
        "log: {{ level: error }}\n\
         gateway: {{ workers: 1 }}\n\
         tls:\n  listen: \"127.0.0.1:{tls_port}\"\n  cert_file: {}\n  key_file: {}\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let log = dir.path().join("stderr.log");
    let (mut child, addr) = start_with_config(dir.path(), &config, &log);
    let pid = child.id();
    // A few descriptors more than the process has open now.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 4;
    let limited = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(limited.success());
    // Connections that never start their handshake: the first few take the descriptors left,
    // the rest wait in the listener's backlog.
    let held: Vec<std::net::TcpStream> = (0..32)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // An accept loop retrying at once burns a whole CPU: some 200 ticks in 2 s (at 100 Hz).
    assert!(
        used < 40,
        "{used} clock ticks of CPU in 2 s while out of descriptors"
    );
    // The descriptors come back as the held connections close: the server serves again.
    drop(held);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut status = None;
    for _ in 0..50 {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            status = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(200));
    assert!(terminate(&mut child).success());
}

/// The soft open-file limit is raised to the hard one at start (a soft 512 would cap the server
/// at a few hundred connections), and the connection cap is derived from the raised limit.
#[test]
fn the_open_file_limit_is_raised_and_the_connection_cap_follows_it() {
    if Command::new("prlimit").arg("--version").output().is_err()
        || !std::path::Path::new("/proc/self/limits").exists()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prlimit (util-linux) and /proc are needed in CI"
        );
        eprintln!("skipped: needs prlimit (util-linux) and /proc");
        return;
    }
    // A hard limit this process may set: at most its own, at most 4,096.
    let own = std::fs::read_to_string("/proc/self/limits").unwrap();
    let own_hard: u64 = own
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let hard = own_hard.min(4096);
    assert!(
        hard > 600,
        "the hard open-file limit here is only {own_hard}"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut prlimit = Command::new("prlimit");
    prlimit.args([format!("--nofile=512:{hard}").as_str(), "--", BIN]);
    let (mut child, _) = start_under(
        prlimit,
        dir.path(),
        "log: { level: info, format: json }\n",
        &log,
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    let hard_text = hard.to_string();
    assert_eq!(
        open_files,
        [hard_text.as_str(), hard_text.as_str()],
        "{limits}"
    );
    let cap = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "client connections held at most")
        .map(|v| v["fields"]["max_connections"].clone());
    // Half of the limit less the 256 kept back (1,920 for 4,096).
    assert_eq!(cap, Some(serde_json::json!((hard - 256) / 2)));
    assert!(terminate(&mut child).success());
}
