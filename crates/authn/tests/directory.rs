//! The directory against a real SQLite store: keys and memberships follow committed changes at
//! once, and activity reaches the store in batches.

use portcullis_authn::{ActivityFlusher, Directory, api_key};
use portcullis_model::{MembershipStatus, OrgRole, UserKind};
use portcullis_store::{Actor, BootstrapAdmin, NewUser, Store};

/// The wall clock, in milliseconds.
fn now() -> i64 {
    portcullis_store::now_millis()
}

/// A store in a directory of its own, bootstrapped with an admin and its key.
struct Booted {
    _dir: tempfile::TempDir,
    store: Store,
    org: portcullis_store::OrgRecord,
    /// The admin key's secret.
    secret: String,
}

/// A fresh store with its admin, whose key expires at `expiry` (ms) when given.
async fn booted(expiry: Option<i64>) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/d.db", dir.path().display()))
        .await
        .unwrap();
    let boot =
        api_key::generate("bootstrap", None, expiry.map(portcullis_model::Timestamp)).unwrap();
    let admin = BootstrapAdmin {
        email: "admin@localhost".into(),
        username: "admin".into(),
        key: boot.record,
    };
    let (org, _) = store.bootstrap(&admin).await.unwrap().unwrap();
    Booted {
        _dir: dir,
        store,
        org,
        secret: boot.secret,
    }
}

#[tokio::test]
async fn keys_and_memberships_follow_the_store() {
    let Booted {
        _dir,
        store,
        org,
        secret,
    } = booted(None).await;
    let (directory, feed) = Directory::load(&store).await.unwrap();

    let principal = directory
        .authenticate_api_key(&secret, now())
        .expect("bootstrap key works");
    assert_eq!(principal.user.email, "admin@localhost");
    assert!(
        directory
            .authenticate_api_key("pcl_not-a-key", now())
            .is_none()
    );
    assert!(directory.authenticate_api_key("", now()).is_none());

    let new = NewUser {
        email: "bot@example.com".into(),
        username: "bot".into(),
        display_name: String::new(),
        kind: UserKind::Machine,
        console_access: false,
        role: OrgRole::Member,
        platform_admin: false,
    };
    let actor = Actor::system();
    let bot = store.create_user(&actor, &org, &new).await.unwrap();
    let key = api_key::generate("ci", Some(org.id), None).unwrap();
    store
        .create_key(&actor, &bot.user, Some(&org), &key.record)
        .await
        .unwrap();
    assert!(
        directory.authenticate_api_key(&key.secret, now()).is_none(),
        "not refreshed yet"
    );
    directory.refresh_user(&store, bot.user.id).await.unwrap();
    let p = directory
        .authenticate_api_key(&key.secret, now())
        .expect("refreshed");
    assert_eq!(p.credential_org, Some(org.id));
    assert_eq!(
        p.user.memberships["default"].status,
        MembershipStatus::Active
    );

    store
        .set_member_status(&actor, &org, bot.user.id, MembershipStatus::Deactivated)
        .await
        .unwrap();
    directory.refresh_user(&store, bot.user.id).await.unwrap();
    let p = directory.authenticate_api_key(&key.secret, now()).unwrap();
    assert_eq!(
        p.user.memberships["default"].status,
        MembershipStatus::Deactivated
    );

    let keys = store.list_keys(bot.user.id, None).await.unwrap();
    store
        .delete_key(&actor, &bot.user, Some(&org), keys[0].id)
        .await
        .unwrap();
    directory.refresh_user(&store, bot.user.id).await.unwrap();
    assert!(
        directory.authenticate_api_key(&key.secret, now()).is_none(),
        "deleted key refused at once"
    );

    // Activity: the admin used a key above; a flush writes it.
    let mut flusher = ActivityFlusher::new(directory.clone(), store.clone(), feed);
    flusher.flush().await;
    let admin_creds = store
        .load_credentials(principal.user.id)
        .await
        .unwrap()
        .unwrap();
    assert!(admin_creds.user.last_access_at.is_some());
    assert!(admin_creds.keys[0].last_used_at.is_some());
}

#[tokio::test]
async fn keys_expire_by_the_clock_they_are_checked_with() {
    // An hour from now, by the clock the server is given (not the machine's).
    let expiry = now() + 3_600_000;
    let Booted {
        _dir,
        store,
        secret,
        ..
    } = booted(Some(expiry)).await;
    let (directory, _feed) = Directory::load(&store).await.unwrap();
    for (at, works) in [
        (now(), true),
        (expiry - 1, true),
        (expiry, false),
        (expiry + 86_400_000, false),
    ] {
        assert_eq!(
            directory.authenticate_api_key(&secret, at).is_some(),
            works,
            "at {at} (expiry {expiry})"
        );
    }
}

/// A connection that outlives its request (a websocket) is checked with
/// `session_still_live`: it must end where a request with the session would be refused.
#[tokio::test]
async fn a_session_outliving_its_request_ends_where_a_request_would_be_refused() {
    use portcullis_model::SessionId;
    use portcullis_store::{SessionRecord, SessionStage};
    let Booted {
        _dir,
        store,
        secret,
        ..
    } = booted(None).await;
    let (directory, _feed) = Directory::load(&store).await.unwrap();
    let user = directory
        .authenticate_api_key(&secret, now())
        .expect("bootstrap key works")
        .user
        .id;
    let t0 = now();
    // (stage, idle limit, checked this long after the last request, still live)
    let table = [
        (SessionStage::Active, None, 0, true),
        (SessionStage::Active, None, 3_600_000, true),
        (SessionStage::Active, Some(60_000), 60_000, true),
        (SessionStage::Active, Some(60_000), 60_001, false),
        (SessionStage::Active, None, 86_400_000, false),
        (SessionStage::PasswordChange, None, 0, false),
        (SessionStage::MfaEnrollment, None, 0, false),
    ];
    for (stage, idle_ms, after, live) in table {
        let record = SessionRecord {
            id: SessionId::new(),
            user_id: user,
            org_id: None,
            stage,
            created_at: t0,
            expires_at: t0 + 86_400_000,
            idle_ms,
            last_seen_at: t0,
            revoked_at: None,
            client: String::new(),
        };
        directory.session_opened(&record).await;
        assert_eq!(
            directory.session_still_live(record.id, t0 + after),
            live,
            "{stage:?}, idle {idle_ms:?}, {after} ms on"
        );
        assert_eq!(
            directory.session_principal(record.id, t0 + after).is_some(),
            live
        );
    }
}
