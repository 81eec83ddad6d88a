//! Independent implementations run by the suites (PyJWT, RFC 6238 in Python, …).
#![allow(dead_code)]

/// Runs `python3 -c script args…` and returns (success, stdout, stderr), both trimmed.
pub fn python_status(script: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// Whether Python can import every one of `modules`. Where it cannot, the calling test is to
/// return early: it prints why (and what installs them), except on CI (`CI=true`), where
/// `.ci/run` has installed them and their absence fails the test.
pub fn python_has(modules: &[&str], install: &str) -> bool {
    let script: String = modules.iter().map(|m| format!("import {m}\n")).collect();
    let present = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .is_ok_and(|out| out.status.success());
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true requires Python's {modules:?} ({install})"
        );
        eprintln!("skipped: Python's {modules:?} is not installed ({install})");
    }
    present
}
