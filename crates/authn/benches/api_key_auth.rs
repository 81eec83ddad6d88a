//! Authenticating one request by API key, with 100,000 keys loaded (and 1,000 for comparison).
//! Reference measured in the same run: the two SHA-256 digests alone, the floor of any
//! hashed-key lookup. Run: `cargo bench -p portcullis-authn --bench api_key_auth`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_authn::{Directory, KeyDigest, api_key};
use portcullis_model::{MembershipStatus, OrgId, OrgRole, Timestamp, UserId, UserKind};
use portcullis_store::{CredentialMembership, CredentialUser, KeyRecord, UserRecord};

/// `users` users with `keys_each` keys; returns the credentials and one valid key.
fn credentials(users: usize, keys_each: usize) -> (Vec<CredentialUser>, String) {
    let org = OrgId::new();
    let mut sample = String::new();
    let all = (0..users)
        .map(|u| {
            let id = UserId::new();
            let keys = (0..keys_each)
                .map(|k| {
                    let generated = api_key::generate(&format!("k{k}"), None, None).unwrap();
                    if sample.is_empty() {
                        sample = generated.secret.clone();
                    }
                    let r = generated.record;
                    KeyRecord {
                        id: r.id,
                        user_id: id,
                        org_id: r.org_id,
                        name: r.name,
                        prefix: r.prefix,
                        lookup: r.lookup,
                        hash: r.hash,
                        created_at: Timestamp(0),
                        last_used_at: None,
                        expires_at: None,
                    }
                })
                .collect();
            CredentialUser {
                user: UserRecord {
                    id,
                    email: format!("user{u}@example.com"),
                    username: format!("user{u}"),
                    display_name: String::new(),
                    kind: UserKind::Machine,
                    console_access: false,
                    platform_admin: false,
                    last_access_at: None,
                    created_at: Timestamp(0),
                    updated_at: Timestamp(0),
                },
                memberships: vec![CredentialMembership {
                    org_id: org,
                    slug: "default".into(),
                    role: OrgRole::Member,
                    status: MembershipStatus::Active,
                }],
                keys,
            }
        })
        .collect();
    (all, sample)
}

fn bench(c: &mut Criterion) {
    let (big, big_key) = credentials(10_000, 10);
    let (big_dir, _feed_big) = Directory::from_credentials(&big);
    assert_eq!(big_dir.sizes().0, 100_000);
    let (small, small_key) = credentials(100, 10);
    let (small_dir, _feed_small) = Directory::from_credentials(&small);
    let wrong = format!("{}x", &big_key[..big_key.len() - 1]);

    let now = portcullis_store::now_millis();
    let mut group = c.benchmark_group("api_key_auth");
    group.bench_function("digests_only_reference", |b| {
        b.iter(|| KeyDigest::of(black_box(big_key.as_bytes())))
    });
    group.bench_function("valid_key_100k_keys", |b| {
        b.iter(|| {
            big_dir
                .authenticate_api_key(black_box(&big_key), now)
                .is_some()
        })
    });
    group.bench_function("valid_key_1k_keys", |b| {
        b.iter(|| {
            small_dir
                .authenticate_api_key(black_box(&small_key), now)
                .is_some()
        })
    });
    group.bench_function("unknown_key_100k_keys", |b| {
        b.iter(|| {
            big_dir
                .authenticate_api_key(black_box(&wrong), now)
                .is_none()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
