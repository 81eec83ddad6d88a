//! The store test suite. Every test runs on SQLite and, when `PORTCULLIS_TEST_POSTGRES_URL` is
//! set, on PostgreSQL in a database of its own (required when `CI=true`).

use std::future::Future;

use portcullis_model::{KeyId, MembershipStatus, OrgId, OrgRole, ProjectRole, UserId, UserKind};
use portcullis_store::{
    Actor, AuditFilter, BootstrapAdmin, GroupMember, NewAuditRecord, NewKey, NewUser, OrgRecord,
    Page, Store, StoreError, UserFilter, UserPatch,
};
use sqlx::Connection;

/// A database for one test, removed afterwards.
struct TestDb {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    TestDb {
        store,
        url,
        _dir: Some(dir),
        pg_drop: None,
    }
}

async fn postgres_db() -> Option<TestDb> {
    let Ok(base) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "PORTCULLIS_TEST_POSTGRES_URL must be set in CI: the store suite runs on PostgreSQL there"
            );
        }
        eprintln!("skipping PostgreSQL: PORTCULLIS_TEST_POSTGRES_URL is not set");
        return None;
    };
    let name = format!("portcullis_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to PORTCULLIS_TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
    let (prefix, _) = base.rsplit_once('/').expect("URL ends in /DATABASE");
    let url = format!("{prefix}/{name}");
    let store = Store::connect(&url).await.unwrap();
    Some(TestDb {
        store,
        url,
        _dir: None,
        pg_drop: Some((base, name)),
    })
}

impl TestDb {
    async fn finish(self) {
        self.store.close().await;
        if let Some((base, name)) = self.pg_drop {
            let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .ok();
        }
    }
}

/// Runs `test` on every available backend.
async fn on_every_backend<F, Fut>(test: F)
where
    F: Fn(Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = sqlite_db().await;
    test(db.store.clone(), db.url.clone()).await;
    db.finish().await;
    if let Some(db) = postgres_db().await {
        test(db.store.clone(), db.url.clone()).await;
        db.finish().await;
    }
}

fn actor() -> Actor {
    Actor {
        user_id: None,
        name: "tester".into(),
        impersonator: None,
        request_id: Some("req-1".into()),
    }
}

fn new_key(name: &str, lookup: &str, org: Option<OrgId>) -> NewKey {
    NewKey {
        id: KeyId::new(),
        name: name.into(),
        prefix: "pcl_test".into(),
        lookup: lookup.into(),
        hash: format!("{lookup}-hash"),
        org_id: org,
        expires_at: None,
    }
}

fn new_user(email: &str, username: &str, kind: UserKind) -> NewUser {
    NewUser {
        email: email.into(),
        username: username.into(),
        display_name: String::new(),
        kind,
        console_access: true,
        role: OrgRole::Member,
        platform_admin: false,
    }
}

/// A new local member of `org` with `role`, named `name` (email `name@example.com`).
async fn member(store: &Store, org: &OrgRecord, name: &str, role: OrgRole) -> UserId {
    let mut new = new_user(&format!("{name}@example.com"), name, UserKind::Local);
    new.role = role;
    store
        .create_user(&actor(), org, &new)
        .await
        .unwrap()
        .user
        .id
}

async fn bootstrapped(store: &Store) -> OrgRecord {
    let admin = BootstrapAdmin {
        email: "admin@localhost".into(),
        username: "admin".into(),
        key: new_key("bootstrap", "boot", None),
    };
    store
        .bootstrap(&admin)
        .await
        .unwrap()
        .expect("fresh database bootstraps")
        .0
}

async fn audit_count(store: &Store, org: &OrgRecord, action: &str) -> i64 {
    let filter = AuditFilter {
        orgs: vec![org.id],
        action: Some(action.into()),
        ..Default::default()
    };
    store
        .list_audit(&filter, Page::default())
        .await
        .unwrap()
        .total
}

#[tokio::test]
async fn bootstrap_happens_once_and_migrations_are_idempotent() {
    on_every_backend(|store, url| async move {
        assert!(store.is_empty().await.unwrap());
        let org = bootstrapped(&store).await;
        assert_eq!(org.slug, "default");
        let again = BootstrapAdmin {
            email: "other@localhost".into(),
            username: "other".into(),
            key: new_key("k", "other", None),
        };
        assert!(store.bootstrap(&again).await.unwrap().is_none());
        // Connecting again applies no migration twice and keeps the data.
        let reopened = Store::connect(&url).await.unwrap();
        assert!(!reopened.is_empty().await.unwrap());
        reopened.close().await;
        let all = store.load_all_credentials().await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].user.platform_admin);
        assert_eq!(all[0].keys.len(), 1);
        assert_eq!(all[0].memberships[0].role, OrgRole::Admin);
        assert_eq!(audit_count(&store, &org, "org.create").await, 1);
        assert_eq!(audit_count(&store, &org, "user.create").await, 1);
        assert_eq!(audit_count(&store, &org, "key.create").await, 1);
    })
    .await;
}

#[tokio::test]
async fn emails_and_usernames_are_unique_in_any_letter_case_and_failures_leave_nothing() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        let other = store
            .create_org(&actor(), "other", "Other", None)
            .await
            .unwrap();
        store
            .create_user(
                &actor(),
                &org,
                &new_user("Alice@Example.com", "alice", UserKind::Local),
            )
            .await
            .unwrap();
        let before = audit_count(&store, &other, "user.create").await;
        let err = store
            .create_user(
                &actor(),
                &other,
                &new_user("alice@EXAMPLE.com", "alice2", UserKind::Local),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("email")),
            "{err:?}"
        );
        let err = store
            .create_user(
                &actor(),
                &other,
                &new_user("bob@example.com", "ALICE", UserKind::Local),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("username")),
            "{err:?}"
        );
        // Nothing half-written: no user, no membership, no audit record.
        assert_eq!(audit_count(&store, &other, "user.create").await, before);
        assert_eq!(
            store
                .list_members(&other, &UserFilter::default(), Page::default())
                .await
                .unwrap()
                .total,
            0
        );
        let dup = store
            .create_org(&actor(), "other", "Again", None)
            .await
            .unwrap_err();
        assert!(matches!(dup, StoreError::Conflict(_)));
    })
    .await;
}

#[tokio::test]
async fn users_are_listed_with_filters_and_paging() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        for i in 0..7 {
            let kind = if i % 2 == 0 {
                UserKind::Local
            } else {
                UserKind::Machine
            };
            store
                .create_user(
                    &actor(),
                    &org,
                    &new_user(&format!("user{i}@corp.example"), &format!("user{i}"), kind),
                )
                .await
                .unwrap();
        }
        let ci = store
            .create_user(
                &actor(),
                &org,
                &new_user("ci_bot%@corp.example", "ci-bot", UserKind::Machine),
            )
            .await
            .unwrap();
        assert!(!ci.user.console_access, "machines never get console access");
        let all = store
            .list_members(
                &org,
                &UserFilter::default(),
                Page {
                    limit: 3,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(all.total, 9);
        assert_eq!(all.items.len(), 3);
        let last = store
            .list_members(
                &org,
                &UserFilter::default(),
                Page {
                    limit: 3,
                    offset: 8,
                },
            )
            .await
            .unwrap();
        assert_eq!(last.items.len(), 1);
        let machines = UserFilter {
            kind: Some(UserKind::Machine),
            ..Default::default()
        };
        assert_eq!(
            store
                .list_members(&org, &machines, Page::default())
                .await
                .unwrap()
                .total,
            4
        );
        let by_email = UserFilter {
            email: Some("USER3@".into()),
            ..Default::default()
        };
        let found = store
            .list_members(&org, &by_email, Page::default())
            .await
            .unwrap();
        assert_eq!(
            found
                .items
                .iter()
                .map(|m| m.user.username.as_str())
                .collect::<Vec<_>>(),
            ["user3"]
        );
        // LIKE wildcards in the filter are taken literally.
        let literal = UserFilter {
            email: Some("%".into()),
            ..Default::default()
        };
        assert_eq!(
            store
                .list_members(&org, &literal, Page::default())
                .await
                .unwrap()
                .total,
            1
        );
        store
            .create_group(&actor(), &org, "team-a", "")
            .await
            .unwrap();
        store
            .add_user_to_group(&actor(), &org, "team-a", ci.user.id)
            .await
            .unwrap();
        let in_group = UserFilter {
            group: Some("TEAM-A".into()),
            ..Default::default()
        };
        let found = store
            .list_members(&org, &in_group, Page::default())
            .await
            .unwrap();
        assert_eq!(found.total, 1);
        assert_eq!(found.items[0].groups, ["team-a"]);
    })
    .await;
}

#[tokio::test]
async fn deactivation_suspends_projects_and_reactivation_restores_them() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        let other = store
            .create_org(&actor(), "other", "Other", None)
            .await
            .unwrap();
        let bob = store
            .create_user(
                &actor(),
                &org,
                &new_user("bob@example.com", "bob", UserKind::Local),
            )
            .await
            .unwrap();
        store
            .add_member(&actor(), &other, "BOB@example.com", OrgRole::Member)
            .await
            .unwrap();
        store
            .create_project(&actor(), &org, "staging", "")
            .await
            .unwrap();
        store
            .set_project_member(&actor(), &org, "staging", bob.user.id, ProjectRole::Admin)
            .await
            .unwrap();

        let off = store
            .set_member_status(&actor(), &org, bob.user.id, MembershipStatus::Deactivated)
            .await
            .unwrap();
        assert_eq!(off.status, MembershipStatus::Deactivated);
        assert!(off.projects.iter().all(|p| p.suspended));
        let on = store
            .set_member_status(&actor(), &org, bob.user.id, MembershipStatus::Active)
            .await
            .unwrap();
        assert_eq!(on.projects.len(), 1);
        assert!(!on.projects[0].suspended);
        assert_eq!(on.projects[0].role, ProjectRole::Admin);

        let bound = store
            .create_key(
                &actor(),
                &bob.user,
                Some(&org),
                &new_key("org-bound", "bound", Some(org.id)),
            )
            .await
            .unwrap();
        store
            .create_key(
                &actor(),
                &bob.user,
                None,
                &new_key("everywhere", "free", None),
            )
            .await
            .unwrap();
        store
            .remove_member(&actor(), &org, bob.user.id)
            .await
            .unwrap();
        assert!(matches!(
            store.get_member(&org, bob.user.id).await,
            Err(StoreError::NotFound(_))
        ));
        let creds = store.load_credentials(bob.user.id).await.unwrap().unwrap();
        assert_eq!(
            creds.memberships.len(),
            1,
            "the other org's membership stays"
        );
        assert_eq!(creds.memberships[0].slug, "other");
        assert!(
            creds.keys.iter().all(|k| k.id != bound.id),
            "keys bound to the org leave with the member"
        );
        assert_eq!(creds.keys.len(), 1);
        // A key bound to the org cannot be made once the member is gone, even by a caller that
        // checked membership before (as a request racing the removal did).
        let late = store
            .create_key(
                &actor(),
                &bob.user,
                Some(&org),
                &new_key("too-late", "late", Some(org.id)),
            )
            .await;
        assert!(matches!(late, Err(StoreError::NotFound(_))), "{late:?}");
        let creds = store.load_credentials(bob.user.id).await.unwrap().unwrap();
        assert_eq!(creds.keys.len(), 1, "nothing was half-written");
        assert!(
            store
                .project_members(&org, "staging")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            audit_count(&store, &org, "user.").await,
            5,
            "admin and bob created, deactivated, reactivated, removed"
        );
    })
    .await;
}

#[tokio::test]
async fn nested_groups_refuse_cycles() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        for g in ["a", "b", "c"] {
            store.create_group(&actor(), &org, g, "").await.unwrap();
        }
        store
            .add_group_to_group(&actor(), &org, "a", "b")
            .await
            .unwrap();
        store
            .add_group_to_group(&actor(), &org, "b", "c")
            .await
            .unwrap();
        let err = store
            .add_group_to_group(&actor(), &org, "c", "a")
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("cycle")),
            "{err:?}"
        );
        assert!(matches!(
            store.add_group_to_group(&actor(), &org, "a", "a").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.add_group_to_group(&actor(), &org, "a", "b").await,
            Err(StoreError::Conflict(_))
        ));
        let members = store.group_members(&org, "a").await.unwrap();
        assert_eq!(members.groups, [GroupMember::Group("b".into())]);
        store.delete_group(&actor(), &org, "b").await.unwrap();
        assert!(
            store
                .group_members(&org, "a")
                .await
                .unwrap()
                .groups
                .is_empty()
        );
        assert!(matches!(
            store.get_group(&org, "b").await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn projects_rename_and_delete() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        store
            .create_project(&actor(), &org, "staging", "pre-prod")
            .await
            .unwrap();
        store
            .create_project(&actor(), &org, "prod", "")
            .await
            .unwrap();
        let clash = store
            .update_project(&actor(), &org, "staging", Some("prod"), None)
            .await
            .unwrap_err();
        assert!(matches!(clash, StoreError::Conflict(_)));
        let renamed = store
            .update_project(&actor(), &org, "staging", Some("qa"), None)
            .await
            .unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.description.as_str()),
            ("qa", "pre-prod")
        );
        store.delete_project(&actor(), &org, "qa").await.unwrap();
        let names: Vec<_> = store
            .list_projects(&org)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["prod"]);
    })
    .await;
}

#[tokio::test]
async fn keys_activity_and_patches() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        let carol = store
            .create_user(
                &actor(),
                &org,
                &new_user("carol@example.com", "carol", UserKind::Local),
            )
            .await
            .unwrap();
        let key = store
            .create_key(
                &actor(),
                &carol.user,
                None,
                &new_key("laptop", "carol1", None),
            )
            .await
            .unwrap();
        store
            .record_activity(&[(carol.user.id, 1_000)], &[(key.id, 2_000)])
            .await
            .unwrap();
        store
            .record_activity(&[(carol.user.id, 500)], &[])
            .await
            .unwrap();
        let creds = store
            .load_credentials(carol.user.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            creds.user.last_access_at.map(|t| t.0),
            Some(1_000),
            "older activity never overwrites newer"
        );
        assert_eq!(creds.keys[0].last_used_at.map(|t| t.0), Some(2_000));
        store
            .delete_key(&actor(), &carol.user, None, key.id)
            .await
            .unwrap();
        assert!(matches!(
            store.delete_key(&actor(), &carol.user, None, key.id).await,
            Err(StoreError::NotFound(_))
        ));
        let patch = UserPatch {
            display_name: Some("Carol C".into()),
            role: Some(OrgRole::Auditor),
            ..Default::default()
        };
        let patched = store
            .update_member(&actor(), &org, carol.user.id, &patch)
            .await
            .unwrap();
        assert_eq!(
            (patched.user.display_name.as_str(), patched.role),
            ("Carol C", OrgRole::Auditor)
        );
        let taken = UserPatch {
            email: Some("ADMIN@localhost".into()),
            ..Default::default()
        };
        assert!(matches!(
            store
                .update_member(&actor(), &org, carol.user.id, &taken)
                .await,
            Err(StoreError::Conflict(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn the_audit_trail_is_append_only() {
    on_every_backend(|store, url| async move {
        let org = bootstrapped(&store).await;
        let page = store
            .list_audit(
                &AuditFilter {
                    orgs: vec![org.id],
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert!(page.total >= 3);
        assert!(
            page.items.windows(2).all(|w| w[0].id > w[1].id),
            "newest first"
        );
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let update = sqlx::query("UPDATE audit_events SET actor = 'mallory'")
            .execute(&mut conn)
            .await;
        assert!(update.is_err(), "updates are refused");
        let delete = sqlx::query("DELETE FROM audit_events")
            .execute(&mut conn)
            .await;
        assert!(delete.is_err(), "deletes are refused");
        let none = store
            .list_audit(&AuditFilter::default(), Page::default())
            .await
            .unwrap();
        assert_eq!(none.total, 0, "a filter naming no org sees nothing");
    })
    .await;
}

#[tokio::test]
async fn gateway_decisions_are_appended_in_batches_in_their_order() {
    on_every_backend(|store, _url| async move {
        bootstrapped(&store).await;
        // More than one statement's worth (64 records each), and a last one part full.
        let records: Vec<NewAuditRecord> = (0..150)
            .map(|i| NewAuditRecord {
                at: portcullis_model::Timestamp(1_700_000_000_000 + i),
                actor: Actor {
                    user_id: None,
                    name: if i % 2 == 0 {
                        "anonymous"
                    } else {
                        "dev@example.com"
                    }
                    .into(),
                    impersonator: None,
                    request_id: Some(format!("req-{i:03}")),
                },
                action: "gateway.request",
                target: format!("GET /admin/{i}"),
                outcome: "denied",
                details: Some(serde_json::json!({ "status": 403, "n": i })),
            })
            .collect();
        store.append_audit(&records).await.unwrap();
        store.append_audit(&[]).await.unwrap();
        let page = store
            .list_audit(
                &AuditFilter {
                    include_platform: true,
                    action: Some("gateway.request".into()),
                    ..Default::default()
                },
                Page {
                    limit: 500,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 150);
        // Newest first: the last appended is the first listed.
        for (listed, i) in page.items.iter().zip((0..150).rev()) {
            assert_eq!(listed.target, format!("GET /admin/{i}"));
            assert_eq!(listed.at.millis(), 1_700_000_000_000 + i);
            assert_eq!(
                listed.request_id.as_deref(),
                Some(format!("req-{i:03}").as_str())
            );
            assert_eq!(listed.outcome, "denied");
            assert_eq!(listed.details.as_ref().unwrap()["n"], i);
        }
        assert!(page.items.windows(2).all(|w| w[0].id > w[1].id));
    })
    .await;
}

fn role(name: &str, members: &[&str], source: &str) -> portcullis_store::RoleRecord {
    portcullis_store::RoleRecord {
        name: name.into(),
        source: source.into(),
        description: Some("test role".into()),
        owner: None,
        author: Some("tester".into()),
        modified_by: Some("tester".into()),
        created_at: portcullis_model::Timestamp(0),
        last_modified: portcullis_model::Timestamp(0),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

fn policy(
    subject: &str,
    permission: &str,
    action: &str,
    effect: &str,
    source: &str,
) -> portcullis_store::PolicyRecord {
    portcullis_store::PolicyRecord {
        subject: subject.into(),
        permission: permission.into(),
        action: action.into(),
        effect: effect.into(),
        source: source.into(),
    }
}

#[tokio::test]
async fn rbac_roles_policies_and_conditions() {
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        store.create_role(&actor(), &role("role:default/dev", &["user:default/alice", "group:default/team"], "rest")).await.unwrap();
        assert!(matches!(store.create_role(&actor(), &role("role:default/dev", &["user:default/x"], "rest")).await, Err(StoreError::Conflict(_))));
        let p1 = policy("role:default/dev", "catalog-entity", "read", "allow", "rest");
        let p2 = policy("role:default/dev", "catalog.entity.create", "create", "allow", "rest");
        store.add_policies(&actor(), &[p1.clone(), p2.clone()]).await.unwrap();
        let dup = store.add_policies(&actor(), &[policy("role:default/dev", "x", "read", "allow", "rest"), p1.clone()]).await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
        assert_eq!(store.list_policies(Some("role:default/dev")).await.unwrap().len(), 2, "a failed batch adds nothing");

        // Renaming a role carries its policies along.
        store.update_role(&actor(), "role:default/dev", &role("role:default/developers", &["user:default/alice"], "rest")).await.unwrap();
        assert!(store.get_role("role:default/dev").await.unwrap().is_none());
        let renamed = store.get_role("role:default/developers").await.unwrap().unwrap();
        assert_eq!(renamed.members, ["user:default/alice"]);
        assert_eq!(store.list_policies(Some("role:default/developers")).await.unwrap().len(), 2);

        let criteria = serde_json::json!({"rule": "IS_ENTITY_OWNER", "resourceType": "catalog-entity", "params": {"claims": ["$currentUser"]}});
        let cond = portcullis_store::NewCondition {
            role: "role:default/developers".into(),
            plugin_id: "catalog".into(),
            resource_type: "catalog-entity".into(),
            actions: vec!["read".into(), "update".into()],
            conditions: criteria.clone(),
            source: "rest".into(),
        };
        let id = store.create_condition(&actor(), &cond).await.unwrap();
        let got = store.get_condition(id).await.unwrap();
        assert_eq!((got.actions.len(), got.conditions), (2, criteria));
        store.update_condition(&actor(), id, &portcullis_store::NewCondition { actions: vec!["delete".into()], ..cond.clone() }).await.unwrap();
        assert_eq!(store.get_condition(id).await.unwrap().actions, ["delete"]);

        // The identity model's groups reach the RBAC rows.
        let alice = store.create_user(&actor(), &org, &new_user("alice@example.com", "Alice", UserKind::Local)).await.unwrap();
        store.create_group(&actor(), &org, "Team", "").await.unwrap();
        store.create_group(&actor(), &org, "dept", "").await.unwrap();
        store.add_user_to_group(&actor(), &org, "team", alice.user.id).await.unwrap();
        store.add_group_to_group(&actor(), &org, "dept", "team").await.unwrap();
        let rows = store.load_rbac().await.unwrap();
        assert_eq!(rows.user_groups, [("user:default/alice".to_string(), "group:default/team".to_string())]);
        assert_eq!(rows.group_parents, [("group:default/team".to_string(), "group:default/dept".to_string())]);
        assert_eq!((rows.roles.len(), rows.policies.len(), rows.conditions.len()), (1, 2, 1));

        // Removing the last member deletes the role's record; its policies and conditions stay.
        store.remove_role_members(&actor(), "role:default/developers", &["user:default/alice".into()]).await.unwrap();
        let rows = store.load_rbac().await.unwrap();
        assert_eq!((rows.roles.len(), rows.policies.len(), rows.conditions.len()), (0, 2, 1));
        // Deleting the role removes what is left of it.
        assert!(matches!(store.delete_role(&actor(), "role:default/developers").await, Err(StoreError::NotFound(_))));
        store.delete_condition(&actor(), id).await.unwrap();
        assert!(matches!(store.delete_condition(&actor(), id).await, Err(StoreError::NotFound(_))));
        assert_eq!(
            audit_count_platform(&store, "rbac.").await,
            7,
            "role, policies, rename, condition, its update, member removal, condition deletion; not the refused batch"
        );
    })
    .await;
}

async fn audit_count_platform(store: &Store, action: &str) -> i64 {
    let filter = AuditFilter {
        include_platform: true,
        action: Some(action.into()),
        ..Default::default()
    };
    store
        .list_audit(&filter, Page::default())
        .await
        .unwrap()
        .total
}

#[tokio::test]
async fn syncing_a_file_source_leaves_other_sources_alone() {
    on_every_backend(|store, _| async move {
        bootstrapped(&store).await;
        store
            .create_role(
                &actor(),
                &role("role:default/api", &["user:default/rest-user"], "rest"),
            )
            .await
            .unwrap();
        let rest_policy = policy(
            "role:default/api",
            "catalog-entity",
            "read",
            "allow",
            "rest",
        );
        store
            .add_policies(&actor(), std::slice::from_ref(&rest_policy))
            .await
            .unwrap();
        let file =
            |lines: &[(&str, &str)], members: &[(&str, &str)]| portcullis_store::SourceItems {
                policies: lines
                    .iter()
                    .map(|(s, p)| policy(s, p, "read", "allow", "csv-file"))
                    .collect(),
                members: members
                    .iter()
                    .map(|(r, m)| (r.to_string(), m.to_string()))
                    .collect(),
            };
        let first = file(
            &[
                ("role:default/file", "a"),
                ("role:default/file", "b"),
                ("role:default/api", "catalog-entity"),
            ],
            &[("role:default/file", "user:default/bob")],
        );
        let diff = store
            .sync_source(&actor(), "csv-file", &first)
            .await
            .unwrap();
        assert_eq!(
            (diff.policies_added, diff.members_added),
            (2, 1),
            "the line the REST role already holds stays REST's"
        );
        let second = file(
            &[("role:default/file", "b"), ("role:default/file", "c")],
            &[
                ("role:default/file", "user:default/bob"),
                ("role:default/file", "user:default/carol"),
            ],
        );
        let diff = store
            .sync_source(&actor(), "csv-file", &second)
            .await
            .unwrap();
        assert_eq!(
            diff,
            portcullis_store::SourceDiff {
                policies_added: 1,
                policies_removed: 1,
                members_added: 1,
                members_removed: 0
            }
        );
        let all = store.list_policies(None).await.unwrap();
        assert!(all.contains(&rest_policy), "REST items are untouched");
        assert_eq!(all.len(), 3);
        let diff = store
            .sync_source(
                &actor(),
                "csv-file",
                &portcullis_store::SourceItems::default(),
            )
            .await
            .unwrap();
        assert_eq!((diff.policies_removed, diff.members_removed), (2, 2));
        assert!(
            store.get_role("role:default/file").await.unwrap().is_none(),
            "a file role without members is gone"
        );
        assert!(store.get_role("role:default/api").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn rond_documents_are_all_or_nothing_per_org() {
    on_every_backend(|store, _| async move {
        use portcullis_store::RondKind;
        let org = bootstrapped(&store).await;
        let other = store
            .create_org(&actor(), "other", "Other", None)
            .await
            .unwrap();
        let doc = |id: &str| {
            (
                id.to_string(),
                serde_json::json!({ "roleId": id, "permissions": ["p"] }),
            )
        };
        store
            .create_rond(&actor(), &org, RondKind::Role, &[doc("a"), doc("b")])
            .await
            .unwrap();
        let clash = store
            .create_rond(&actor(), &org, RondKind::Role, &[doc("c"), doc("a")])
            .await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
        let ids: Vec<String> = store
            .list_rond(&org, RondKind::Role)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["a", "b"], "the refused batch left nothing");
        // The same id in another org or as another kind is separate.
        store
            .create_rond(&actor(), &other, RondKind::Role, &[doc("a")])
            .await
            .unwrap();
        store
            .create_rond(&actor(), &org, RondKind::Binding, &[doc("a")])
            .await
            .unwrap();
        store
            .replace_rond(
                &actor(),
                &org,
                RondKind::Role,
                "a",
                &serde_json::json!({ "roleId": "a", "permissions": [] }),
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .get_rond(&org, RondKind::Role, "a")
                .await
                .unwrap()
                .document["permissions"],
            serde_json::json!([])
        );
        store
            .delete_rond(&actor(), &org, RondKind::Role, "a")
            .await
            .unwrap();
        assert!(matches!(
            store.get_rond(&org, RondKind::Role, "a").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.get_rond(&other, RondKind::Role, "a").await.is_ok());
        assert!(matches!(
            store.delete_rond(&actor(), &org, RondKind::Role, "a").await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn single_use_secrets_lockout_and_sessions_hold_on_every_backend() {
    use portcullis_model::SessionId;
    use portcullis_store::{PasswordChange, RefreshOutcome, SessionRecord, SessionStage};
    on_every_backend(|store, _| async move {
        let org = bootstrapped(&store).await;
        let member = store
            .create_user(
                &actor(),
                &org,
                &new_user("ana@example.com", "ana", UserKind::Local),
            )
            .await
            .unwrap();
        let user = member.user;
        let now = 1_800_000_000_000_i64;

        // Passwords: a temporary one carries its expiry; found case-insensitively by email.
        store
            .set_password(
                &actor(),
                Some(&org),
                &user,
                "$argon2id$x",
                PasswordChange::Temporary {
                    expires_at: now + 10,
                },
                None,
                now,
            )
            .await
            .unwrap();
        let p = store.password_of(user.id).await.unwrap().unwrap();
        assert!(p.temporary && p.expires_at == Some(now + 10));
        assert_eq!(
            store
                .find_user_by_email("ANA@example.COM")
                .await
                .unwrap()
                .unwrap()
                .id,
            user.id
        );

        // TOTP steps and recovery codes are accepted once.
        store.begin_totp(user.id, "sealed", now).await.unwrap();
        assert!(store.use_totp_step(user.id, 100).await.unwrap());
        assert!(
            !store.use_totp_step(user.id, 100).await.unwrap(),
            "same step twice"
        );
        assert!(
            !store.use_totp_step(user.id, 99).await.unwrap(),
            "an earlier step"
        );
        store
            .confirm_totp(&actor(), Some(&org), &user, &["h1".into(), "h2".into()])
            .await
            .unwrap();
        assert!(matches!(
            store.begin_totp(user.id, "again", now).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(store.use_recovery_code(user.id, "h1", now).await.unwrap());
        assert!(!store.use_recovery_code(user.id, "h1", now).await.unwrap());
        assert_eq!(store.recovery_codes_left(user.id).await.unwrap(), 1);

        // Lockout: the third failure within the window locks until the window passes.
        for i in 0..2 {
            let locked = store
                .record_login_failure(
                    Some(&org),
                    &user,
                    "password",
                    Some((3, 1000)),
                    None,
                    now + i,
                )
                .await
                .unwrap();
            assert_eq!(locked, None);
        }
        let locked = store
            .record_login_failure(
                Some(&org),
                &user,
                "password",
                Some((3, 1000)),
                None,
                now + 2,
            )
            .await
            .unwrap();
        assert_eq!(locked, Some(now + 1002));
        assert_eq!(
            store.locked_until(user.id, now + 500).await.unwrap(),
            Some(now + 1002)
        );
        assert_eq!(store.locked_until(user.id, now + 1002).await.unwrap(), None);
        assert_eq!(audit_count(&store, &org, "user.lock").await, 1);
        // What a login reads in one query: the account, its password, a lock in force, and
        // its active orgs; nothing for an address without an account.
        let (candidate, orgs) = store
            .login_context("Ana@Example.com", now + 500)
            .await
            .unwrap();
        let candidate = candidate.expect("the account");
        assert_eq!(candidate.user.id, user.id);
        assert_eq!(candidate.locked_until, Some(now + 1002));
        let password = candidate.password.expect("its password");
        assert!(password.temporary && password.expires_at == Some(now + 10));
        assert_eq!(orgs.iter().map(|o| o.id).collect::<Vec<_>>(), vec![org.id]);
        let (candidate, _) = store
            .login_context("ana@example.com", now + 1002)
            .await
            .unwrap();
        assert_eq!(candidate.expect("the account").locked_until, None);
        let (candidate, orgs) = store
            .login_context("nobody@example.com", now)
            .await
            .unwrap();
        assert!(candidate.is_none() && orgs.is_empty());
        // A login for it is recorded in the platform's trail, outside any org, without the
        // address (what was typed may hold a password).
        store.record_unknown_login(Some("curl"), now).await.unwrap();
        let unknown = store
            .list_audit(
                &portcullis_store::AuditFilter {
                    include_platform: true,
                    action: Some("login".into()),
                    target: Some("email:(no local account)".into()),
                    ..Default::default()
                },
                portcullis_store::Page {
                    limit: 10,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(unknown.items.len(), 1, "{:?}", unknown.items);
        assert_eq!(unknown.items[0].outcome, "failure");
        assert!(unknown.items[0].org_id.is_none() && unknown.items[0].actor_id.is_none());
        assert_eq!(
            unknown.items[0].details,
            Some(serde_json::json!({ "reason": "no local account", "client": "curl" }))
        );
        assert!(store.unlock_user(&actor(), &org, &user).await.unwrap());
        assert_eq!(store.locked_until(user.id, now + 500).await.unwrap(), None);
        // Refusals that do not count (lockout off, or a refusal after the right password) are
        // recorded but neither count towards a lock nor place one.
        for i in 0..5 {
            let locked = store
                .record_login_failure(
                    Some(&org),
                    &user,
                    "temporary password expired",
                    None,
                    None,
                    now + 10 + i,
                )
                .await
                .unwrap();
            assert_eq!(locked, None);
        }
        for i in 0..2 {
            let locked = store
                .record_login_failure(
                    Some(&org),
                    &user,
                    "password",
                    Some((3, 1000)),
                    None,
                    now + 20 + i,
                )
                .await
                .unwrap();
            assert_eq!(locked, None, "two counted failures of three");
        }
        assert_eq!(store.locked_until(user.id, now + 500).await.unwrap(), None);
        store.clear_login_failures(user.id).await.unwrap();

        // Sessions: a refresh token rotates once; a spent one revokes the session.
        let session = SessionRecord {
            id: SessionId::new(),
            user_id: user.id,
            org_id: Some(org.id),
            stage: SessionStage::Active,
            created_at: now,
            expires_at: now + 86_400_000,
            idle_ms: Some(3_600_000),
            last_seen_at: now,
            revoked_at: None,
            client: "test".into(),
        };
        store
            .create_session(Some(&org), &user, &session, "r1", "password")
            .await
            .unwrap();
        assert_eq!(
            store.rotate_refresh_token("r1", "r2", now).await.unwrap(),
            RefreshOutcome::Rotated(session.id)
        );
        assert_eq!(
            store.rotate_refresh_token("nope", "r3", now).await.unwrap(),
            RefreshOutcome::Unknown
        );
        assert_eq!(
            store.rotate_refresh_token("r1", "r4", now).await.unwrap(),
            RefreshOutcome::Reused(session.id)
        );
        assert!(
            store
                .get_session(session.id)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert!(store.list_sessions(user.id, now).await.unwrap().is_empty());

        // A reset token works once, and only before it expires; it ends every session.
        let second = SessionRecord {
            id: SessionId::new(),
            ..session.clone()
        };
        store
            .create_session(Some(&org), &user, &second, "s1", "password")
            .await
            .unwrap();
        store
            .create_password_reset(Some(&org), &user, "t1", now, now + 100)
            .await
            .unwrap();
        store
            .create_password_reset(Some(&org), &user, "t2", now, now + 100)
            .await
            .unwrap();
        assert!(
            store
                .reset_password("t2", "$argon2id$late", now + 100)
                .await
                .is_err(),
            "expired"
        );
        assert_eq!(
            store.reset_token_user("t1", now).await.unwrap(),
            Some(user.id)
        );
        store
            .reset_password("t1", "$argon2id$new", now + 1)
            .await
            .unwrap();
        assert!(matches!(
            store.reset_password("t1", "$argon2id$again", now + 2).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            store.password_of(user.id).await.unwrap().unwrap().phc,
            "$argon2id$new"
        );
        assert!(
            store
                .get_session(second.id)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert_eq!(
            store
                .sessions_revoked_since(user.id, now)
                .await
                .unwrap()
                .len(),
            2
        );
    })
    .await;
}

/// A statement naming a row another change removed meanwhile (a foreign key violated) is told
/// apart from other database errors on both backends, so that it is answered as a conflict.
#[tokio::test]
async fn a_reference_to_a_removed_row_is_recognised_on_every_backend() {
    on_every_backend(|_store, url| async move {
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        if url.starts_with("sqlite:") {
            sqlx::raw_sql("PRAGMA foreign_keys = ON")
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let err = sqlx::query(
            "INSERT INTO group_user_members (group_id, user_id) VALUES ('no-such-group', 'no-such-user')",
        )
        .execute(&mut conn)
        .await
        .expect_err("the group and the user do not exist");
        let err = StoreError::Database(err);
        assert!(err.is_reference_gone(), "{err}");
        assert!(!StoreError::NotFound("x".into()).is_reference_gone());
        conn.close().await.ok();
    })
    .await;
}

/// A member's removal racing keys being made for them in that org: whatever the order the
/// database serialises them in, no key bound to the org outlives the removal.
#[tokio::test]
async fn keys_made_while_a_member_is_removed_do_not_outlive_the_removal() {
    on_every_backend(|store, _url| async move {
        let org = bootstrapped(&store).await;
        for round in 0..5 {
            let email = format!("racer{round}@example.com");
            let user = store
                .create_user(
                    &actor(),
                    &org,
                    &new_user(&email, &format!("racer{round}"), UserKind::Local),
                )
                .await
                .unwrap();
            let makers: Vec<_> = (0..8)
                .map(|i| {
                    let (store, org, user) = (store.clone(), org.clone(), user.user.clone());
                    tokio::spawn(async move {
                        let key = new_key("race", &format!("race-{round}-{i}"), Some(org.id));
                        store.create_key(&actor(), &user, Some(&org), &key).await
                    })
                })
                .collect();
            let removal = {
                let (store, org, id) = (store.clone(), org.clone(), user.user.id);
                tokio::spawn(async move { store.remove_member(&actor(), &org, id).await })
            };
            for maker in makers {
                let made = maker.await.unwrap();
                assert!(
                    made.is_ok() || matches!(made, Err(StoreError::NotFound(_))),
                    "{made:?}"
                );
            }
            removal.await.unwrap().unwrap();
            let creds = store.load_credentials(user.user.id).await.unwrap();
            let left: Vec<_> = creds
                .map(|c| {
                    c.keys
                        .into_iter()
                        .filter(|k| k.org_id == Some(org.id))
                        .collect()
                })
                .unwrap_or_else(Vec::new);
            assert!(
                left.is_empty(),
                "round {round}: keys outlived the removal: {left:?}"
            );
        }
    })
    .await;
}

/// An org always keeps an active admin: the change that would take away its last one (a
/// removal, a demotion, a deactivation) is refused, also when two admins change each other at
/// the same moment, in whatever order the database serialises them.
#[tokio::test]
async fn an_org_always_keeps_an_active_admin() {
    on_every_backend(|store, _url| async move {
        bootstrapped(&store).await;
        type Change = fn(Store, OrgRecord, UserId) -> ChangeFuture;
        type ChangeFuture =
            std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;
        let changes: [(&str, Change); 3] = [
            ("remove", |store, org, user| {
                Box::pin(async move { store.remove_member(&actor(), &org, user).await })
            }),
            ("demote", |store, org, user| {
                Box::pin(async move {
                    let patch = UserPatch {
                        role: Some(OrgRole::Member),
                        ..Default::default()
                    };
                    store.update_member(&actor(), &org, user, &patch).await.map(|_| ())
                })
            }),
            ("deactivate", |store, org, user| {
                Box::pin(async move {
                    store
                        .set_member_status(&actor(), &org, user, MembershipStatus::Deactivated)
                        .await
                        .map(|_| ())
                })
            }),
        ];
        for (what, change) in changes {
            for round in 0..4 {
                let org = store
                    .create_org(&actor(), &format!("{what}{round}"), "Raced", None)
                    .await
                    .unwrap();
                let mut admins = Vec::new();
                for name in ["ana", "ben"] {
                    let name = format!("{name}-{what}{round}");
                    admins.push(member(&store, &org, &name, OrgRole::Admin).await);
                }
                // Each admin's change of the other, at once.
                let (a, b) = tokio::join!(
                    tokio::spawn(change(store.clone(), org.clone(), admins[0])),
                    tokio::spawn(change(store.clone(), org.clone(), admins[1])),
                );
                let results = [a.unwrap(), b.unwrap()];
                let done = results.iter().filter(|r| r.is_ok()).count();
                assert_eq!(done, 1, "{what} round {round}: {results:?}");
                let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
                assert!(
                    matches!(refused, StoreError::Conflict(m) if m.contains("without an active admin")),
                    "{what}: {refused:?}"
                );
                let left = store
                    .list_members(&org, &UserFilter::default(), Page::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|m| m.role == OrgRole::Admin && m.status == MembershipStatus::Active)
                    .count();
                assert_eq!(left, 1, "{what} round {round}: one active admin is left");
            }
        }
    })
    .await;
}

/// A member's removal from an org racing their assignment to one of its projects and groups:
/// whatever the order, a user who is no longer a member is on none of the org's projects or
/// groups (an assignment after the removal finds no member and is refused).
#[tokio::test]
async fn assignments_made_while_a_member_is_removed_do_not_outlive_the_removal() {
    on_every_backend(|store, _url| async move {
        let org = bootstrapped(&store).await;
        store
            .create_project(&actor(), &org, "raced", "")
            .await
            .unwrap();
        store
            .create_group(&actor(), &org, "raced", "")
            .await
            .unwrap();
        for round in 0..6 {
            let user = member(&store, &org, &format!("leaver{round}"), OrgRole::Member).await;
            let (removed, assigned, grouped) = tokio::join!(
                tokio::spawn({
                    let (store, org) = (store.clone(), org.clone());
                    async move { store.remove_member(&actor(), &org, user).await }
                }),
                tokio::spawn({
                    let (store, org) = (store.clone(), org.clone());
                    async move {
                        store
                            .set_project_member(&actor(), &org, "raced", user, ProjectRole::Admin)
                            .await
                    }
                }),
                tokio::spawn({
                    let (store, org) = (store.clone(), org.clone());
                    async move { store.add_user_to_group(&actor(), &org, "raced", user).await }
                }),
            );
            removed.unwrap().unwrap();
            for other in [assigned.unwrap(), grouped.unwrap()] {
                assert!(
                    other.is_ok() || matches!(other, Err(StoreError::NotFound(_))),
                    "{other:?}"
                );
            }
            let on_project = store
                .project_members(&org, "raced")
                .await
                .unwrap()
                .iter()
                .any(|m| m.user_id == user);
            let in_group = store
                .group_members(&org, "raced")
                .await
                .unwrap()
                .users
                .iter()
                .any(|m| matches!(m, GroupMember::User { id, .. } if *id == user));
            assert!(
                !on_project && !in_group,
                "round {round}: project {on_project}, group {in_group}"
            );
        }
        // A deactivated member's reactivation racing an assignment: the assignment is suspended
        // exactly when the member ends up deactivated.
        for round in 0..6 {
            let user = member(&store, &org, &format!("returner{round}"), OrgRole::Member).await;
            store
                .set_member_status(&actor(), &org, user, MembershipStatus::Deactivated)
                .await
                .unwrap();
            let (back, assigned) = tokio::join!(
                tokio::spawn({
                    let (store, org) = (store.clone(), org.clone());
                    async move {
                        store
                            .set_member_status(&actor(), &org, user, MembershipStatus::Active)
                            .await
                    }
                }),
                tokio::spawn({
                    let (store, org) = (store.clone(), org.clone());
                    async move {
                        store
                            .set_project_member(&actor(), &org, "raced", user, ProjectRole::Viewer)
                            .await
                    }
                }),
            );
            back.unwrap().unwrap();
            assigned.unwrap().unwrap();
            let row = store
                .project_members(&org, "raced")
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.user_id == user)
                .expect("assigned");
            assert!(
                !row.suspended,
                "round {round}: an active member's assignment is suspended"
            );
        }
    })
    .await;
}
