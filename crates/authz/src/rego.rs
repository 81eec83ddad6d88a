//! Rego policies with Rönd semantics, evaluated by the `regorus` crate. Modules are compiled once
//! into a [`RegoPolicies`]; each evaluation works on a cheap clone of the compiled engine, so
//! decisions never share mutable state. Rego v0 (the syntax of Rönd's documentation) and v1
//! (`import rego.v1`, `if`) are both accepted, module by module. This module does no I/O: callers
//! hand it the policy sources.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use regorus::Value;
use serde_json::Value as Json;

/// A policy source: its path (for messages) and its text.
#[derive(Debug, Clone)]
pub struct RegoModule {
    /// Where it came from, e.g. `policies/rbac.rego`.
    pub path: String,
    /// Its Rego text.
    pub source: String,
}

/// What can go wrong with Rego policies.
#[derive(Debug, thiserror::Error)]
pub enum RegoError {
    /// A module does not parse (in either Rego version).
    #[error("{path}: {message}")]
    Parse {
        /// The module.
        path: String,
        /// The parser's message (v1, then v0).
        message: String,
    },
    /// No module was given.
    #[error("no Rego module was found")]
    Empty,
    /// Evaluation failed (or went past the time limit).
    #[error("evaluating {rule}: {message}")]
    Eval {
        /// The rule.
        rule: String,
        /// Why.
        message: String,
    },
    /// The input document is not usable.
    #[error("input: {0}")]
    Input(String),
}

impl RegoError {
    /// Whether the evaluation was stopped by the time limit.
    pub fn is_time_limit(&self) -> bool {
        matches!(self, Self::Eval { message, .. } if message.to_lowercase().contains("time limit") || message.to_lowercase().contains("timed out") || message.to_lowercase().contains("deadline"))
    }
}

/// The outcome of one `test_*` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// Full rule path, e.g. `data.policies.test_allow_all`.
    pub name: String,
    /// The module that declares it.
    pub module: String,
    /// Passed (the rule is defined and true).
    pub passed: bool,
    /// Why it failed, when it did not merely evaluate to false or undefined.
    pub error: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// A value in the Rego engine's form (inputs built for the decision path).
pub use regorus::Value as RegoValue;

/// Compiled Rego policies.
#[derive(Clone)]
pub struct RegoPolicies {
    engine: regorus::Engine,
    /// (module path, package, rule name) of every `test_*` rule, in source order.
    tests: Vec<(String, String, String)>,
    /// Packages of the loaded modules.
    packages: Vec<String>,
    /// (package, rule name) of every rule declared.
    rules: Vec<(String, String)>,
    /// Whether any module may read `input.request.body` ([`reads_request_body`]).
    reads_request_body: bool,
}

impl std::fmt::Debug for RegoPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicies")
            .field("packages", &self.packages)
            .field("tests", &self.tests.len())
            .finish()
    }
}

/// `get_header(name, headers)`: the first value of a header, looked up case-insensitively, or
/// `""` (as Rönd's built-in).
fn get_header(args: Vec<Value>) -> anyhow::Result<Value> {
    let (Some(name), Some(headers)) = (args.first(), args.get(1)) else {
        return Ok(Value::from(""));
    };
    let Ok(name) = name.as_string() else {
        return Ok(Value::from(""));
    };
    let Ok(map) = headers.as_object() else {
        return Ok(Value::from(""));
    };
    for (key, value) in map.iter() {
        let Ok(key) = key.as_string() else { continue };
        if key.eq_ignore_ascii_case(name) {
            return Ok(match value {
                Value::String(_) => value.clone(),
                Value::Array(values) => values.first().cloned().unwrap_or_else(|| Value::from("")),
                _ => Value::from(""),
            });
        }
    }
    Ok(Value::from(""))
}

/// `package a.b` of a module, if it declares one.
fn package_of(source: &str) -> Option<String> {
    source
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package ").map(|p| p.trim().to_owned()))
}

/// Names of every rule a module declares (rule heads at the start of a line, and `default`
/// rules).
fn rule_heads(source: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in source.lines() {
        let line = line.strip_prefix("default ").unwrap_or(line);
        let name_len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let name = &line[..name_len];
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || matches!(name, "package" | "import" | "not" | "some" | "every")
        {
            continue;
        }
        let after = line[name_len..].trim_start();
        let is_head = ["{", "if", ":=", "=", "[", "(", "contains"]
            .iter()
            .any(|p| after.starts_with(p))
            || after.is_empty();
        if is_head && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// Whether a module may read the request's body, `input.request.body`. It may not when every
/// use of `input` is a path through fields named in the text whose first field is not
/// `request`, or is `input.request.<field>` with a field other than `body`. Anything else
/// counts as reading it: `input` or `input.request` used whole, indexed (`input.request["body"]`)
/// or handed to a function. A `with input… as` (a test replacing the input) reads nothing.
/// Comments and strings are skipped; a template string (`$"…"`) counts as reading it.
fn reads_request_body(source: &str) -> bool {
    /// The field name right after a `.` at the start of `rest`, and what follows it.
    fn field(rest: &[u8]) -> Option<(&[u8], &[u8])> {
        let rest = rest.strip_prefix(b".")?;
        let len = rest.iter().take_while(|&&c| is_ident(c)).count();
        (len > 0).then(|| rest.split_at(len))
    }
    fn is_ident(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_'
    }
    if source.contains("$\"") || source.contains("$`") {
        return true;
    }
    let b = source.as_bytes();
    // The last character before the current token that is not white space, and the last
    // token when it was a name.
    let (mut before, mut word): (u8, &[u8]) = (b' ', b"");
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    // An escaped character (only in "…" strings) is skipped whole.
                    i += if quote == b'"' && b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                (before, word) = (quote, b"");
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let name = &b[start..i];
                // `x.input` is a field of something else; `with input` replaces the input.
                if name == b"input" && before != b'.' && word != b"with" {
                    let avoids_body = match field(&b[i..]) {
                        Some((b"request", after)) => {
                            field(after).is_some_and(|(second, _)| second != b"body")
                        }
                        Some(_) => true,
                        None => false,
                    };
                    if !avoids_body {
                        return true;
                    }
                }
                // A name after `.` is a field, even a keyword's (`x.with`): only the keyword
                // itself makes the next `input` a replacement target.
                word = if before == b'.' { b"" } else { name };
                before = b'a';
            }
            c if c.is_ascii_whitespace() => i += 1,
            c => {
                (before, word) = (c, b"");
                i += 1;
            }
        }
    }
    false
}

/// Names of the `test_*` rules a module declares (rule heads at the start of a line).
fn test_rules(source: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in source.lines() {
        let Some(rest) = line.strip_prefix("test_") else {
            continue;
        };
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = format!("test_{}", &rest[..name_len]);
        let after = rest[name_len..].trim_start();
        let is_head = after.starts_with('{')
            || after.starts_with("if")
            || after.starts_with(":=")
            || after.starts_with('=')
            || after.is_empty();
        if is_head && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

impl RegoPolicies {
    /// Compiles `modules`, each as Rego v1 and, when that fails, as v0. `time_limit` bounds
    /// each evaluation.
    pub fn compile(
        modules: &[RegoModule],
        time_limit: Option<Duration>,
    ) -> Result<Self, RegoError> {
        if modules.is_empty() {
            return Err(RegoError::Empty);
        }
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        if let Some(limit) = time_limit {
            engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit,
                check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
            });
        }
        engine
            .add_extension("get_header".into(), 2, Box::new(get_header))
            .map_err(|e| RegoError::Parse {
                path: "get_header".into(),
                message: e.to_string(),
            })?;
        let mut tests = Vec::new();
        let mut packages = Vec::new();
        let mut rules = Vec::new();
        for m in modules {
            engine.set_rego_v0(false);
            if let Err(v1) = engine.add_policy(m.path.clone(), m.source.clone()) {
                engine.set_rego_v0(true);
                if let Err(v0) = engine.add_policy(m.path.clone(), m.source.clone()) {
                    return Err(RegoError::Parse {
                        path: m.path.clone(),
                        message: format!("as Rego v1: {v1}; as Rego v0: {v0}"),
                    });
                }
            }
            let package = package_of(&m.source).unwrap_or_default();
            for t in test_rules(&m.source) {
                tests.push((m.path.clone(), package.clone(), t));
            }
            for r in rule_heads(&m.source) {
                rules.push((package.clone(), r));
            }
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
        let reads_request_body = modules.iter().any(|m| reads_request_body(&m.source));
        // Analysis, scheduling and loop hoisting run on the first evaluation of an engine and
        // are kept by its clones: do it once here, so the per-request clone starts prepared
        // (measured: it was most of the cost of a decision).
        engine
            .eval_query("true".into(), false)
            .map_err(|e| RegoError::Parse {
                path: "(all modules)".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            engine,
            tests,
            packages,
            rules,
            reads_request_body,
        })
    }

    /// Whether `rule` (a bare name in package `policies`, or `data.<package>.<name>`) is
    /// declared by the loaded modules.
    pub fn defines(&self, rule: &str) -> bool {
        let (package, name) = match rule.strip_prefix("data.").and_then(|r| r.rsplit_once('.')) {
            Some((package, name)) => (package, name),
            None => ("policies", rule),
        };
        self.rules.iter().any(|(p, n)| p == package && n == name)
    }

    /// Whether any loaded module may read `input.request.body`: when none does, the gateway
    /// forwards request bodies unread on routes with a policy.
    pub fn reads_request_body(&self) -> bool {
        self.reads_request_body
    }

    /// The packages of the loaded modules.
    pub fn packages(&self) -> &[String] {
        &self.packages
    }

    /// Evaluates `rule` (a full path such as `data.policies.allow`, or a bare name looked up in
    /// package `policies`) with `input`; `None` when the rule is undefined for this input.
    pub fn eval(&self, rule: &str, input: &Json) -> Result<Option<Json>, RegoError> {
        let path = if rule.starts_with("data.") {
            rule.to_owned()
        } else {
            format!("data.policies.{rule}")
        };
        let mut engine = self.engine.clone();
        engine.set_input(Value::from(input.clone()));
        let value = engine
            .eval_rule(path.clone())
            .map_err(|e| RegoError::Eval {
                rule: path.clone(),
                message: e.to_string(),
            })?;
        if value == Value::Undefined {
            return Ok(None);
        }
        let text = value.to_json_str().map_err(|e| RegoError::Eval {
            rule: path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RegoError::Eval {
                rule: path,
                message: e.to_string(),
            })
    }

    /// Whether `rule` is `true` for `input` (undefined, false or an error deny).
    pub fn allows(&self, rule: &str, input: &Json) -> bool {
        let path = if rule.starts_with("data.") {
            rule.to_owned()
        } else {
            format!("data.policies.{rule}")
        };
        // Compared as a regorus value: no round trip through JSON text on the decision path.
        let mut engine = self.engine.clone();
        engine.set_input(Value::from(input.clone()));
        matches!(engine.eval_rule(path), Ok(Value::Bool(true)))
    }

    /// Whether `rule` is true for an input already in the engine's form (see
    /// [`RegoPolicies::allows`]); nothing is converted or copied on this path.
    pub fn allows_value(&self, rule: &str, input: &Value) -> bool {
        let path = if rule.starts_with("data.") {
            rule.to_owned()
        } else {
            format!("data.policies.{rule}")
        };
        let mut engine = self.engine.clone();
        engine.set_input(input.clone());
        matches!(engine.eval_rule(path), Ok(Value::Bool(true)))
    }

    /// Runs every `test_*` rule: a test passes when it is defined and true.
    pub fn run_tests(&self) -> Vec<TestResult> {
        self.tests
            .iter()
            .map(|(module, package, rule)| {
                let name = format!("data.{package}.{rule}");
                let started = Instant::now();
                let mut engine = self.engine.clone();
                let outcome = engine.eval_rule(name.clone());
                let duration = started.elapsed();
                let (passed, error) = match outcome {
                    Ok(Value::Bool(true)) => (true, None),
                    Ok(_) => (false, None),
                    Err(e) => (false, Some(e.to_string())),
                };
                TestResult {
                    name,
                    module: module.clone(),
                    passed,
                    error,
                    duration,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn module(path: &str, source: &str) -> RegoModule {
        RegoModule {
            path: path.into(),
            source: source.into(),
        }
    }

    /// Policy text -> whether it may read `input.request.body`.
    const BODY_READS: &[(&str, bool)] = &[
        // Paths that stay clear of the body.
        ("allow { input.request.method == \"GET\" }", false),
        (
            "allow { get_header(\"X-Tenant\", input.request.headers) == \"acme\" }",
            false,
        ),
        ("allow { input.request.pathParams.id == \"7\" }", false),
        ("allow { input.user.groups[_] == \"admin\" }", false),
        ("allow { input.clientType == \"cms\" }", false),
        ("allow { input.request.bodyless == true }", false),
        ("allow { input.requests.body }", false),
        // The body, named or possibly reached.
        ("allow { input.request.body.amount < 100 }", true),
        ("allow { not input.request.body }", true),
        ("allow { r := input.request; r.body.x }", true),
        ("allow { input.request[\"body\"].x }", true),
        ("allow { input[\"request\"].body.x }", true),
        (
            "allow { object.get(input.request, \"body\", {}) == {} }",
            true,
        ),
        ("allow { walk(input, [p, v]) }", true),
        ("allow { x := input }", true),
        ("allow { some k; input.request[k] }", true),
        ("import input.request\nallow { request.body.x }", true),
        ("allow { input . request . body }", true),
        // Not the input document, or not a read of it.
        ("allow { data.input.request.body }", false),
        ("allow { x.input }", false),
        ("# input.request.body in a comment\nallow { true }", false),
        ("allow { \"input.request.body\" == s }", false),
        ("allow { `input.request.body` == s }", false),
        ("allow { \"a \\\" input.request.body\" == s }", false),
        (
            "test_allow { allow with input as {\"request\": {\"body\": 1}} }",
            false,
        ),
        ("test_allow { allow with input.request.body as 1 }", false),
        // A field named `with` ends a line: the next line's `input` is a read.
        (
            "allow { not input.user.properties.with\n input.request.body.amount > 100 }",
            true,
        ),
        (
            "allow { not data.nothing.with # a comment\n input.request.body.x }",
            true,
        ),
        (
            "allow { cfg.with\n input[\"request\"][\"body\"] = x }",
            true,
        ),
        // After a comment or a string the scan goes on.
        ("# a comment\nallow { input.request.body }", true),
        ("allow { \"#\" == input.request.body }", true),
        ("allow { $\"{input.request.method}\" == s }", true),
    ];

    #[test]
    fn reading_the_request_body_is_found_in_the_policy_text() {
        for &(source, expected) in BODY_READS {
            let text = format!("package policies\n{source}\n");
            assert_eq!(reads_request_body(&text), expected, "{source}");
        }
    }

    #[test]
    fn compiled_policies_read_the_body_when_one_module_does() {
        let headers = module(
            "headers.rego",
            "package policies\nallow { input.request.method == \"GET\" }\n",
        );
        let body = module(
            "body.rego",
            "package policies\nsmall { input.request.body.amount < 100 }\n",
        );
        let only_headers = RegoPolicies::compile(std::slice::from_ref(&headers), None).unwrap();
        assert!(!only_headers.reads_request_body());
        let both = RegoPolicies::compile(&[headers, body], None).unwrap();
        assert!(both.reads_request_body());
    }

    #[test]
    fn v0_and_v1_modules_load_side_by_side() {
        let v0 = module(
            "v0.rego",
            "package policies\nallow_v0 {\n  input.user.id == \"alice\"\n}\n",
        );
        let v1 = module(
            "v1.rego",
            "package policies\nimport rego.v1\nallow_v1 if input.user.id == \"alice\"\n",
        );
        let p = RegoPolicies::compile(&[v0, v1], None).unwrap();
        let alice = json!({"user": {"id": "alice"}});
        let bob = json!({"user": {"id": "bob"}});
        assert!(p.allows("allow_v0", &alice));
        assert!(p.allows("data.policies.allow_v1", &alice));
        assert!(!p.allows("allow_v0", &bob));
        assert_eq!(
            p.eval("allow_v1", &bob).unwrap(),
            None,
            "undefined, not false"
        );
        assert!(!p.allows("no_such_rule", &alice));
        assert!(p.defines("allow_v0") && p.defines("allow_v1"));
        assert!(p.defines("data.policies.allow_v1"));
        assert!(!p.defines("no_such_rule") && !p.defines("data.other.allow_v0"));
    }

    #[test]
    fn rule_heads_are_found_in_every_form() {
        let heads = rule_heads(
            "package policies\nimport rego.v1\ndefault allow := false\nallow if true\nset_rule contains x if x := 1\nobj[k] := v if { k := 1; v := 2 }\nf(x) := x\nold_style {\n  true\n}\n  indented_is_body {\n}\n",
        );
        assert_eq!(heads, ["allow", "set_rule", "obj", "f", "old_style"]);
    }

    #[test]
    fn parse_errors_name_the_module() {
        let err = RegoPolicies::compile(
            &[module("broken.rego", "package policies\nallow {{ \n")],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("broken.rego: "), "{err}");
        assert!(matches!(
            RegoPolicies::compile(&[], None),
            Err(RegoError::Empty)
        ));
    }

    #[test]
    fn get_header_is_case_insensitive() {
        let m = module(
            "h.rego",
            "package policies\nallow {\n  get_header(\"X-Tenant\", input.request.headers) == \"acme\"\n}\n",
        );
        let p = RegoPolicies::compile(&[m], None).unwrap();
        assert!(p.allows(
            "allow",
            &json!({"request": {"headers": {"x-tenant": ["acme", "other"]}}})
        ));
        assert!(!p.allows(
            "allow",
            &json!({"request": {"headers": {"x-other": ["acme"]}}})
        ));
    }

    #[test]
    fn tests_run_with_input_overrides() {
        let policy = module(
            "p.rego",
            "package policies\ndefault allow = false\nallow {\n  input.user.roles[_].permissions[_] == \"p.view\"\n}\n",
        );
        let tests = module(
            "p_test.rego",
            "package policies\ntest_denied_by_default {\n  not allow\n}\ntest_allowed_with_permission {\n  allow with input as {\"user\": {\"roles\": [{\"permissions\": [\"p.view\"]}]}}\n}\ntest_wrong {\n  allow\n}\n",
        );
        let results = RegoPolicies::compile(&[policy, tests], None)
            .unwrap()
            .run_tests();
        let outcome: Vec<(&str, bool)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.passed))
            .collect();
        assert_eq!(
            outcome,
            [
                ("data.policies.test_denied_by_default", true),
                ("data.policies.test_allowed_with_permission", true),
                ("data.policies.test_wrong", false)
            ]
        );
    }
}

#[cfg(test)]
mod time_limit_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_evaluation_past_the_time_limit_is_an_error() {
        let slow = RegoModule {
            path: "slow.rego".into(),
            source: "package policies\nimport rego.v1\nallow if count([x | some x in numbers.range(1, 5000000)]) > 0\n".into(),
        };
        let limited =
            RegoPolicies::compile(std::slice::from_ref(&slow), Some(Duration::from_millis(5)))
                .unwrap();
        let started = Instant::now();
        let err = limited.eval("allow", &json!({})).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "stopped near the limit, took {:?}",
            started.elapsed()
        );
        assert!(err.is_time_limit(), "{err}");
        assert!(!limited.allows("allow", &json!({})));
    }
}
