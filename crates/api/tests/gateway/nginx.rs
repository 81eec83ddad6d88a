//! A real nginx in front of the test backend, asking Portcullis with `auth_request` before
//! every request and passing the identity it answers on to the backend. Skipped (with a
//! reason) when nginx is not installed, except on CI (`CI=true`), where it must be.

use std::path::Path;
use std::process::Command;

use crate::external::{External, program};
use crate::support::*;

/// The configuration under test; `{DIR}`, `{PORT}`, `{PORTCULLIS}` and `{BACKEND}` are filled in.
const CONFIG: &str = r#"
daemon off;
master_process off;
worker_processes 1;
error_log {DIR}/error.log info;
pid {DIR}/nginx.pid;

events {
    worker_connections 64;
}

http {
    access_log off;
    client_body_temp_path {DIR}/client_body;
    proxy_temp_path {DIR}/proxy;
    fastcgi_temp_path {DIR}/fastcgi;
    uwsgi_temp_path {DIR}/uwsgi;
    scgi_temp_path {DIR}/scgi;

    # Browsers are sent to the login page; API clients keep the 401.
    map $http_accept $pc_browser {
        default 0;
        "~*text/html" 1;
    }

    server {
        listen 127.0.0.1:{PORT};

        location / {
            auth_request /auth_check;
            auth_request_set $pc_user $upstream_http_x_portcullis_user;
            auth_request_set $pc_user_id $upstream_http_x_portcullis_user_id;
            auth_request_set $pc_groups $upstream_http_x_portcullis_groups;
            auth_request_set $pc_org $upstream_http_x_portcullis_org;
            auth_request_set $pc_assertion $upstream_http_x_portcullis_assertion;
            auth_request_set $pc_login $upstream_http_x_portcullis_login;
            error_page 401 = @login;

            # Always set, so a client's own values never pass (empty: not sent at all).
            proxy_set_header X-Portcullis-User $pc_user;
            proxy_set_header X-Portcullis-User-Id $pc_user_id;
            proxy_set_header X-Portcullis-Groups $pc_groups;
            proxy_set_header X-Portcullis-Org $pc_org;
            proxy_set_header X-Portcullis-Assertion $pc_assertion;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # The caller's API key is for Portcullis, not for the backend.
            proxy_set_header X-API-Key "";
            proxy_pass http://127.0.0.1:{BACKEND};
        }

        location = /auth_check {
            internal;
            proxy_pass http://127.0.0.1:{PORTCULLIS}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }

        location @login {
            if ($pc_browser) {
                return 302 $pc_login;
            }
            default_type application/json;
            return 401 '{"error":{"code":"unauthenticated","message":"sign in first"}}';
        }
    }
}
"#;

async fn start_nginx(binary: &Path, port: u16, portcullis: u16, backend: u16) -> External {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let config = CONFIG
        .replace("{DIR}", &d)
        .replace("{PORTCULLIS}", &portcullis.to_string())
        .replace("{BACKEND}", &backend.to_string())
        .replace("{PORT}", &port.to_string());
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, config).unwrap();
    let check = Command::new(binary)
        .args(["-t", "-p", &d, "-e", &format!("{d}/error.log"), "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut command = Command::new(binary);
    command
        .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
        .arg(&file);
    External::start("nginx", command, dir, port).await
}

#[tokio::test]
async fn nginx_auth_request_allows_refuses_and_passes_the_identity_on() {
    let Some(binary) = program("nginx", &["/usr/sbin/nginx"], "apt-get install -y nginx") else {
        return;
    };
    let env = Env::start(Options::default()).await;
    let port = free_port();
    let nginx = start_nginx(&binary, port, env.addr.port(), env.backend.addr.port()).await;
    let front = format!("http://127.0.0.1:{port}");
    let get = |path: &str, key: Option<&str>, headers: &[(&str, &str)]| {
        let mut req = env.http.get(format!("{front}{path}"));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        env.send(req)
    };
    let (dev, outsider) = (&env.dev, &env.outsider);

    // Allowed: the backend gets the identity nginx copied from Portcullis's answer, not the
    // client's forged one.
    let reply = get(
        "/api/jobs?x=1",
        Some(&dev.key),
        &[
            ("x-portcullis-user", "mallory"),
            ("x-portcullis-groups", "admins"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", nginx.log());
    let echo = Echo(reply.json());
    assert_eq!(echo.path(), "/api/jobs");
    assert_eq!(echo.0["query"], "x=1");
    assert_eq!(echo.all("x-portcullis-user"), [dev.username.as_str()]);
    assert!(echo.all("x-api-key").is_empty(), "{:?}", echo.0);
    assert_eq!(echo.all("x-portcullis-user-id"), [dev.id.as_str()]);
    assert_eq!(echo.all("x-portcullis-org"), ["default"]);
    let groups = echo.one("x-portcullis-groups").unwrap();
    let mut groups: Vec<&str> = groups.split(',').collect();
    groups.sort();
    assert_eq!(groups, ["devs", "ops"]);
    assert_eq!(
        echo.one("x-portcullis-assertion")
            .map(|a| a.split('.').count()),
        Some(3)
    );

    // Refused: 403 for a caller the groups expression refuses, 401 for an API client without
    // credentials, a 302 to the login page for a browser.
    let reply = get("/api/jobs", Some(&outsider.key), &[]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = get("/admin/panel", Some(&dev.key), &[]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = get("/api/secret", None, &[("accept", "application/json")]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.json()["error"]["code"], "unauthenticated");
    let reply = get(
        "/api/jobs?x=1",
        None,
        &[("accept", "text/html,application/xhtml+xml")],
    )
    .await;
    assert_eq!(reply.status, 302, "{reply:?}");
    // nginx makes the redirect absolute (`absolute_redirect on`, its default) on its own origin.
    let login = format!("{front}/web-login?redirect=/api/jobs%3Fx%3D1");
    assert_eq!(reply.header("location"), Some(login.as_str()));
    // A wrong key is a 401 through nginx as well. A path no route matches is refused (nginx
    // turns any auth_request answer but 2xx, 401 and 403 into its own 500).
    let reply = get("/api/jobs", Some("pcl_not-a-key"), &[]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = get("/nowhere", Some(&dev.key), &[]).await;
    assert!(reply.status >= 400, "{reply:?}");
    // nginx passes the client's own headers to the check: one naming another request the
    // Traefik way is a conflict Portcullis refuses, never the request checked.
    let reply = get(
        "/admin/panel",
        None,
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

    // Anonymous on an open route: the forged identity never reaches the backend.
    let echo = Echo(
        get(
            "/public/logo.png",
            None,
            &[
                ("x-portcullis-user", "mallory"),
                ("x-portcullis-user-id", "u-mallory"),
                ("x-portcullis-groups", "admins"),
            ],
        )
        .await
        .json_with(200),
    );
    for name in [
        "x-portcullis-user",
        "x-portcullis-user-id",
        "x-portcullis-groups",
    ] {
        let values = echo.all(name);
        assert!(
            values.iter().all(|v| v.is_empty()),
            "{name} reached the backend as {values:?}"
        );
    }

    let seen = env.backend.seen();
    assert_eq!(
        seen,
        ["GET /api/jobs", "GET /public/logo.png"],
        "refused requests stay out"
    );
}
