//! Groups of an org, with nested groups (cycles refused on write).

use std::collections::{HashMap, HashSet};

use portcullis_model::{GroupId, Timestamp, UserId};
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::rows;
use crate::{OrgRecord, Store, StoreError, now_millis};

/// A group as stored.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// Id.
    pub id: GroupId,
    /// Name in entity references `group:<org>/<name>`; unique in the org, case-insensitively.
    pub name: String,
    /// What the group is for.
    pub description: String,
    /// `local` (managed here) or `idp` (synced from an identity provider at login).
    pub source: String,
    /// Created.
    pub created_at: Timestamp,
}

/// A direct member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMember {
    /// A user, by id, with their email and username.
    User {
        /// Id.
        id: UserId,
        /// Email.
        email: String,
        /// Username.
        username: String,
    },
    /// A nested group, by name.
    Group(String),
}

/// The direct members of a group.
#[derive(Debug, Clone, Default)]
pub struct GroupMembers {
    /// Users.
    pub users: Vec<GroupMember>,
    /// Nested groups.
    pub groups: Vec<GroupMember>,
}

fn group_row(row: &AnyRow) -> Result<GroupRecord, StoreError> {
    Ok(GroupRecord {
        id: rows::id(row, "id")?,
        name: rows::text(row, "name")?,
        description: rows::text(row, "description")?,
        source: rows::text(row, "source")?,
        created_at: rows::time(row, "created_at")?,
    })
}

impl Store {
    /// Creates a local group.
    pub async fn create_group(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        name: &str,
        description: &str,
    ) -> Result<GroupRecord, StoreError> {
        let now = now_millis();
        let group = GroupRecord {
            id: GroupId::new(),
            name: name.to_owned(),
            description: description.to_owned(),
            source: "local".to_owned(),
            created_at: Timestamp(now),
        };
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO org_groups (id, org_id, name, name_lower, description, source, created_at) VALUES ($1, $2, $3, $4, $5, 'local', $6)")
            .bind(group.id.to_string())
            .bind(org.id.to_string())
            .bind(name)
            .bind(name.to_lowercase())
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, format!("a group named '{name}' already exists in org '{}'", org.slug)))?;
        let target = format!("group:{}/{}", org.slug, name);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "group.create",
            &target,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(group)
    }

    /// The groups of an org, by name.
    pub async fn list_groups(&self, org: &OrgRecord) -> Result<Vec<GroupRecord>, StoreError> {
        let found = sqlx::query("SELECT * FROM org_groups WHERE org_id = $1 ORDER BY name_lower")
            .bind(org.id.to_string())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(group_row).collect()
    }

    /// A group by name (case-insensitive).
    pub async fn get_group(&self, org: &OrgRecord, name: &str) -> Result<GroupRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM org_groups WHERE org_id = $1 AND name_lower = $2")
            .bind(org.id.to_string())
            .bind(name.to_lowercase())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("no group '{name}' in org '{}'", org.slug))
            })?;
        group_row(&row)
    }

    /// Deletes a group; its memberships (as parent and as child) go with it.
    pub async fn delete_group(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        name: &str,
    ) -> Result<(), StoreError> {
        let group = self.get_group(org, name).await?;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM org_groups WHERE id = $1")
            .bind(group.id.to_string())
            .execute(&mut *tx)
            .await?;
        let target = format!("group:{}/{}", org.slug, group.name);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "group.delete",
            &target,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The direct members of a group.
    pub async fn group_members(
        &self,
        org: &OrgRecord,
        name: &str,
    ) -> Result<GroupMembers, StoreError> {
        let group = self.get_group(org, name).await?;
        let users = sqlx::query(
            "SELECT u.id, u.email, u.username FROM group_user_members gm JOIN users u ON u.id = gm.user_id WHERE gm.group_id = $1 ORDER BY u.email_lower",
        )
        .bind(group.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let groups = sqlx::query(
            "SELECT g.name FROM group_group_members gg JOIN org_groups g ON g.id = gg.child_group_id WHERE gg.group_id = $1 ORDER BY g.name_lower",
        )
        .bind(group.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(GroupMembers {
            users: users
                .iter()
                .map(|r| {
                    Ok(GroupMember::User {
                        id: rows::id(r, "id")?,
                        email: rows::text(r, "email")?,
                        username: rows::text(r, "username")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            groups: groups
                .iter()
                .map(|r| Ok(GroupMember::Group(rows::text(r, "name")?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }

    /// Adds a user (who must be a member of the org) to a group.
    pub async fn add_user_to_group(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        group: &str,
        user: UserId,
    ) -> Result<(), StoreError> {
        let group = self.get_group(org, group).await?;
        let member = self.get_member(org, user).await?;
        let mut tx = self.write().await?;
        // Read again under the org's lock: a removal from the org at the same moment either
        // came first (refused here) or comes after (and deletes this membership).
        self.lock_org(&mut tx, &org.id.to_string()).await?;
        crate::users::membership_in_tx(&mut tx, org, user).await?;
        sqlx::query("INSERT INTO group_user_members (group_id, user_id) VALUES ($1, $2)")
            .bind(group.id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::unique(
                    e,
                    format!(
                        "'{}' is already a member of group '{}'",
                        member.user.username, group.name
                    ),
                )
            })?;
        let target = format!("group:{}/{}", org.slug, group.name);
        let details =
            serde_json::json!({ "user": audit::user_target(&org.slug, &member.user.username) });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "group.member.add",
            &target,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Nests group `child` inside `parent`, refusing a change that would close a cycle.
    pub async fn add_group_to_group(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        parent: &str,
        child: &str,
    ) -> Result<(), StoreError> {
        let parent = self.get_group(org, parent).await?;
        let child = self.get_group(org, child).await?;
        if parent.id == child.id {
            return Err(StoreError::Conflict(format!(
                "group '{}' cannot contain itself",
                parent.name
            )));
        }
        let mut tx = self.write().await?;
        self.lock_org(&mut tx, &org.id.to_string()).await?;
        // parent -> children edges of the whole org; a path child ->* parent would close a cycle.
        let edges = sqlx::query(
            "SELECT gg.group_id, gg.child_group_id FROM group_group_members gg JOIN org_groups g ON g.id = gg.group_id WHERE g.org_id = $1",
        )
        .bind(org.id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for e in &edges {
            children
                .entry(rows::text(e, "group_id")?)
                .or_default()
                .push(rows::text(e, "child_group_id")?);
        }
        let (start, goal) = (child.id.to_string(), parent.id.to_string());
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(g) = stack.pop() {
            if g == goal {
                return Err(StoreError::Conflict(format!(
                    "adding group '{}' to '{}' would create a cycle ('{}' already contains '{}')",
                    child.name, parent.name, child.name, parent.name
                )));
            }
            if seen.insert(g.clone()) {
                stack.extend(children.get(&g).into_iter().flatten().cloned());
            }
        }
        sqlx::query("INSERT INTO group_group_members (group_id, child_group_id) VALUES ($1, $2)")
            .bind(parent.id.to_string())
            .bind(child.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::unique(
                    e,
                    format!(
                        "'{}' is already a member of group '{}'",
                        child.name, parent.name
                    ),
                )
            })?;
        let target = format!("group:{}/{}", org.slug, parent.name);
        let details = serde_json::json!({ "group": format!("group:{}/{}", org.slug, child.name) });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "group.member.add",
            &target,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a user out of a group.
    pub async fn remove_user_from_group(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        group: &str,
        user: UserId,
    ) -> Result<(), StoreError> {
        let group = self.get_group(org, group).await?;
        let mut tx = self.write().await?;
        let done =
            sqlx::query("DELETE FROM group_user_members WHERE group_id = $1 AND user_id = $2")
                .bind(group.id.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "user '{user}' is not a member of group '{}'",
                group.name
            )));
        }
        let target = format!("group:{}/{}", org.slug, group.name);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "group.member.remove",
            &target,
            Some(serde_json::json!({ "userId": user.to_string() })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a nested group out of a group.
    pub async fn remove_group_from_group(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        parent: &str,
        child: &str,
    ) -> Result<(), StoreError> {
        let parent = self.get_group(org, parent).await?;
        let child = self.get_group(org, child).await?;
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "DELETE FROM group_group_members WHERE group_id = $1 AND child_group_id = $2",
        )
        .bind(parent.id.to_string())
        .bind(child.id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "group '{}' is not a member of group '{}'",
                child.name, parent.name
            )));
        }
        let target = format!("group:{}/{}", org.slug, parent.name);
        let details = serde_json::json!({ "group": format!("group:{}/{}", org.slug, child.name) });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "group.member.remove",
            &target,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
