//! Differential test: generated worlds of users, nested groups, roles, allow and deny lines,
//! decided by Portcullis and by node-casbin with the reference plugin's model. Wherever casbin
//! decides (a plain subject/object/action request), the decisions must be identical; the
//! name-over-type rule and conditions are layered on top by the reference too, so queries here
//! are basic permissions.
//!
//! Needs `node` and `npm install` in `tests/casbin` (`.ci/run` does it); skipped with a message
//! elsewhere, required when `CI=true`.

use std::path::Path;
use std::process::Command;

use portcullis_authz::rbac::{
    Action, Effect, GroupGraph, Outcome, PermissionQuery, PolicyLine, RbacConfig, RbacSnapshot,
    RoleMember,
};
use portcullis_model::{EntityRef, Expect};
use serde_json::json;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn reference_ready(dir: &Path) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let casbin = dir.join("node_modules/casbin/package.json").exists();
    if node && casbin {
        return true;
    }
    let why = if node {
        "run `npm install` in crates/authz/tests/casbin"
    } else {
        "node is not installed"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the casbin differential test must run in CI: {why}");
    }
    eprintln!("skipping the casbin differential test: {why}");
    false
}

#[test]
fn decisions_match_node_casbin() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/casbin");
    if !reference_ready(&dir) {
        return;
    }
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let users: Vec<String> = (0..60).map(|i| format!("user:default/u{i}")).collect();
    let groups: Vec<String> = (0..25).map(|i| format!("group:default/g{i}")).collect();
    let roles: Vec<String> = (0..12).map(|i| format!("role:default/r{i}")).collect();
    let objects: Vec<String> = (0..15).map(|i| format!("plugin.thing{i}")).collect();
    let actions = Action::ALL;

    // Nested groups without cycles: a group's parents have higher numbers.
    let mut graph = GroupGraph::default();
    let mut groupings: Vec<[String; 2]> = Vec::new();
    for u in &users {
        for _ in 0..rng.below(3) {
            let g = groups[rng.below(groups.len())].clone();
            graph
                .user_groups
                .entry(u.clone())
                .or_default()
                .push(g.clone());
            groupings.push([u.clone(), g]);
        }
    }
    for (i, g) in groups.iter().enumerate().take(groups.len() - 1) {
        for _ in 0..rng.below(3) {
            let parent = groups[i + 1 + rng.below(groups.len() - i - 1)].clone();
            graph
                .group_parents
                .entry(g.clone())
                .or_default()
                .push(parent.clone());
            groupings.push([g.clone(), parent]);
        }
    }
    // Roles held by users and groups (`g` lines).
    let mut members = Vec::new();
    for _ in 0..80 {
        let member = if rng.below(2) == 0 {
            &users[rng.below(users.len())]
        } else {
            &groups[rng.below(groups.len())]
        };
        let role = &roles[rng.below(roles.len())];
        members.push(RoleMember {
            member: EntityRef::parse(member, Expect::Member).unwrap(),
            role: EntityRef::parse(role, Expect::Role).unwrap(),
        });
        groupings.push([member.clone(), role.clone()]);
    }
    // Policies on roles, groups and users; deny about one time in four.
    let mut policies = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..400 {
        let subject = match rng.below(4) {
            0 => &users[rng.below(users.len())],
            1 => &groups[rng.below(groups.len())],
            _ => &roles[rng.below(roles.len())],
        };
        let object = &objects[rng.below(objects.len())];
        let action = actions[rng.below(actions.len())];
        let effect = if rng.below(4) == 0 {
            Effect::Deny
        } else {
            Effect::Allow
        };
        let line = PolicyLine {
            subject: EntityRef::parse(subject, Expect::Any).unwrap(),
            permission: object.clone(),
            action,
            effect,
        };
        if policies.contains(&line) {
            continue;
        }
        rows.push([
            subject.clone(),
            object.clone(),
            action.as_str().to_owned(),
            effect.as_str().to_owned(),
        ]);
        policies.push(line);
    }
    let queries: Vec<(String, String, Action)> = (0..10_000)
        .map(|_| {
            (
                users[rng.below(users.len())].clone(),
                objects[rng.below(objects.len())].clone(),
                actions[rng.below(actions.len())],
            )
        })
        .collect();

    let input = json!({
        "policies": rows,
        "groupings": groupings,
        "queries": queries.iter().map(|(s, o, a)| [s.as_str(), o.as_str(), a.as_str()]).collect::<Vec<_>>(),
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), input.to_string()).unwrap();
    let out = Command::new("node")
        .arg(dir.join("decide.mjs"))
        .arg(file.path())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reference.len(), queries.len());

    let snapshot = RbacSnapshot::build(&policies, &members, &[], &graph, &RbacConfig::default());
    let mut allowed = 0;
    let mut mismatches = Vec::new();
    for ((user, object, action), want) in queries.iter().zip(&reference) {
        let d = snapshot.decide(
            user,
            &PermissionQuery {
                name: object,
                resource_type: None,
                action: Some(*action),
            },
            false,
        );
        let got = d.outcome == Outcome::Allow;
        allowed += usize::from(got);
        if got != *want {
            mismatches.push(format!(
                "{user} {object} {}: portcullis {got}, casbin {want}",
                action.as_str()
            ));
        }
    }
    eprintln!(
        "{} queries, {allowed} allowed, {} mismatches",
        queries.len(),
        mismatches.len()
    );
    assert!(
        allowed > 500 && allowed < 9_500,
        "the generated world should exercise both outcomes ({allowed} allowed)"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}
