//! `portcullis policy test` and `policy eval` on the shipped example policies (seed 003's
//! policies and tests, unchanged) and on broken copies of them.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rego")
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_shipped_policies_pass_all_their_tests() {
    let (code, out) = run(&["policy", "test", examples().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("data.policies.test_fd_control_plane_allow_edit_owner: PASS"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("PASS: 17/17"), "{out}");
}

#[test]
fn a_failing_test_fails_the_run_and_a_broken_module_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["policies.rego", "policies_test.rego"] {
        std::fs::copy(examples().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("extra_test.rego"), "package policies\ntest_viewer_may_edit {\n  fd_control_plane_allow_edit with input as {\"user\": {\"roles\": [{\"permissions\": [\"console.data-fabric.control-plane.view\"]}]}}\n}\n").unwrap();
    let (code, out) = run(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("data.policies.test_viewer_may_edit: FAIL"),
        "{out}"
    );
    assert!(
        out.contains("PASS: 17/18") && out.contains("FAIL: 1/18"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("broken.rego"),
        "package policies\nallow {{\n",
    )
    .unwrap();
    let (code, out) = run(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("broken.rego"), "{out}");
}

/// The seed's table for Alice, who holds the viewer role (permission
/// `console.data-fabric.control-plane.view`).
#[test]
fn eval_answers_the_alice_table() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("alice.json");
    std::fs::write(&input, r#"{"user": {"id": "alice", "roles": [{"roleId": "viewer", "permissions": ["console.data-fabric.control-plane.view"]}]}}"#).unwrap();
    let table = [
        ("allow_all", "true"),
        ("allow_manage_cp_users", "false"),
        ("fd_control_plane_allow_view", "true"),
        ("fd_control_plane_allow_edit", "false"),
    ];
    for (rule, want) in table {
        let (code, out) = run(&[
            "policy",
            "eval",
            "--dir",
            examples().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--rule",
            rule,
        ]);
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(out.trim(), want, "{rule}");
    }
    let (code, out) = run(&[
        "policy",
        "eval",
        "--dir",
        examples().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--rule",
        "data.policies.nothing",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("data.policies.nothing") && out.contains("not a valid rule path"),
        "{out}"
    );
}
