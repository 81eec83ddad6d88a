//! Differential test: seed 003's policies (in their Rego v1 form) and generated inputs evaluated
//! by Portcullis (regorus) and by OPA itself (the `opa-golib-python-bindings` package, a ctypes
//! wrapper of OPA's Go library); every result must be identical.
//!
//! Needs `python3` with that package (`.ci/run` installs it); skipped with a message elsewhere,
//! required when `CI=true`.

use std::path::Path;
use std::process::Command;

use portcullis_authz::rego::{RegoModule, RegoPolicies};
use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn opa_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import opa_bindings"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let why = "python3 with the opa-golib-python-bindings package is not installed";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the OPA differential test must run in CI: {why}");
    }
    eprintln!("skipping the OPA differential test: {why}");
    false
}

#[test]
fn decisions_match_opa() {
    if !opa_ready() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source =
        std::fs::read_to_string(root.join("../../examples/rego-v1/policies.rego")).unwrap();
    let modules = vec![RegoModule {
        path: "policies.rego".into(),
        source: source.clone(),
    }];
    let ours = RegoPolicies::compile(&modules, None).unwrap();

    // Inputs: users holding random roles with permissions from the policies' vocabulary and
    // near misses; sometimes no user, no roles, or roles without permissions.
    let vocabulary = [
        "console.data-fabric.control-plane.view",
        "console.data-fabric.control-plane.edit",
        "console.data-fabric.control-plane.manage",
        "console.data-fabric.control-plane.editor",
        "console.fast-data.control-plane.manager",
        "console.data-fabric.control-plane.VIEW",
        "",
    ];
    let rules = [
        "allow_all",
        "allow_manage_cp_users",
        "fd_control_plane_allow_view",
        "fd_control_plane_allow_edit",
    ];
    let mut rng = Rng(0xfeed_beef_1234_0001);
    let mut queries = Vec::new();
    for _ in 0..1_000 {
        let input = match rng.below(10) {
            0 => json!({}),
            1 => json!({"user": {}}),
            _ => {
                let roles: Vec<Value> = (0..rng.below(4))
                    .map(|r| {
                        let permissions: Vec<&str> = (0..rng.below(4)).map(|_| vocabulary[rng.below(vocabulary.len())]).collect();
                        json!({"roleId": format!("r{r}"), "name": format!("Role {r}"), "permissions": permissions})
                    })
                    .collect();
                json!({"user": {"id": "u", "groups": [], "bindings": [], "roles": roles}, "request": {"method": "GET", "path": "/"}})
            }
        };
        queries.push(
            json!({"rule": format!("policies.{}", rules[rng.below(rules.len())]), "input": input}),
        );
    }
    let job = json!({"modules": [{"path": "policies.rego", "source": source}], "queries": queries});
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), job.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(root.join("tests/opa/decide.py"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "OPA failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reference.len(), queries.len());

    let mut mismatches = Vec::new();
    let mut allowed = 0;
    for (q, want) in queries.iter().zip(&reference) {
        let rule = format!("data.{}", q["rule"].as_str().unwrap());
        let got = ours
            .eval(&rule, &q["input"])
            .unwrap()
            .unwrap_or(Value::Null);
        allowed += usize::from(got == Value::Bool(true));
        if &got != want {
            mismatches.push(format!(
                "{rule} {}: portcullis {got}, opa {want}",
                q["input"]
            ));
        }
    }
    eprintln!(
        "{} queries, {allowed} true, {} mismatches",
        queries.len(),
        mismatches.len()
    );
    assert!(
        allowed > 100 && allowed < 900,
        "the inputs should exercise both outcomes ({allowed} true)"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}
