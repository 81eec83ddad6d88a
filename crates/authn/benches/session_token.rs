//! Verifying one session token on the request path: the EdDSA signature and claims, then the
//! session's state in memory (revoked, absolute end, idle), with 10,000 live sessions; and the
//! same for a token this replica has verified before (a digest lookup). The reference measured
//! in the same run is the bare Ed25519 signature check of the same token. Run:
//! `cargo bench -p portcullis-authn --bench session_token`.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use portcullis_authn::tokens::{SessionClaims, TokenUser};
use portcullis_authn::{Directory, KeyRing, SecretBox, SessionCheck};
use portcullis_model::{MembershipStatus, OrgId, OrgRole, SessionId, Timestamp, UserId, UserKind};
use portcullis_store::{
    CredentialMembership, CredentialUser, SessionRecord, SessionStage, Store, UserRecord,
};

fn user(u: usize, org: OrgId) -> CredentialUser {
    CredentialUser {
        user: UserRecord {
            id: UserId::new(),
            email: format!("user{u}@example.com"),
            username: format!("user{u}"),
            display_name: String::new(),
            kind: UserKind::Local,
            console_access: true,
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
        keys: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let now = portcullis_model::Clock::system().now_millis();
    let (ring, directory, token) = runtime.block_on(async {
        let store = Store::connect(&format!("sqlite://{}/bench.db", dir.path().display()))
            .await
            .expect("store");
        let ring = KeyRing::load(
            &store,
            SecretBox::from_key(&[9; 32]),
            "https://portcullis.example".into(),
            "portcullis".into(),
            now,
        )
        .await
        .expect("keys");
        let org = OrgId::new();
        let users: Vec<CredentialUser> = (0..10_000).map(|u| user(u, org)).collect();
        let (directory, feed) = Directory::from_credentials(&users);
        std::mem::forget(feed);
        let mut sample = None;
        for u in &users {
            let record = SessionRecord {
                id: SessionId::new(),
                user_id: u.user.id,
                org_id: Some(org),
                stage: SessionStage::Active,
                created_at: now,
                expires_at: now + 24 * 3_600_000,
                idle_ms: Some(3_600_000),
                last_seen_at: now,
                revoked_at: None,
                client: String::new(),
            };
            directory.session_opened(&record).await;
            sample.get_or_insert((u.user.clone(), record));
        }
        let (u, session) = sample.expect("a session");
        let claims = SessionClaims {
            sub: u.id.to_string(),
            iss: ring.issuer().into(),
            aud: ring.audience().into(),
            exp: ((now + 3_600_000) / 1000) as u64,
            iat: (now / 1000) as u64,
            jti: "bench".into(),
            sid: session.id.to_string(),
            org: Some("default".into()),
            user: TokenUser {
                user_id: u.id.to_string(),
                groups: vec!["developers".into(), "platform".into()],
                email: u.email.clone(),
                name: u.username.clone(),
            },
        };
        let token = ring.sign(&claims, now).expect("sign");
        (ring, directory, token)
    });
    let jwk = ring.jwks();
    let x = URL_SAFE_NO_PAD
        .decode(jwk["keys"][0]["x"].as_str().expect("x"))
        .expect("base64");
    let key = VerifyingKey::from_bytes(&x.try_into().expect("32 bytes")).expect("key");
    let (signed, sig) = token.rsplit_once('.').expect("jwt");
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).expect("sig")).expect("sig");
    let now_secs = (now / 1000) as u64;

    let mut group = c.benchmark_group("session_token");
    group.bench_function("ed25519_verify_only_reference", |b| {
        b.iter(|| key.verify(black_box(signed.as_bytes()), &sig).is_ok())
    });
    group.bench_function("verify_token_and_session_10k_sessions", |b| {
        b.iter(|| {
            let claims = ring.verify(black_box(&token), now_secs).expect("valid");
            let sid: SessionId = claims.sid.parse().expect("sid");
            matches!(
                directory.authenticate_session_cached(sid, now),
                Some(SessionCheck::Live(_))
            )
        })
    });
    group.bench_function("repeat_token_cached_and_session_10k_sessions", |b| {
        b.iter(|| {
            let sid: SessionId = ring
                .session_of(black_box(&token), now_secs)
                .expect("valid")
                .parse()
                .expect("sid");
            matches!(
                directory.authenticate_session_cached(sid, now),
                Some(SessionCheck::Live(_))
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
