//! RBAC decisions: Portcullis at 1,000, 100,000 and 1,000,000 `p`/`g` lines with 100,000 users
//! in nested groups; casbin-rs (the reference's engine family, Rust port) on the same 10,000-line
//! policy; and the time to load a 100,000-line policy CSV.
//!
//! Run: `cargo bench --manifest-path bench/rbac/Cargo.toml`

use std::fmt::Write;
use std::hint::black_box;
use std::time::Instant;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_authz::rbac::{
    Action, GroupGraph, PermissionQuery, RbacConfig, RbacSnapshot, parse_policy_csv,
};

const MODEL: &str = "
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[role_definition]
g = _, _

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
";

const USERS: usize = 100_000;
const GROUPS: usize = 5_000;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// 100,000 users, each in 2 of 5,000 groups; groups nested three levels (group i's parent is
/// i / 10), so a user reaches about 8 groups.
fn identity(rng: &mut Rng) -> GroupGraph {
    let mut graph = GroupGraph::default();
    for u in 0..USERS {
        let groups = vec![
            format!("group:default/g{}", rng.below(GROUPS)),
            format!("group:default/g{}", rng.below(GROUPS)),
        ];
        graph
            .user_groups
            .insert(format!("user:default/u{u}"), groups);
    }
    for g in 1..GROUPS {
        graph.group_parents.insert(
            format!("group:default/g{g}"),
            vec![format!("group:default/g{}", g / 10)],
        );
    }
    graph
}

/// `lines` policy lines: 200 `g` lines give the 200 top groups one role each (so every user
/// reaches about the same number of roles at every size, through the group hierarchy), the rest
/// are `p` lines on those roles (and some on groups), one deny in ten. Only the number of lines
/// grows: the shape of a principal stays the same.
fn policy_csv(rng: &mut Rng, lines: usize) -> String {
    const ROLES: usize = 200;
    let permissions = (lines / 20).max(20);
    let mut csv = String::with_capacity(lines * 60);
    for i in 0..lines {
        if i < ROLES {
            let _ = writeln!(csv, "g, group:default/g{i}, role:default/r{i}");
        } else {
            let subject = if rng.below(10) == 0 { format!("group:default/g{}", rng.below(GROUPS)) } else { format!("role:default/r{}", rng.below(ROLES)) };
            let effect = if rng.below(10) == 0 { "deny" } else { "allow" };
            let _ = writeln!(csv, "p, {subject}, plugin.p{}, read, {effect}", rng.below(permissions));
        }
    }
    csv
}

fn queries(rng: &mut Rng, lines: usize) -> Vec<(String, String)> {
    let permissions = (lines / 20).max(20);
    (0..1024)
        .map(|_| {
            (
                format!("user:default/u{}", rng.below(USERS)),
                format!("plugin.p{}", rng.below(permissions)),
            )
        })
        .collect()
}

fn portcullis(c: &mut Criterion) {
    let mut rng = Rng(0x0bad_5eed_1234_5678);
    let graph = identity(&mut rng);
    let mut group = c.benchmark_group("rbac_decision");
    for lines in [1_000, 100_000, 1_000_000] {
        let csv = policy_csv(&mut rng, lines);
        let started = Instant::now();
        let parsed = parse_policy_csv("bench.csv", &csv);
        let snapshot = RbacSnapshot::build(
            &parsed.policies,
            &parsed.members,
            &[],
            &graph,
            &RbacConfig::default(),
        );
        eprintln!(
            "{lines} lines: parsed and compiled with 100,000 users in {:?}",
            started.elapsed()
        );
        let qs = queries(&mut rng, lines);
        let mut i = 0;
        group.bench_function(format!("portcullis_{lines}_lines"), |b| {
            b.iter(|| {
                let (user, name) = &qs[i & 1023];
                i += 1;
                black_box(snapshot.decide(
                    user,
                    &PermissionQuery {
                        name,
                        resource_type: None,
                        action: Some(Action::Read),
                    },
                    false,
                ))
            })
        });
    }

    // casbin-rs on the same 10,000-line policy (and the same identity as g lines).
    let csv = policy_csv(&mut rng, 10_000);
    let parsed = parse_policy_csv("bench.csv", &csv);
    let snapshot = RbacSnapshot::build(
        &parsed.policies,
        &parsed.members,
        &[],
        &graph,
        &RbacConfig::default(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let enforcer = runtime.block_on(async {
        let mut e = Enforcer::new(
            DefaultModel::from_str(MODEL).await.unwrap(),
            MemoryAdapter::default(),
        )
        .await
        .unwrap();
        let p: Vec<Vec<String>> = parsed
            .policies
            .iter()
            .map(|p| {
                vec![
                    p.subject.to_string(),
                    p.permission.clone(),
                    p.action.as_str().into(),
                    p.effect.as_str().into(),
                ]
            })
            .collect();
        e.add_policies(p).await.unwrap();
        let mut g: Vec<Vec<String>> = parsed
            .members
            .iter()
            .map(|m| vec![m.member.to_string(), m.role.to_string()])
            .collect();
        for (user, groups) in &graph.user_groups {
            g.extend(groups.iter().map(|gr| vec![user.clone(), gr.clone()]));
        }
        for (child, parents) in &graph.group_parents {
            g.extend(parents.iter().map(|p| vec![child.clone(), p.clone()]));
        }
        e.add_grouping_policies(g).await.unwrap();
        e
    });
    let qs = queries(&mut rng, 10_000);
    // Both engines agree on these queries (a sanity check that the comparison is fair).
    for (user, name) in qs.iter().take(200) {
        let ours = snapshot
            .decide(
                user,
                &PermissionQuery {
                    name,
                    resource_type: None,
                    action: Some(Action::Read),
                },
                false,
            )
            .outcome
            == portcullis_authz::rbac::Outcome::Allow;
        let theirs = enforcer
            .enforce((user.as_str(), name.as_str(), "read"))
            .unwrap();
        assert_eq!(ours, theirs, "{user} {name}");
    }
    let mut i = 0;
    group.bench_function("portcullis_10000_lines", |b| {
        b.iter(|| {
            let (user, name) = &qs[i & 1023];
            i += 1;
            black_box(snapshot.decide(
                user,
                &PermissionQuery {
                    name,
                    resource_type: None,
                    action: Some(Action::Read),
                },
                false,
            ))
        })
    });
    let mut i = 0;
    group.sample_size(10);
    group.bench_function("casbin_rs_10000_lines", |b| {
        b.iter(|| {
            let (user, name) = &qs[i & 1023];
            i += 1;
            black_box(
                enforcer
                    .enforce((user.as_str(), name.as_str(), "read"))
                    .unwrap(),
            )
        })
    });
    group.finish();

    // Loading a 100,000-line policy file at start.
    let csv = policy_csv(&mut rng, 100_000);
    c.bench_function("load_100000_line_csv", |b| {
        b.iter(|| {
            let parsed = parse_policy_csv("bench.csv", black_box(&csv));
            RbacSnapshot::build(
                &parsed.policies,
                &parsed.members,
                &[],
                &graph,
                &RbacConfig::default(),
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = portcullis
}
criterion_main!(benches);
