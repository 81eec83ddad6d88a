//! `portcullis policy test` and `portcullis policy eval`: run a policy folder's `test_*` rules in
//! the style of `opa test`, or evaluate one rule against an input file.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use portcullis_authz::rego::{RegoModule, RegoPolicies};

/// Reads every `.rego` file under `dir` (recursively, in name order), as the server does.
pub fn read_modules(dir: &Path) -> Result<Vec<RegoModule>, String> {
    portcullis_api::rbac::rond::read_modules(dir)
}

/// `portcullis policy test <dir>`: prints each test's result and a summary; exit code 0 when
/// all pass, 1 when any fails, 2 when the policies cannot be loaded.
pub fn test(dir: &Path, out: &mut impl Write) -> ExitCode {
    let policies = match read_modules(dir)
        .and_then(|m| RegoPolicies::compile(&m, None).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return ExitCode::from(2);
        }
    };
    let results = policies.run_tests();
    if results.is_empty() {
        let _ = writeln!(out, "no tests found (rules named test_*)");
        return ExitCode::from(2);
    }
    let mut module = "";
    for r in &results {
        if r.module != module {
            module = &r.module;
            let _ = writeln!(out, "{module}:");
        }
        let verdict = if r.passed {
            "PASS"
        } else if r.error.is_some() {
            "ERROR"
        } else {
            "FAIL"
        };
        let _ = writeln!(
            out,
            "{}: {verdict} ({:.3}ms)",
            r.name,
            r.duration.as_secs_f64() * 1000.0
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  {e}");
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    let _ = writeln!(out, "{}", "-".repeat(80));
    let _ = writeln!(out, "PASS: {passed}/{}", results.len());
    if failed > 0 {
        let _ = writeln!(out, "FAIL: {failed}/{}", results.len());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `portcullis policy eval`: prints the rule's value for the input as JSON (`undefined` when the
/// rule does not apply).
pub fn eval(dir: &Path, input: &Path, rule: &str, out: &mut impl Write) -> ExitCode {
    let loaded =
        read_modules(dir).and_then(|m| RegoPolicies::compile(&m, None).map_err(|e| e.to_string()));
    let policies = match loaded {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return ExitCode::from(2);
        }
    };
    let input: serde_json::Value = match std::fs::read_to_string(input)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(out, "error: input {}: {e}", input.display());
            return ExitCode::from(2);
        }
    };
    match policies.eval(rule, &input) {
        Ok(Some(value)) => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let _ = writeln!(out, "undefined");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            ExitCode::from(1)
        }
    }
}
