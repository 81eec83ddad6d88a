//! Users and their memberships in orgs.

use std::collections::HashMap;

use portcullis_model::{
    MembershipStatus, OrgId, OrgRole, ProjectRole, Timestamp, UserId, UserKind,
};
use sqlx::Transaction;
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::orgs::org_row;
use crate::rows::{self, Dynamic, Param};
use crate::{OrgRecord, Page, Paged, Store, StoreError, now_millis};

/// A user as stored (one per email across all orgs).
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Id.
    pub id: UserId,
    /// Email as given; unique across all orgs, case-insensitively.
    pub email: String,
    /// Name in entity references `user:<org>/<username>`; unique, case-insensitively.
    pub username: String,
    /// Full name.
    pub display_name: String,
    /// Local, SSO or machine.
    pub kind: UserKind,
    /// May use the web console (never for machines).
    pub console_access: bool,
    /// May create orgs.
    pub platform_admin: bool,
    /// Last time any credential of the user was used (batched, so up to a flush interval old).
    pub last_access_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// A project the member is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectAssignment {
    /// Project name.
    pub project: String,
    /// Role in it.
    pub role: ProjectRole,
    /// Suspended while the membership is deactivated.
    pub suspended: bool,
}

/// A user seen from one org: the user, the membership and what it holds there.
#[derive(Debug, Clone)]
pub struct MemberRecord {
    /// The user.
    pub user: UserRecord,
    /// The org.
    pub org_id: OrgId,
    /// Org-wide role.
    pub role: OrgRole,
    /// Active or deactivated.
    pub status: MembershipStatus,
    /// Joined the org.
    pub joined_at: Timestamp,
    /// Groups of this org the user is a direct member of.
    pub groups: Vec<String>,
    /// Projects of this org the user is assigned to.
    pub projects: Vec<ProjectAssignment>,
}

/// One org of the calling user, for `/me`.
#[derive(Debug, Clone)]
pub struct MyOrg {
    /// The org.
    pub org: OrgRecord,
    /// Org-wide role.
    pub role: OrgRole,
    /// Active or deactivated.
    pub status: MembershipStatus,
    /// Direct groups there.
    pub groups: Vec<String>,
    /// Projects there.
    pub projects: Vec<ProjectAssignment>,
}

/// A user to create in an org.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email (validated).
    pub email: String,
    /// Username (validated).
    pub username: String,
    /// Full name.
    pub display_name: String,
    /// Kind.
    pub kind: UserKind,
    /// Console access (forced off for machines).
    pub console_access: bool,
    /// Org-wide role in the org it is created in.
    pub role: OrgRole,
    /// May create orgs.
    pub platform_admin: bool,
}

/// Changes to a user and their membership; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New email.
    pub email: Option<String>,
    /// New username.
    pub username: Option<String>,
    /// New full name.
    pub display_name: Option<String>,
    /// Console access.
    pub console_access: Option<bool>,
    /// Org-wide role in this org.
    pub role: Option<OrgRole>,
}

/// Filters for listing an org's users.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Email contains (case-insensitive).
    pub email: Option<String>,
    /// Username or full name contains (case-insensitive).
    pub name: Option<String>,
    /// Kind.
    pub kind: Option<UserKind>,
    /// Direct member of the group with this name.
    pub group: Option<String>,
    /// Membership status.
    pub status: Option<MembershipStatus>,
}

pub(crate) fn user_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: rows::id(row, "id")?,
        email: rows::text(row, "email")?,
        username: rows::text(row, "username")?,
        display_name: rows::text(row, "display_name")?,
        kind: rows::parsed(row, "kind", UserKind::parse)?,
        console_access: rows::flag(row, "console_access")?,
        platform_admin: rows::flag(row, "platform_admin")?,
        last_access_at: rows::opt_time(row, "last_access_at")?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

fn member_row(row: &AnyRow) -> Result<MemberRecord, StoreError> {
    Ok(MemberRecord {
        user: user_row(row)?,
        org_id: rows::id(row, "m_org_id")?,
        role: rows::parsed(row, "m_role", OrgRole::parse)?,
        status: rows::parsed(row, "m_status", MembershipStatus::parse)?,
        joined_at: rows::time(row, "m_created_at")?,
        groups: Vec::new(),
        projects: Vec::new(),
    })
}

const MEMBER_SELECT: &str = "SELECT u.*, m.org_id AS m_org_id, m.role AS m_role, m.status AS m_status, m.created_at AS m_created_at \
     FROM users u JOIN memberships m ON m.user_id = u.id";

/// Refuses an email or username that another user holds (case-insensitively).
async fn check_unique(
    tx: &mut Transaction<'static, sqlx::Any>,
    except: Option<UserId>,
    email: Option<&str>,
    username: Option<&str>,
) -> Result<(), StoreError> {
    let except = except.map(|u| u.to_string()).unwrap_or_default();
    if let Some(email) = email {
        let taken = sqlx::query("SELECT id FROM users WHERE email_lower = $1 AND id <> $2")
            .bind(email.to_lowercase())
            .bind(except.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "a user with email '{email}' already exists"
            )));
        }
    }
    if let Some(username) = username {
        let taken = sqlx::query("SELECT id FROM users WHERE username_lower = $1 AND id <> $2")
            .bind(username.to_lowercase())
            .bind(except.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "username '{username}' is taken; choose another"
            )));
        }
    }
    Ok(())
}

impl Store {
    /// Creates a user and makes them a member of `org`.
    pub async fn create_user(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        new: &NewUser,
    ) -> Result<MemberRecord, StoreError> {
        let mut tx = self.write().await?;
        let member = insert_user(&mut tx, actor, org, new, false).await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Creates a local user with a temporary password (`phc`, valid until `expires_at`) in one
    /// transaction: there is never a local user without a way to sign in.
    pub async fn create_user_with_password(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        new: &NewUser,
        phc: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<MemberRecord, StoreError> {
        let mut tx = self.write().await?;
        let member = insert_user(&mut tx, actor, org, new, true).await?;
        sqlx::query("INSERT INTO local_passwords (user_id, phc, temporary, expires_at, changed_at) VALUES ($1, $2, 1, $3, $4)")
            .bind(member.user.id.to_string())
            .bind(phc)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Adds an existing user (found by email) to `org`.
    pub async fn add_member(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        email: &str,
        role: OrgRole,
    ) -> Result<MemberRecord, StoreError> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let row = sqlx::query("SELECT * FROM users WHERE email_lower = $1")
            .bind(email.to_lowercase())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("no user with email '{email}'; create them instead"))
            })?;
        let user = user_row(&row)?;
        sqlx::query("INSERT INTO memberships (user_id, org_id, role, status, created_at, updated_at) VALUES ($1, $2, $3, 'active', $4, $5)")
            .bind(user.id.to_string())
            .bind(org.id.to_string())
            .bind(role.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, format!("'{email}' is already a member of org '{}'", org.slug)))?;
        let target = audit::user_target(&org.slug, &user.username);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "member.add",
            &target,
            Some(serde_json::json!({ "role": role.as_str() })),
        )
        .await?;
        tx.commit().await?;
        self.get_member(org, user.id).await
    }

    /// One member of `org`.
    pub async fn get_member(
        &self,
        org: &OrgRecord,
        user: UserId,
    ) -> Result<MemberRecord, StoreError> {
        let sql = format!("{MEMBER_SELECT} WHERE m.org_id = $1 AND u.id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org.id.to_string())
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_a_member(org, user))?;
        let mut members = vec![member_row(&row)?];
        self.decorate(org.id, &mut members).await?;
        Ok(members.remove(0))
    }

    /// The members of `org` that match `filter`, ordered by email.
    pub async fn list_members(
        &self,
        org: &OrgRecord,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Paged<MemberRecord>, StoreError> {
        let mut q = Dynamic::default();
        let mut clauses = vec![format!(
            "m.org_id = {}",
            q.push(Param::Text(org.id.to_string()))
        )];
        if let Some(email) = &filter.email {
            clauses.push(format!(
                "u.email_lower LIKE {} ESCAPE '\\'",
                q.push(Param::Text(rows::contains_pattern(email)))
            ));
        }
        if let Some(name) = &filter.name {
            let p = q.push(Param::Text(rows::contains_pattern(name)));
            clauses.push(format!("(u.username_lower LIKE {p} ESCAPE '\\' OR LOWER(u.display_name) LIKE {p} ESCAPE '\\')"));
        }
        if let Some(kind) = filter.kind {
            clauses.push(format!(
                "u.kind = {}",
                q.push(Param::Text(kind.as_str().to_owned()))
            ));
        }
        if let Some(status) = filter.status {
            clauses.push(format!(
                "m.status = {}",
                q.push(Param::Text(status.as_str().to_owned()))
            ));
        }
        if let Some(group) = &filter.group {
            let p = q.push(Param::Text(group.to_lowercase()));
            clauses.push(format!(
                "u.id IN (SELECT gm.user_id FROM group_user_members gm JOIN org_groups g ON g.id = gm.group_id WHERE g.org_id = m.org_id AND g.name_lower = {p})"
            ));
        }
        let where_sql = clauses.join(" AND ");
        let count_sql = format!(
            "SELECT COUNT(*) AS n FROM users u JOIN memberships m ON m.user_id = u.id WHERE {where_sql}"
        );
        let total = rows::int(&q.query(count_sql).fetch_one(&self.pool).await?, "n")?;
        let list_sql = format!(
            "{MEMBER_SELECT} WHERE {where_sql} ORDER BY u.email_lower LIMIT {} OFFSET {}",
            page.limit, page.offset
        );
        let found = q.query(list_sql).fetch_all(&self.pool).await?;
        let mut items = found
            .iter()
            .map(member_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.decorate(org.id, &mut items).await?;
        Ok(Paged { items, total })
    }

    /// Fills in the groups and projects of members of one org.
    async fn decorate(&self, org: OrgId, members: &mut [MemberRecord]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut q = Dynamic::default();
        let org_p = q.push(Param::Text(org.to_string()));
        let ids: Vec<String> = members
            .iter()
            .map(|m| q.push(Param::Text(m.user.id.to_string())))
            .collect();
        let ids = ids.join(", ");
        let group_sql = format!(
            "SELECT gm.user_id, g.name FROM group_user_members gm JOIN org_groups g ON g.id = gm.group_id \
             WHERE g.org_id = {org_p} AND gm.user_id IN ({ids}) ORDER BY g.name_lower"
        );
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for row in q.query(group_sql).fetch_all(&self.pool).await? {
            groups
                .entry(rows::text(&row, "user_id")?)
                .or_default()
                .push(rows::text(&row, "name")?);
        }
        let project_sql = format!(
            "SELECT pm.user_id, p.name, pm.role, pm.suspended FROM project_members pm JOIN projects p ON p.id = pm.project_id \
             WHERE p.org_id = {org_p} AND pm.user_id IN ({ids}) ORDER BY p.name"
        );
        let mut projects: HashMap<String, Vec<ProjectAssignment>> = HashMap::new();
        for row in q.query(project_sql).fetch_all(&self.pool).await? {
            projects
                .entry(rows::text(&row, "user_id")?)
                .or_default()
                .push(ProjectAssignment {
                    project: rows::text(&row, "name")?,
                    role: rows::parsed(&row, "role", ProjectRole::parse)?,
                    suspended: rows::flag(&row, "suspended")?,
                });
        }
        for m in members {
            let key = m.user.id.to_string();
            m.groups = groups.remove(&key).unwrap_or_default();
            m.projects = projects.remove(&key).unwrap_or_default();
        }
        Ok(())
    }

    /// Changes a user's details and their role in `org`.
    pub async fn update_member(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        user: UserId,
        patch: &UserPatch,
    ) -> Result<MemberRecord, StoreError> {
        let current = self.get_member(org, user).await?;
        let now = now_millis();
        let mut tx = self.write().await?;
        if patch.role.is_some_and(|r| r != OrgRole::Admin) {
            self.lock_org(&mut tx, &org.id.to_string()).await?;
            keep_an_admin(&mut tx, org, user).await?;
        }
        // The membership's row before the user's, in the order a key being made takes them
        // (`insert_key`): the other order could deadlock with it on PostgreSQL, where changing
        // a unique column (email, username) locks the user's row against the key's foreign key.
        if let Some(role) = patch.role {
            sqlx::query("UPDATE memberships SET role = $1, updated_at = $2 WHERE user_id = $3 AND org_id = $4")
                .bind(role.as_str())
                .bind(now)
                .bind(user.to_string())
                .bind(org.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        check_unique(
            &mut tx,
            Some(user),
            patch.email.as_deref(),
            patch.username.as_deref(),
        )
        .await?;
        let email = patch
            .email
            .clone()
            .unwrap_or_else(|| current.user.email.clone());
        let username = patch
            .username
            .clone()
            .unwrap_or_else(|| current.user.username.clone());
        let display_name = patch
            .display_name
            .clone()
            .unwrap_or_else(|| current.user.display_name.clone());
        let console_access = current.user.kind != UserKind::Machine
            && patch.console_access.unwrap_or(current.user.console_access);
        sqlx::query(
            "UPDATE users SET email = $1, email_lower = $2, username = $3, username_lower = $4, display_name = $5, console_access = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(email.as_str())
        .bind(email.to_lowercase())
        .bind(username.as_str())
        .bind(username.to_lowercase())
        .bind(display_name.as_str())
        .bind(i64::from(console_access))
        .bind(now)
        .bind(user.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, "that email or username is taken"))?;
        let details = serde_json::json!({
            "email": patch.email, "username": patch.username, "displayName": patch.display_name,
            "consoleAccess": patch.console_access, "role": patch.role.map(|r| r.as_str()),
        });
        let target = audit::user_target(&org.slug, &username);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "user.update",
            &target,
            Some(details),
        )
        .await?;
        tx.commit().await?;
        self.get_member(org, user).await
    }

    /// Deactivates (suspending every project assignment in the org) or reactivates a member.
    pub async fn set_member_status(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        user: UserId,
        status: MembershipStatus,
    ) -> Result<MemberRecord, StoreError> {
        let current = self.get_member(org, user).await?;
        let now = now_millis();
        let mut tx = self.write().await?;
        // Both ways under the org's lock: a project assignment made at the same moment reads the
        // status under it too, and so is suspended exactly when the member is deactivated.
        self.lock_org(&mut tx, &org.id.to_string()).await?;
        if status == MembershipStatus::Deactivated {
            keep_an_admin(&mut tx, org, user).await?;
        }
        sqlx::query("UPDATE memberships SET status = $1, updated_at = $2 WHERE user_id = $3 AND org_id = $4")
            .bind(status.as_str())
            .bind(now)
            .bind(user.to_string())
            .bind(org.id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE project_members SET suspended = $1 WHERE user_id = $2 AND project_id IN (SELECT id FROM projects WHERE org_id = $3)")
            .bind(i64::from(status == MembershipStatus::Deactivated))
            .bind(user.to_string())
            .bind(org.id.to_string())
            .execute(&mut *tx)
            .await?;
        let action = match status {
            MembershipStatus::Active => "user.reactivate",
            MembershipStatus::Deactivated => "user.deactivate",
        };
        let target = audit::user_target(&org.slug, &current.user.username);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            action,
            &target,
            None,
        )
        .await?;
        tx.commit().await?;
        self.get_member(org, user).await
    }

    /// Removes a user from `org` for good: membership, groups, projects and the keys bound to the
    /// org go; memberships in other orgs stay.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        user: UserId,
    ) -> Result<(), StoreError> {
        let current = self.get_member(org, user).await?;
        let (u, o) = (user.to_string(), org.id.to_string());
        let mut tx = self.write().await?;
        // The org's lock orders this removal with admins changing at the same time (one of two
        // admins removing each other is refused) and with assignments to the org's projects and
        // groups (made before it, they are deleted below; after it, they find no membership).
        self.lock_org(&mut tx, &o).await?;
        keep_an_admin(&mut tx, org, user).await?;
        // The membership goes first: its row lock makes a key being made for the org at the same
        // time (see `insert_key`) either wait for this removal and be refused, or finish first
        // and be deleted below with the others.
        let removed = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND org_id = $2")
            .bind(u.as_str())
            .bind(o.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(not_a_member(org, user));
        }
        sqlx::query("DELETE FROM project_members WHERE user_id = $1 AND project_id IN (SELECT id FROM projects WHERE org_id = $2)")
            .bind(u.as_str())
            .bind(o.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM group_user_members WHERE user_id = $1 AND group_id IN (SELECT id FROM org_groups WHERE org_id = $2)")
            .bind(u.as_str())
            .bind(o.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_keys WHERE user_id = $1 AND org_id = $2")
            .bind(u.as_str())
            .bind(o.as_str())
            .execute(&mut *tx)
            .await?;
        let target = audit::user_target(&org.slug, &current.user.username);
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "user.remove",
            &target,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A user by id.
    pub async fn get_user(&self, user: UserId) -> Result<UserRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no user '{user}'")))?;
        user_row(&row)
    }

    /// Every org the user belongs to, with role, status, groups and projects there.
    pub async fn my_orgs(&self, user: UserId) -> Result<Vec<MyOrg>, StoreError> {
        let found = sqlx::query(
            "SELECT o.*, m.role AS m_role, m.status AS m_status FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE m.user_id = $1 ORDER BY o.slug",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for row in &found {
            let org = org_row(row)?;
            let mut member = vec![self.get_member(&org, user).await?];
            let m = member.remove(0);
            out.push(MyOrg {
                role: rows::parsed(row, "m_role", OrgRole::parse)?,
                status: rows::parsed(row, "m_status", MembershipStatus::parse)?,
                groups: m.groups,
                projects: m.projects,
                org,
            });
        }
        Ok(out)
    }
}

/// Inserts a user and their first membership inside `tx`.
/// `temporary_password` says (in the audit record) that a temporary password is set with it.
pub(crate) async fn insert_user(
    tx: &mut Transaction<'static, sqlx::Any>,
    actor: &Actor,
    org: &OrgRecord,
    new: &NewUser,
    temporary_password: bool,
) -> Result<MemberRecord, StoreError> {
    check_unique(tx, None, Some(&new.email), Some(&new.username)).await?;
    let now = now_millis();
    let id = UserId::new();
    let console_access = new.console_access && new.kind != UserKind::Machine;
    sqlx::query(
        "INSERT INTO users (id, email, email_lower, username, username_lower, display_name, kind, console_access, platform_admin, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.to_string())
    .bind(new.email.as_str())
    .bind(new.email.to_lowercase())
    .bind(new.username.as_str())
    .bind(new.username.to_lowercase())
    .bind(new.display_name.as_str())
    .bind(new.kind.as_str())
    .bind(i64::from(console_access))
    .bind(i64::from(new.platform_admin))
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::unique(e, format!("a user with email '{}' or username '{}' already exists", new.email, new.username)))?;
    sqlx::query("INSERT INTO memberships (user_id, org_id, role, status, created_at, updated_at) VALUES ($1, $2, $3, 'active', $4, $5)")
        .bind(id.to_string())
        .bind(org.id.to_string())
        .bind(new.role.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let mut details = serde_json::json!({ "email": new.email, "kind": new.kind.as_str(), "role": new.role.as_str(), "consoleAccess": console_access });
    if temporary_password {
        details["temporaryPassword"] = serde_json::Value::Bool(true);
    }
    let target = audit::user_target(&org.slug, &new.username);
    audit::record(
        tx,
        actor,
        Some((&org.id, &org.slug)),
        "user.create",
        &target,
        Some(details),
    )
    .await?;
    let user = UserRecord {
        id,
        email: new.email.clone(),
        username: new.username.clone(),
        display_name: new.display_name.clone(),
        kind: new.kind,
        console_access,
        platform_admin: new.platform_admin,
        last_access_at: None,
        created_at: Timestamp(now),
        updated_at: Timestamp(now),
    };
    Ok(MemberRecord {
        user,
        org_id: org.id,
        role: new.role,
        status: MembershipStatus::Active,
        joined_at: Timestamp(now),
        groups: Vec::new(),
        projects: Vec::new(),
    })
}

impl Store {
    /// A user by username (case-insensitive).
    pub async fn get_user_by_username(&self, username: &str) -> Result<UserRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE username_lower = $1")
            .bind(username.to_lowercase())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no user '{username}'")))?;
        user_row(&row)
    }

    /// Users who have used Portcullis (a last access is recorded), with the slugs of their orgs,
    /// for the user statistics.
    pub async fn list_seen_users(&self) -> Result<Vec<(UserRecord, Vec<String>)>, StoreError> {
        let found = sqlx::query(
            "SELECT * FROM users WHERE last_access_at IS NOT NULL ORDER BY email_lower",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut users: Vec<(UserRecord, Vec<String>)> = found
            .iter()
            .map(|r| Ok((user_row(r)?, Vec::new())))
            .collect::<Result<_, StoreError>>()?;
        let slugs = sqlx::query("SELECT m.user_id, o.slug FROM memberships m JOIN orgs o ON o.id = m.org_id ORDER BY o.slug").fetch_all(&self.pool).await?;
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for row in &slugs {
            by_user
                .entry(rows::text(row, "user_id")?)
                .or_default()
                .push(rows::text(row, "slug")?);
        }
        for (user, orgs) in &mut users {
            *orgs = by_user.remove(&user.id.to_string()).unwrap_or_default();
        }
        Ok(users)
    }
}

/// Refuses a change that makes `user` stop being an active admin of `org` when no other active
/// admin would be left: an org without one can be managed by nobody, and no one could make a new
/// one. Called inside the change's transaction after `lock_org`, so that two admins demoting or
/// removing each other at the same moment cannot both pass.
async fn keep_an_admin(
    tx: &mut Transaction<'static, sqlx::Any>,
    org: &OrgRecord,
    user: UserId,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(CASE WHEN user_id = $2 THEN 1 ELSE 0 END), 0) AS this, COALESCE(SUM(CASE WHEN user_id <> $2 THEN 1 ELSE 0 END), 0) AS others FROM memberships WHERE org_id = $1 AND role = 'admin' AND status = 'active'",
    )
    .bind(org.id.to_string())
    .bind(user.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if rows::int(&row, "this")? > 0 && rows::int(&row, "others")? == 0 {
        return Err(StoreError::Conflict(format!(
            "org '{}' would be left without an active admin; make another member admin first",
            org.slug
        )));
    }
    Ok(())
}

/// The status of `user`'s membership in `org`, read inside `tx` (after `lock_org`, so that a
/// removal of the member cannot pass between this read and what the transaction writes).
pub(crate) async fn membership_in_tx(
    tx: &mut Transaction<'static, sqlx::Any>,
    org: &OrgRecord,
    user: UserId,
) -> Result<MembershipStatus, StoreError> {
    let row = sqlx::query("SELECT status FROM memberships WHERE user_id = $1 AND org_id = $2")
        .bind(user.to_string())
        .bind(org.id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| not_a_member(org, user))?;
    rows::parsed(&row, "status", MembershipStatus::parse)
}

/// The answer for a user who is not (or no longer) a member of `org`.
fn not_a_member(org: &OrgRecord, user: UserId) -> StoreError {
    StoreError::NotFound(format!("no user '{user}' in org '{}'", org.slug))
}
