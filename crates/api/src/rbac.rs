//! The RBAC engine in the running server: the current [`RbacSnapshot`] (swapped atomically after
//! every committed change), who the caller is in entity-reference terms, who administers
//! policies, and the permissions and condition rules the plugins declare.

pub mod files;
pub mod plugins;
pub mod rond;
pub mod routes;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_authn::Principal;
use portcullis_authz::rbac::{
    Action, Decision, GroupGraph, Outcome, PermissionQuery, PolicyLine, RbacConfig, RbacSnapshot,
    RoleCondition, RoleMember,
};
use portcullis_model::{Criteria, EntityRef, Expect, MembershipStatus};
use portcullis_store::{Actor, PolicyRecord, SourceItems, Store, StoreError};

/// RBAC settings (`permission.rbac` in the configuration file).
#[derive(Debug, Clone, Default)]
pub struct RbacSettings {
    /// Policy administrators (`permission.rbac.admin.users`): members of `role:default/rbac_admin`.
    pub admin_users: Vec<String>,
    /// Users and groups that are always allowed (`permission.rbac.admin.superUsers`).
    pub super_users: Vec<String>,
    /// Policy CSV (`permission.rbac.policies-csv-file`).
    pub policies_csv_file: Option<PathBuf>,
    /// Conditional policies YAML (`permission.rbac.conditionalPoliciesFile`).
    pub conditional_policies_file: Option<PathBuf>,
    /// Reload the files when they change (`permission.rbac.policyFileReload`).
    pub policy_file_reload: bool,
    /// Levels of nested groups that count (`permission.rbac.maxDepth`).
    pub max_depth: Option<usize>,
    /// Plugins added to (or replacing) the defaults (`permission.rbac.plugins`).
    pub plugins: Vec<plugins::PluginSpec>,
    /// Folder of Rego policies (`rego.policies_dir`), loaded at start.
    pub rego_policies_dir: Option<PathBuf>,
    /// Longest a Rego evaluation may run (`rego.eval_timeout_ms`); past it, the decision is a deny.
    pub rego_time_limit: Option<std::time::Duration>,
    /// Route rules (`routes:`).
    pub routes: Vec<portcullis_authz::route_rules::RouteSpec>,
    /// Backends' OpenAPI documents whose `x-rond` / `x-permission` extensions become routes.
    pub openapi: Vec<routes::OpenApiSource>,
}

/// How often the snapshot is rebuilt from the store regardless of announcements.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(300);

/// The role of policy administrators, created from configuration.
pub const RBAC_ADMIN_ROLE: &str = "role:default/rbac_admin";

/// The RBAC engine state shared by handlers.
pub struct Rbac {
    snapshot: ArcSwap<RbacSnapshot>,
    /// This process, in announcements to other replicas.
    origin: String,
    /// The plugins' permissions and condition rules.
    catalogue: plugins::Catalogue,
    /// Rönd-style roles and bindings of every org, swapped with the snapshot.
    rond: ArcSwap<rond::RondIndex>,
    /// The compiled Rego policies, if a folder is configured.
    rego: Option<portcullis_authz::rego::RegoPolicies>,
    /// The compiled route rules, if any are configured.
    routes: Option<portcullis_authz::route_rules::RouteRules>,
    settings: RbacSettings,
    /// Serialises rebuilds, so a slow one never overwrites a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Counts snapshots: what was derived from one (a caller's groups) is stale once it moves.
    generation: std::sync::atomic::AtomicU64,
}

impl Rbac {
    /// Reconciles the configuration source (the policy administrators' role and its default
    /// policies) and builds the first snapshot.
    pub async fn start(
        store: &Store,
        settings: RbacSettings,
    ) -> Result<Arc<Self>, crate::ServerError> {
        let mut items = SourceItems::default();
        for user in &settings.admin_users {
            items
                .members
                .push((RBAC_ADMIN_ROLE.to_owned(), user.to_lowercase()));
        }
        let defaults = [
            ("policy-entity", "read"),
            ("policy-entity", "create"),
            ("policy-entity", "update"),
            ("policy-entity", "delete"),
            ("catalog-entity", "read"),
        ];
        for (permission, action) in defaults {
            items.policies.push(PolicyRecord {
                subject: RBAC_ADMIN_ROLE.to_owned(),
                permission: permission.to_owned(),
                action: action.to_owned(),
                effect: "allow".to_owned(),
                source: "configuration".to_owned(),
            });
        }
        store
            .sync_source(&Actor::system(), "configuration", &items)
            .await?;
        let rego = rond::load_rego(&settings)?;
        let routes = routes::compile(&settings.routes, &settings.openapi, rego.as_ref())?;
        let rbac = Arc::new(Self {
            snapshot: ArcSwap::from_pointee(RbacSnapshot::default()),
            origin: format!("rbac-{}", portcullis_model::UserId::new()),
            catalogue: plugins::Catalogue::with(&settings.plugins),
            rond: ArcSwap::from_pointee(rond::RondIndex::default()),
            rego,
            routes,
            settings,
            rebuild: tokio::sync::Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        rbac.rebuild(store).await?;
        Ok(rbac)
    }

    /// The plugins' permissions and condition rules.
    pub fn plugins(&self) -> &plugins::Catalogue {
        &self.catalogue
    }

    /// The settings.
    pub fn settings(&self) -> &RbacSettings {
        &self.settings
    }

    /// Rebuilds the snapshot from the store. Call after every committed change to RBAC data or
    /// to group membership, before answering.
    pub async fn rebuild(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.rebuild.lock().await;
        let rows = store.load_rbac().await?;
        let mut policies = Vec::with_capacity(rows.policies.len());
        for p in &rows.policies {
            match (
                EntityRef::parse(&p.subject, Expect::Any),
                Action::parse(&p.action),
                portcullis_authz::rbac::Effect::parse(&p.effect),
            ) {
                (Ok(subject), Some(action), Some(effect)) => policies.push(PolicyLine {
                    subject,
                    permission: p.permission.clone(),
                    action,
                    effect,
                }),
                _ => {
                    tracing::warn!(policy = %portcullis_store::policy_text(p), "stored policy is not valid; ignored")
                }
            }
        }
        let mut members = Vec::new();
        for role in &rows.roles {
            let Ok(role_ref) = EntityRef::parse(&role.name, Expect::Role) else {
                continue;
            };
            for m in &role.members {
                if let Ok(member) = EntityRef::parse(m, Expect::Member) {
                    members.push(RoleMember {
                        member,
                        role: role_ref.clone(),
                    });
                }
            }
        }
        let mut conditions = Vec::new();
        for c in &rows.conditions {
            let (Ok(role), Ok(criteria)) = (
                EntityRef::parse(&c.role, Expect::Role),
                Criteria::from_json(&c.conditions),
            ) else {
                tracing::warn!(id = c.id, "stored condition is not valid; ignored");
                continue;
            };
            conditions.push(RoleCondition {
                id: c.id,
                role,
                plugin_id: c.plugin_id.clone(),
                resource_type: c.resource_type.clone(),
                actions: c.actions.iter().filter_map(|a| Action::parse(a)).collect(),
                conditions: criteria,
            });
        }
        let mut graph = GroupGraph::default();
        for (user, group) in rows.user_groups {
            graph.user_groups.entry(user).or_default().push(group);
        }
        for (child, parent) in rows.group_parents {
            graph.group_parents.entry(child).or_default().push(parent);
        }
        let config = RbacConfig {
            super_users: self
                .settings
                .super_users
                .iter()
                .filter_map(|u| EntityRef::parse(u, Expect::Member).ok())
                .collect(),
            max_depth: self.settings.max_depth,
        };
        let snapshot = RbacSnapshot::build(&policies, &members, &conditions, &graph, &config);
        self.rond.store(Arc::new(rond::RondIndex::build(
            store.list_all_rond().await?,
        )));
        metrics::gauge!("portcullis_rbac_policies").set(snapshot.policy_count() as f64);
        self.snapshot.store(Arc::new(snapshot));
        // After the store: whoever reads the new number then reads the new snapshot.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The number of the current snapshot (read it before reading the snapshot).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Call after every committed change to RBAC data or group membership, before answering:
    /// rebuilds here and tells the other replicas to rebuild.
    pub async fn changed(&self, store: &Store) -> Result<(), StoreError> {
        // A committed change must reach the snapshot: retry a failing rebuild before giving up,
        // and tell the other replicas either way.
        let mut result = self.rebuild(store).await;
        for pause in [50, 250, 1000] {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            result = self.rebuild(store).await;
        }
        if let Err(e) = store.announce_rbac(&self.origin).await {
            tracing::warn!(error = %e, "could not announce an RBAC change to other replicas");
        }
        result
    }

    /// Rebuilds after other replicas' changes (PostgreSQL only; returns at once on SQLite) until
    /// `stop`.
    pub async fn follow_changes(
        self: Arc<Self>,
        store: Store,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut feed = match store.credential_changes().await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::error!(error = %e, "cannot follow RBAC changes of other replicas");
                None
            }
        };
        // A periodic rebuild repairs one that failed after its change was committed.
        let mut ticker = tokio::time::interval(RESYNC);
        ticker.tick().await;
        loop {
            let change = match feed.as_mut() {
                Some(feed) => tokio::select! {
                    _ = stop.changed() => return,
                    _ = ticker.tick() => Ok(portcullis_store::Change::Resync),
                    change = feed.next() => change,
                },
                None => tokio::select! {
                    _ = stop.changed() => return,
                    _ = ticker.tick() => Ok(portcullis_store::Change::Resync),
                },
            };
            let rebuild = match change {
                Ok(portcullis_store::Change::Rbac { origin }) => origin != self.origin,
                Ok(portcullis_store::Change::Resync) => true,
                Ok(
                    portcullis_store::Change::User { .. }
                    | portcullis_store::Change::Session { .. }
                    | portcullis_store::Change::SigningKeys,
                ) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "RBAC change feed failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    false
                }
            };
            if rebuild && let Err(e) = self.rebuild(&store).await {
                tracing::warn!(error = %e, "could not rebuild RBAC after another replica's change");
            }
        }
    }

    /// The current Rönd roles and bindings.
    pub fn rond(&self) -> arc_swap::Guard<Arc<rond::RondIndex>> {
        self.rond.load()
    }

    /// The compiled route rules, if any are configured.
    pub fn routes(&self) -> Option<&portcullis_authz::route_rules::RouteRules> {
        self.routes.as_ref()
    }

    /// The compiled Rego policies, if any.
    pub fn rego(&self) -> Option<&portcullis_authz::rego::RegoPolicies> {
        self.rego.as_ref()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<RbacSnapshot>> {
        self.snapshot.load()
    }

    /// Decides for `user_ref`.
    pub fn decide(&self, user_ref: &str, query: &PermissionQuery<'_>, explain: bool) -> Decision {
        self.snapshot.load().decide(user_ref, query, explain)
    }

    /// Whether the caller administers policies for `action` (read, create, update, delete):
    /// platform administrators always; others through `policy.entity.<action>` (the policy
    /// administrators' role holds it).
    pub fn is_policy_admin(&self, principal: &Principal, action: Action) -> bool {
        if principal.user.platform_admin && principal.credential_org.is_none() {
            return true;
        }
        let Some(user) = user_ref(principal) else {
            return false;
        };
        let name = format!("policy.entity.{}", action.as_str());
        let query = PermissionQuery {
            name: &name,
            resource_type: Some("policy-entity"),
            action: Some(action),
        };
        self.decide(&user, &query, false).outcome == Outcome::Allow
    }
}

/// The caller's user entity reference `user:<org>/<username>`: the org its key is bound to, or
/// else `default` when the caller is an active member there, or else its first active org.
pub fn user_ref(principal: &Principal) -> Option<String> {
    let user = &principal.user;
    let active = |slug: &&String| {
        user.memberships
            .get(*slug)
            .is_some_and(|m| m.status == MembershipStatus::Active)
    };
    let slug = match principal.credential_org {
        Some(bound) => user
            .memberships
            .iter()
            .find(|(_, m)| m.org_id == bound)
            .map(|(s, _)| s)
            .filter(active)?,
        None => {
            let mut slugs: Vec<&String> = user.memberships.keys().filter(active).collect();
            slugs.sort();
            slugs
                .iter()
                .find(|s| s.as_str() == "default")
                .or(slugs.first())
                .copied()?
        }
    };
    Some(EntityRef::user(slug, &user.username).as_str().to_owned())
}
