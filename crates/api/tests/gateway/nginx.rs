//! A real nginx in front of the test backend with the example configuration
//! (`examples/forward-auth/nginx.conf`, addresses filled in), asking Portcullis with
//! `auth_request` before every request and passing the identity it answers on to the backend.

use std::path::Path;
use std::process::Command;

use crate::external::{External, example, filled, program};
use crate::front_proxies::{
    behind_a_front_proxy, fails_closed, logins_are_limited_by_the_clients_address,
};
use crate::support::*;

async fn start_nginx(binary: &Path, port: u16, portcullis: u16, backend: u16) -> External {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // nginx's files in the test's own directory, not the system's.
    let own_files = format!(
        "http {{\n    access_log off;\n    client_body_temp_path {d}/client_body;\n    \
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n"
    );
    let config = filled(
        &example("nginx.conf"),
        &[
            ("listen 80;", &format!("listen 127.0.0.1:{port};")),
            ("BACKEND_HOST:BACKEND_PORT", &format!("127.0.0.1:{backend}")),
            (
                "PORTCULLIS_HOST:PORTCULLIS_PORT",
                &format!("127.0.0.1:{portcullis}"),
            ),
            ("http {\n", &own_files),
        ],
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, config).unwrap();
    let globals = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; \
         error_log {d}/error.log info;"
    );
    let args = |command: &mut Command| {
        command
            .args([
                "-p",
                &d,
                "-e",
                &format!("{d}/error.log"),
                "-g",
                &globals,
                "-c",
            ])
            .arg(&file);
    };
    let mut check = Command::new(binary);
    check.arg("-t");
    args(&mut check);
    let checked = check.output().unwrap();
    assert!(
        checked.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let mut command = Command::new(binary);
    args(&mut command);
    External::start("nginx", command, dir, port).await
}

#[tokio::test]
async fn nginx_auth_request_with_the_example_configuration() {
    let Some(binary) = program("nginx", &["/usr/sbin/nginx"], "apt-get install -y nginx") else {
        return;
    };
    let mut env = Env::start(Options::default()).await;
    let port = free_port();
    let nginx = start_nginx(&binary, port, env.addr.port(), env.backend.addr.port()).await;
    behind_a_front_proxy(&env, port, &nginx, true).await;

    let front = format!("http://127.0.0.1:{port}");
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut req = env.http.get(format!("{front}{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        env.send(req)
    };
    // A path no route matches is refused (nginx turns any auth_request answer but 2xx, 401 and
    // 403 into its own 500).
    let reply = get("/nowhere", &[("x-api-key", &env.dev.key)]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    // nginx passes the client's own headers to the check: one naming another request the
    // Traefik way is a conflict Portcullis refuses, never the request checked.
    let reply = get(
        "/admin/panel",
        &[
            ("x-forwarded-uri", "/public/logo.png"),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await;
    assert!(reply.status >= 400, "{reply:?}");
    // A target that is not ASCII is checked as nginx saw it, not skipped.
    let reply = raw_request(
        front.trim_start_matches("http://").parse().unwrap(),
        "GET",
        "/admin/panel/\u{e9}",
        &[],
    )
    .await;
    assert!(
        reply.status == 401 || reply.status == 403,
        "{reply:?}\n{}",
        nginx.log()
    );
    // nginx ends a path at `#` and serves `/admin/panel` here; its `$request_uri`, which it
    // names the request by, still holds the rest. Read past the `#`, that would be the open
    // `/public/logo.png`: it is refused instead. So is a path with dot segments, which nginx
    // passes to the backend as sent (a router that keeps them serves its `/admin/*` handler):
    // for a caller without a key and for one the admin route refuses.
    for target in [
        "/admin/panel#/../../public/logo.png",
        "/admin/panel/../../public/logo.png",
        "/admin/panel/%2e%2e/%2e%2e/public/logo.png",
    ] {
        for key in [None, Some(env.dev.key.as_str())] {
            let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
            let reply = raw_request(
                front.trim_start_matches("http://").parse().unwrap(),
                "GET",
                target,
                &headers,
            )
            .await;
            assert!(
                reply.status == 401 || reply.status == 403,
                "{target}: {reply:?}\n{}",
                nginx.log()
            );
        }
    }
    assert!(
        !env.backend.saw_path("/nowhere") && !env.backend.saw_path("/admin/panel"),
        "refused requests stay out: {:?}",
        env.backend.seen()
    );
    logins_are_limited_by_the_clients_address(&env, port, &nginx).await;
    fails_closed(&mut env, port, &nginx).await;
}
