//! RBAC data: roles with metadata and members, permission policies and conditional policies,
//! each with the source it may be changed through; and the identity model's group graph as the
//! RBAC engine needs it.

use std::collections::{BTreeSet, HashMap};

use portcullis_model::Timestamp;
use sqlx::Transaction;
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::rows;
use crate::{Store, StoreError, now_millis};

/// A role as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRecord {
    /// `role:<namespace>/<name>`.
    pub name: String,
    /// `configuration`, `rest`, `csv-file` or `legacy`.
    pub source: String,
    /// Description.
    pub description: Option<String>,
    /// Owner (a user or group reference).
    pub owner: Option<String>,
    /// Who created it.
    pub author: Option<String>,
    /// Who changed it last.
    pub modified_by: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub last_modified: Timestamp,
    /// Member references (users and groups), sorted.
    pub members: Vec<String>,
}

/// A permission policy (`p` line) as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRecord {
    /// Role, user or group reference.
    pub subject: String,
    /// Permission name or resource type.
    pub permission: String,
    /// Action.
    pub action: String,
    /// `allow` or `deny`.
    pub effect: String,
    /// Source.
    pub source: String,
}

/// A conditional policy as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionRecord {
    /// Id.
    pub id: i64,
    /// Role reference.
    pub role: String,
    /// Plugin id.
    pub plugin_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Actions (`permissionMapping`).
    pub actions: Vec<String>,
    /// The criteria, as JSON.
    pub conditions: serde_json::Value,
    /// Source.
    pub source: String,
}

/// A conditional policy to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCondition {
    /// Role reference.
    pub role: String,
    /// Plugin id.
    pub plugin_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Actions.
    pub actions: Vec<String>,
    /// Criteria JSON (validated by the caller).
    pub conditions: serde_json::Value,
    /// Source.
    pub source: String,
}

/// Everything the RBAC engine is built from.
#[derive(Debug, Clone, Default)]
pub struct RbacRows {
    /// Roles with members.
    pub roles: Vec<RoleRecord>,
    /// Policies.
    pub policies: Vec<PolicyRecord>,
    /// Conditional policies.
    pub conditions: Vec<ConditionRecord>,
    /// `user:<org>/<username>` -> its direct `group:<org>/<name>`.
    pub user_groups: Vec<(String, String)>,
    /// `group:<org>/<child>` -> `group:<org>/<parent>`.
    pub group_parents: Vec<(String, String)>,
}

/// The items of one source, for replacing them all at once (policy files).
#[derive(Debug, Clone, Default)]
pub struct SourceItems {
    /// Role -> members.
    pub members: Vec<(String, String)>,
    /// Policies.
    pub policies: Vec<PolicyRecord>,
}

/// What replacing a source changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceDiff {
    /// Policies added.
    pub policies_added: usize,
    /// Policies removed.
    pub policies_removed: usize,
    /// Memberships added.
    pub members_added: usize,
    /// Memberships removed.
    pub members_removed: usize,
}

fn policy_row(row: &AnyRow) -> Result<PolicyRecord, StoreError> {
    Ok(PolicyRecord {
        subject: rows::text(row, "subject")?,
        permission: rows::text(row, "permission")?,
        action: rows::text(row, "action")?,
        effect: rows::text(row, "effect")?,
        source: rows::text(row, "source")?,
    })
}

fn condition_row(row: &AnyRow) -> Result<ConditionRecord, StoreError> {
    let actions: Vec<String> = serde_json::from_str(&rows::text(row, "actions")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let conditions = serde_json::from_str(&rows::text(row, "conditions")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(ConditionRecord {
        id: rows::int(row, "id")?,
        role: rows::text(row, "role_name")?,
        plugin_id: rows::text(row, "plugin_id")?,
        resource_type: rows::text(row, "resource_type")?,
        actions,
        conditions,
        source: rows::text(row, "source")?,
    })
}

async fn roles_in(
    conn: &mut sqlx::AnyConnection,
    only: Option<&str>,
) -> Result<Vec<RoleRecord>, StoreError> {
    let found = match only {
        Some(name) => {
            sqlx::query("SELECT * FROM rbac_roles WHERE name = $1")
                .bind(name)
                .fetch_all(&mut *conn)
                .await?
        }
        None => {
            sqlx::query("SELECT * FROM rbac_roles ORDER BY name")
                .fetch_all(&mut *conn)
                .await?
        }
    };
    let mut roles = Vec::with_capacity(found.len());
    for row in &found {
        roles.push(RoleRecord {
            name: rows::text(row, "name")?,
            source: rows::text(row, "source")?,
            description: rows::opt_text(row, "description")?,
            owner: rows::opt_text(row, "owner")?,
            author: rows::opt_text(row, "author")?,
            modified_by: rows::opt_text(row, "modified_by")?,
            created_at: rows::time(row, "created_at")?,
            last_modified: rows::time(row, "last_modified")?,
            members: Vec::new(),
        });
    }
    let members = match only {
        Some(name) => sqlx::query(
            "SELECT role_name, member FROM rbac_role_members WHERE role_name = $1 ORDER BY member",
        )
        .bind(name)
        .fetch_all(&mut *conn)
        .await?,
        None => {
            sqlx::query("SELECT role_name, member FROM rbac_role_members ORDER BY member")
                .fetch_all(&mut *conn)
                .await?
        }
    };
    let mut by_role: HashMap<String, Vec<String>> = HashMap::new();
    for row in &members {
        by_role
            .entry(rows::text(row, "role_name")?)
            .or_default()
            .push(rows::text(row, "member")?);
    }
    for role in &mut roles {
        role.members = by_role.remove(&role.name).unwrap_or_default();
    }
    Ok(roles)
}

async fn insert_policy(
    tx: &mut Transaction<'static, sqlx::Any>,
    p: &PolicyRecord,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO rbac_policies (subject, permission, action, effect, source) VALUES ($1, $2, $3, $4, $5)")
        .bind(p.subject.as_str())
        .bind(p.permission.as_str())
        .bind(p.action.as_str())
        .bind(p.effect.as_str())
        .bind(p.source.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::unique(e, format!("Policy '{}' has been already stored", policy_text(p))))?;
    Ok(())
}

/// A policy as the reference prints it in messages: `role:default/a,catalog-entity,read,allow`.
pub fn policy_text(p: &PolicyRecord) -> String {
    format!("{},{},{},{}", p.subject, p.permission, p.action, p.effect)
}

async fn delete_policy(
    tx: &mut Transaction<'static, sqlx::Any>,
    p: &PolicyRecord,
) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM rbac_policies WHERE subject = $1 AND permission = $2 AND action = $3 AND effect = $4")
        .bind(p.subject.as_str())
        .bind(p.permission.as_str())
        .bind(p.action.as_str())
        .bind(p.effect.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

impl Store {
    /// Everything the RBAC engine is built from, including the identity model's groups.
    pub async fn load_rbac(&self) -> Result<RbacRows, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let roles = roles_in(&mut conn, None).await?;
        let policies = sqlx::query("SELECT * FROM rbac_policies ORDER BY id")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(policy_row)
            .collect::<Result<_, _>>()?;
        let conditions = sqlx::query("SELECT * FROM rbac_conditions ORDER BY id")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(condition_row)
            .collect::<Result<_, _>>()?;
        let user_groups = sqlx::query(
            "SELECT o.slug, u.username_lower, g.name_lower FROM group_user_members gm \
             JOIN org_groups g ON g.id = gm.group_id JOIN orgs o ON o.id = g.org_id JOIN users u ON u.id = gm.user_id \
             JOIN memberships m ON m.user_id = u.id AND m.org_id = o.id WHERE m.status = 'active'",
        )
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let slug = rows::text(r, "slug")?;
            Ok((format!("user:{slug}/{}", rows::text(r, "username_lower")?), format!("group:{slug}/{}", rows::text(r, "name_lower")?)))
        })
        .collect::<Result<_, StoreError>>()?;
        let group_parents = sqlx::query(
            "SELECT o.slug, c.name_lower AS child, p.name_lower AS parent FROM group_group_members gg \
             JOIN org_groups p ON p.id = gg.group_id JOIN org_groups c ON c.id = gg.child_group_id JOIN orgs o ON o.id = p.org_id",
        )
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let slug = rows::text(r, "slug")?;
            Ok((format!("group:{slug}/{}", rows::text(r, "child")?), format!("group:{slug}/{}", rows::text(r, "parent")?)))
        })
        .collect::<Result<_, StoreError>>()?;
        Ok(RbacRows {
            roles,
            policies,
            conditions,
            user_groups,
            group_parents,
        })
    }

    /// Every role with its members.
    pub async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        roles_in(&mut conn, None).await
    }

    /// One role.
    pub async fn get_role(&self, name: &str) -> Result<Option<RoleRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(roles_in(&mut conn, Some(name)).await?.pop())
    }

    /// Creates a role with members; 409 when it exists.
    pub async fn create_role(&self, actor: &Actor, role: &RoleRecord) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        sqlx::query(
            "INSERT INTO rbac_roles (name, source, description, owner, author, modified_by, created_at, last_modified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(role.name.as_str())
        .bind(role.source.as_str())
        .bind(role.description.as_deref())
        .bind(role.owner.as_deref())
        .bind(role.author.as_deref())
        .bind(role.modified_by.as_deref())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, format!("role {} already exists", role.name)))?;
        for m in role.members.iter().collect::<BTreeSet<_>>() {
            sqlx::query("INSERT INTO rbac_role_members (role_name, member) VALUES ($1, $2)")
                .bind(role.name.as_str())
                .bind(m.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let details = serde_json::json!({ "members": role.members, "source": role.source });
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.role.create",
            &role.name,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a role's name, members and metadata (the old name must exist).
    pub async fn update_role(
        &self,
        actor: &Actor,
        old_name: &str,
        new: &RoleRecord,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        let done = sqlx::query("UPDATE rbac_roles SET name = $1, description = $2, owner = $3, modified_by = $4, last_modified = $5 WHERE name = $6")
            .bind(new.name.as_str())
            .bind(new.description.as_deref())
            .bind(new.owner.as_deref())
            .bind(new.modified_by.as_deref())
            .bind(now)
            .bind(old_name)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, format!("role {} already exists", new.name)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{old_name} was not found")));
        }
        if new.name != old_name {
            for table in [
                "UPDATE rbac_policies SET subject = $1 WHERE subject = $2",
                "UPDATE rbac_conditions SET role_name = $1 WHERE role_name = $2",
            ] {
                sqlx::query(table)
                    .bind(new.name.as_str())
                    .bind(old_name)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        StoreError::unique(
                            e,
                            format!(
                                "{} already holds a policy of {old_name}; remove it first",
                                new.name
                            ),
                        )
                    })?;
            }
        }
        sqlx::query("DELETE FROM rbac_role_members WHERE role_name = $1")
            .bind(new.name.as_str())
            .execute(&mut *tx)
            .await?;
        for m in new.members.iter().collect::<BTreeSet<_>>() {
            sqlx::query("INSERT INTO rbac_role_members (role_name, member) VALUES ($1, $2)")
                .bind(new.name.as_str())
                .bind(m.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let details = serde_json::json!({ "from": old_name, "members": new.members });
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.role.update",
            &new.name,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes some members of a role; the role's record goes when none is left (its policies
    /// and conditions stay, as the reference keeps them).
    pub async fn remove_role_members(
        &self,
        actor: &Actor,
        name: &str,
        members: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        for m in members {
            let done =
                sqlx::query("DELETE FROM rbac_role_members WHERE role_name = $1 AND member = $2")
                    .bind(name)
                    .bind(m.as_str())
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "role member '{m}' of {name} was not found"
                )));
            }
        }
        let left = rows::int(
            &sqlx::query("SELECT COUNT(*) AS n FROM rbac_role_members WHERE role_name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?,
            "n",
        )?;
        if left == 0 {
            // As the reference: the role's record goes with its last member; its policies and
            // conditions stay (they apply again if the role gets members).
            sqlx::query("DELETE FROM rbac_roles WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.role.members.remove",
            name,
            Some(serde_json::json!({ "members": members, "roleDeleted": left == 0 })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a role with its members, policies and conditions.
    pub async fn delete_role(&self, actor: &Actor, name: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        if !delete_role_in(&mut tx, name).await? {
            return Err(StoreError::NotFound(format!("{name} was not found")));
        }
        audit::record(&mut tx, actor, None, "rbac.role.delete", name, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every policy, or those of one subject.
    pub async fn list_policies(
        &self,
        subject: Option<&str>,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        let found = match subject {
            Some(s) => {
                sqlx::query("SELECT * FROM rbac_policies WHERE subject = $1 ORDER BY id")
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM rbac_policies ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        found.iter().map(policy_row).collect()
    }

    /// Adds policies; 409 when one exists already (nothing is added then).
    pub async fn add_policies(
        &self,
        actor: &Actor,
        policies: &[PolicyRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        for p in policies {
            insert_policy(&mut tx, p).await?;
        }
        let lines: Vec<String> = policies.iter().map(policy_text).collect();
        let target = policies
            .first()
            .map_or("", |p| p.subject.as_str())
            .to_owned();
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.policy.create",
            &target,
            Some(serde_json::json!({ "policies": lines })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes policies; 404 when one is missing (nothing is deleted then).
    pub async fn delete_policies(
        &self,
        actor: &Actor,
        policies: &[PolicyRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        for p in policies {
            if delete_policy(&mut tx, p).await? == 0 {
                return Err(StoreError::NotFound(format!(
                    "Policy '{}' not found",
                    policy_text(p)
                )));
            }
        }
        let lines: Vec<String> = policies.iter().map(policy_text).collect();
        let target = policies
            .first()
            .map_or("", |p| p.subject.as_str())
            .to_owned();
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.policy.delete",
            &target,
            Some(serde_json::json!({ "policies": lines })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces `old` policies with `new` ones in one transaction.
    pub async fn replace_policies(
        &self,
        actor: &Actor,
        old: &[PolicyRecord],
        new: &[PolicyRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        for p in old {
            if delete_policy(&mut tx, p).await? == 0 {
                return Err(StoreError::NotFound(format!(
                    "Policy '{}' not found",
                    policy_text(p)
                )));
            }
        }
        for p in new {
            insert_policy(&mut tx, p).await?;
        }
        let details = serde_json::json!({ "old": old.iter().map(policy_text).collect::<Vec<_>>(), "new": new.iter().map(policy_text).collect::<Vec<_>>() });
        let target = new
            .first()
            .or(old.first())
            .map_or("", |p| p.subject.as_str())
            .to_owned();
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.policy.update",
            &target,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every conditional policy.
    pub async fn list_conditions(&self) -> Result<Vec<ConditionRecord>, StoreError> {
        sqlx::query("SELECT * FROM rbac_conditions ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(condition_row)
            .collect()
    }

    /// One conditional policy.
    pub async fn get_condition(&self, id: i64) -> Result<ConditionRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM rbac_conditions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("A condition with id {id} was not found"))
            })?;
        condition_row(&row)
    }

    /// Stores a conditional policy and returns its id.
    pub async fn create_condition(
        &self,
        actor: &Actor,
        c: &NewCondition,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        check_overlap(&mut tx, c, None).await?;
        let row = sqlx::query(
            "INSERT INTO rbac_conditions (role_name, plugin_id, resource_type, actions, conditions, source) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(c.role.as_str())
        .bind(c.plugin_id.as_str())
        .bind(c.resource_type.as_str())
        .bind(serde_json::to_string(&c.actions).unwrap_or_default())
        .bind(c.conditions.to_string())
        .bind(c.source.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let id = rows::int(&row, "id")?;
        let details = serde_json::json!({ "id": id, "resourceType": c.resource_type, "permissionMapping": c.actions });
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.condition.create",
            &c.role,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Replaces a conditional policy.
    pub async fn update_condition(
        &self,
        actor: &Actor,
        id: i64,
        c: &NewCondition,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        check_overlap(&mut tx, c, Some(id)).await?;
        let done = sqlx::query(
            "UPDATE rbac_conditions SET role_name = $1, plugin_id = $2, resource_type = $3, actions = $4, conditions = $5 WHERE id = $6",
        )
        .bind(c.role.as_str())
        .bind(c.plugin_id.as_str())
        .bind(c.resource_type.as_str())
        .bind(serde_json::to_string(&c.actions).unwrap_or_default())
        .bind(c.conditions.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "A condition with id {id} was not found"
            )));
        }
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.condition.update",
            &c.role,
            Some(serde_json::json!({ "id": id })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a conditional policy.
    pub async fn delete_condition(&self, actor: &Actor, id: i64) -> Result<(), StoreError> {
        let current = self.get_condition(id).await?;
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        sqlx::query("DELETE FROM rbac_conditions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            actor,
            None,
            "rbac.condition.delete",
            &current.role,
            Some(serde_json::json!({ "id": id })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes the policies and role memberships of `source` exactly `items`: adds what is new,
    /// removes what is gone, leaves everything else (other sources) untouched. Roles of the source
    /// are created as needed and dropped when they lose their last member.
    pub async fn sync_source(
        &self,
        actor: &Actor,
        source: &str,
        items: &SourceItems,
    ) -> Result<SourceDiff, StoreError> {
        let now = now_millis();
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        let mut diff = SourceDiff::default();
        let current: BTreeSet<PolicyRecord> =
            sqlx::query("SELECT * FROM rbac_policies WHERE source = $1")
                .bind(source)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(policy_row)
                .collect::<Result<_, _>>()?;
        let wanted: BTreeSet<PolicyRecord> = items.policies.iter().cloned().collect();
        for p in current.difference(&wanted) {
            diff.policies_removed += delete_policy(&mut tx, p).await? as usize;
        }
        for p in wanted.difference(&current) {
            // A line another source already holds stays with that source.
            let taken = sqlx::query("SELECT id FROM rbac_policies WHERE subject = $1 AND permission = $2 AND action = $3 AND effect = $4")
                .bind(p.subject.as_str())
                .bind(p.permission.as_str())
                .bind(p.action.as_str())
                .bind(p.effect.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_none() {
                insert_policy(&mut tx, p).await?;
                diff.policies_added += 1;
            }
        }
        let current_members: BTreeSet<(String, String)> =
            sqlx::query("SELECT rm.role_name, rm.member FROM rbac_role_members rm JOIN rbac_roles r ON r.name = rm.role_name WHERE r.source = $1")
                .bind(source)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((rows::text(r, "role_name")?, rows::text(r, "member")?)))
                .collect::<Result<_, StoreError>>()?;
        let wanted_members: BTreeSet<(String, String)> = items.members.iter().cloned().collect();
        for (role, member) in current_members.difference(&wanted_members) {
            sqlx::query("DELETE FROM rbac_role_members WHERE role_name = $1 AND member = $2")
                .bind(role.as_str())
                .bind(member.as_str())
                .execute(&mut *tx)
                .await?;
            diff.members_removed += 1;
        }
        for (role, member) in wanted_members.difference(&current_members) {
            let owner = sqlx::query("SELECT source FROM rbac_roles WHERE name = $1")
                .bind(role.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            match owner {
                None => {
                    sqlx::query("INSERT INTO rbac_roles (name, source, author, modified_by, created_at, last_modified) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(role.as_str())
                        .bind(source)
                        .bind(actor.name.as_str())
                        .bind(actor.name.as_str())
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(row) if rows::text(&row, "source")? != source => continue,
                Some(_) => {}
            }
            sqlx::query("INSERT INTO rbac_role_members (role_name, member) VALUES ($1, $2)")
                .bind(role.as_str())
                .bind(member.as_str())
                .execute(&mut *tx)
                .await?;
            diff.members_added += 1;
        }
        // Roles of this source without members are gone.
        sqlx::query("DELETE FROM rbac_roles WHERE source = $1 AND name NOT IN (SELECT role_name FROM rbac_role_members)").bind(source).execute(&mut *tx).await?;
        let details = serde_json::json!({
            "policiesAdded": diff.policies_added, "policiesRemoved": diff.policies_removed,
            "membersAdded": diff.members_added, "membersRemoved": diff.members_removed,
        });
        if diff != SourceDiff::default() {
            audit::record(
                &mut tx,
                actor,
                None,
                "rbac.source.sync",
                source,
                Some(details),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(diff)
    }
}

impl Store {
    /// Makes the conditional policies of `source` exactly `conditions` (by content); returns how
    /// many were added and removed.
    pub async fn sync_conditions(
        &self,
        actor: &Actor,
        source: &str,
        conditions: &[NewCondition],
    ) -> Result<(usize, usize), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        let current: Vec<ConditionRecord> =
            sqlx::query("SELECT * FROM rbac_conditions WHERE source = $1 ORDER BY id")
                .bind(source)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(condition_row)
                .collect::<Result<_, _>>()?;
        let same = |c: &ConditionRecord, n: &NewCondition| {
            c.role == n.role
                && c.plugin_id == n.plugin_id
                && c.resource_type == n.resource_type
                && c.actions == n.actions
                && c.conditions == n.conditions
        };
        let mut removed = 0;
        for c in current
            .iter()
            .filter(|c| !conditions.iter().any(|n| same(c, n)))
        {
            sqlx::query("DELETE FROM rbac_conditions WHERE id = $1")
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            removed += 1;
        }
        let mut added = 0;
        for n in conditions
            .iter()
            .filter(|n| !current.iter().any(|c| same(c, n)))
        {
            sqlx::query("INSERT INTO rbac_conditions (role_name, plugin_id, resource_type, actions, conditions, source) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(n.role.as_str())
                .bind(n.plugin_id.as_str())
                .bind(n.resource_type.as_str())
                .bind(serde_json::to_string(&n.actions).unwrap_or_default())
                .bind(n.conditions.to_string())
                .bind(source)
                .execute(&mut *tx)
                .await?;
            added += 1;
        }
        let details = serde_json::json!({ "conditionsAdded": added, "conditionsRemoved": removed });
        if added + removed > 0 {
            audit::record(
                &mut tx,
                actor,
                None,
                "rbac.conditions.sync",
                source,
                Some(details),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((added, removed))
    }

    /// Records an event that changes nothing (a refused policy file, say) in the audit trail.
    pub async fn record_event(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.lock_rbac(&mut tx).await?;
        audit::record(&mut tx, actor, None, action, target, Some(details)).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A role holds one condition per resource type and action: checked inside the (locked) write
/// transaction, so two concurrent writers cannot both pass.
async fn check_overlap(
    tx: &mut Transaction<'static, sqlx::Any>,
    c: &NewCondition,
    except: Option<i64>,
) -> Result<(), StoreError> {
    let existing =
        sqlx::query("SELECT * FROM rbac_conditions WHERE role_name = $1 AND resource_type = $2")
            .bind(c.role.as_str())
            .bind(c.resource_type.as_str())
            .fetch_all(&mut **tx)
            .await?;
    for row in &existing {
        let other = condition_row(row)?;
        if Some(other.id) == except {
            continue;
        }
        if let Some(action) = other.actions.iter().find(|a| c.actions.contains(a)) {
            return Err(StoreError::Conflict(format!(
                "A condition with resource type '{}' and permission '{action}' has already been stored for role '{}'",
                c.resource_type, c.role
            )));
        }
    }
    Ok(())
}

async fn delete_role_in(
    tx: &mut Transaction<'static, sqlx::Any>,
    name: &str,
) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM rbac_policies WHERE subject = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM rbac_conditions WHERE role_name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    let done = sqlx::query("DELETE FROM rbac_roles WHERE name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}
