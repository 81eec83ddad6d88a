//! One Rego decision through the full path, input building included: seed 003's policies, an org
//! with 1,000 roles and 10,000 bindings; the user's bindings are found, their roles gathered, the
//! input document built and the rule evaluated. Prints p50 and p99 of single decisions measured
//! one by one, besides criterion's figures. Run: `cargo bench -p portcullis-api --bench rego_decision`.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_api::rbac::rond::{
    RequestSpec, RondIndex, input_document, input_value, read_modules,
};
use portcullis_authz::rego::RegoPolicies;
use portcullis_model::Timestamp;
use portcullis_store::{RondDocument, RondKind};
use serde_json::json;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

const PERMISSIONS: [&str; 4] = [
    "console.data-fabric.control-plane.view",
    "console.data-fabric.control-plane.edit",
    "console.data-fabric.control-plane.manage",
    "console.other.thing",
];

fn world() -> RondIndex {
    let mut rng = Rng(0xabcd_ef01_2345_6789);
    let doc = |id: String, document| RondDocument {
        id,
        document,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    };
    let mut docs = Vec::new();
    for r in 0..1_000 {
        let permissions: Vec<&str> = (0..2)
            .map(|_| PERMISSIONS[rng.below(PERMISSIONS.len())])
            .collect();
        docs.push((
            "default".to_owned(),
            RondKind::Role,
            doc(
                format!("role-{r}"),
                json!({"roleId": format!("role-{r}"), "permissions": permissions}),
            ),
        ));
    }
    for b in 0..10_000 {
        let subjects: Vec<String> = (0..3)
            .map(|_| format!("user-{}", rng.below(5_000)))
            .collect();
        let roles: Vec<String> = (0..2)
            .map(|_| format!("role-{}", rng.below(1_000)))
            .collect();
        let groups: Vec<String> = if b % 10 == 0 {
            vec![format!("group-{}", rng.below(100))]
        } else {
            Vec::new()
        };
        docs.push(("default".to_owned(), RondKind::Binding, doc(format!("b-{b}"), json!({"bindingId": format!("b-{b}"), "subjects": subjects, "groups": groups, "roles": roles}))));
    }
    RondIndex::build(docs)
}

fn bench(c: &mut Criterion) {
    let index = world();
    let modules = read_modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rego/policies.rego"),
    )
    .unwrap();
    let rego = RegoPolicies::compile(&modules, None).unwrap();
    let request = RequestSpec {
        method: "GET".into(),
        path: "/control-plane".into(),
        ..Default::default()
    };
    let mut rng = Rng(7);
    let users: Vec<(String, Vec<String>)> = (0..1024)
        .map(|_| {
            (
                format!("user-{}", rng.below(5_000)),
                vec![format!("group-{}", rng.below(100))],
            )
        })
        .collect();
    let properties = json!({});
    // The decision path: the user's bindings and roles shared into the engine's input form.
    let decide = |i: usize| {
        let (user, groups) = &users[i & 1023];
        let found = index.user("default", &[user.as_str()], groups);
        let input = input_value(&request, user, &properties, groups, &found, None);
        rego.allows_value("fd_control_plane_allow_view", &input)
    };
    // Reference in the same run: the same decision with the input built as JSON and converted.
    let decide_json = |i: usize| {
        let (user, groups) = &users[i & 1023];
        let (bindings, roles) = index.for_user("default", &[user.as_str()], groups);
        let input = input_document(&request, user, json!({}), groups, bindings, roles);
        rego.allows("fd_control_plane_allow_view", &input)
    };
    let roles_per_user: usize = (0..1024)
        .map(|i| {
            let (user, groups) = &users[i];
            index
                .user("default", &[user.as_str()], groups)
                .roles_json()
                .len()
        })
        .sum::<usize>()
        / 1024;
    eprintln!("roles per user (mean): {roles_per_user}");
    assert!(
        (0..1024).all(|i| decide(i) == decide_json(i)),
        "both paths agree"
    );

    // Warm caches and the allocator first, then time single decisions one by one.
    for i in 0..20_000 {
        black_box(decide(i));
    }
    // Single decisions timed one by one, for the percentiles.
    let mut samples: Vec<u128> = (0..20_000)
        .map(|i| {
            let started = Instant::now();
            black_box(decide(i));
            started.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    let allowed = (0..1024).filter(|&i| decide(i)).count();
    eprintln!(
        "rego decision, full path: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({allowed}/1024 users allowed)",
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );

    let mut i = 0;
    c.bench_function("rego_decision_full_path", |b| {
        b.iter(|| {
            i += 1;
            black_box(decide(i))
        })
    });
    let mut i = 0;
    c.bench_function("rego_decision_json_input_reference", |b| {
        b.iter(|| {
            i += 1;
            black_box(decide_json(i))
        })
    });
    let mut i = 0;
    c.bench_function("rego_input_building_only", |b| {
        b.iter(|| {
            i += 1;
            let (user, groups) = &users[i & 1023];
            let found = index.user("default", &[user.as_str()], groups);
            black_box(input_value(
                &request,
                user,
                &properties,
                groups,
                &found,
                None,
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
