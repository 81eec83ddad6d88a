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
