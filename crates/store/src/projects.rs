//! Projects of an org and who is assigned to them.

use portcullis_model::{MembershipStatus, ProjectId, ProjectRole, Timestamp, UserId};
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::rows;
use crate::{OrgRecord, Store, StoreError, now_millis};

/// A project as stored.
#[derive(Debug, Clone)]
pub struct ProjectRecord {
    /// Id.
    pub id: ProjectId,
    /// Name, unique in the org (a slug).
    pub name: String,
    /// What the project is for.
    pub description: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// A user assigned to a project.
#[derive(Debug, Clone)]
pub struct ProjectMemberRecord {
    /// User id.
    pub user_id: UserId,
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Role in the project.
    pub role: ProjectRole,
    /// Suspended while the user's org membership is deactivated.
    pub suspended: bool,
}

fn project_row(row: &AnyRow) -> Result<ProjectRecord, StoreError> {
    Ok(ProjectRecord {
        id: rows::id(row, "id")?,
        name: rows::text(row, "name")?,
        description: rows::text(row, "description")?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

impl Store {
    /// Creates a project.
    pub async fn create_project(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        name: &str,
        description: &str,
    ) -> Result<ProjectRecord, StoreError> {
        let now = now_millis();
        let project = ProjectRecord {
            id: ProjectId::new(),
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: Timestamp(now),
            updated_at: Timestamp(now),
        };
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO projects (id, org_id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(project.id.to_string())
            .bind(org.id.to_string())
            .bind(name)
            .bind(description)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, format!("a project named '{name}' already exists in org '{}'", org.slug)))?;
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "project.create",
            &format!("project:{}/{name}", org.slug),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(project)
    }

    /// The projects of an org, by name.
    pub async fn list_projects(&self, org: &OrgRecord) -> Result<Vec<ProjectRecord>, StoreError> {
        let found = sqlx::query("SELECT * FROM projects WHERE org_id = $1 ORDER BY name")
            .bind(org.id.to_string())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(project_row).collect()
    }

    /// A project by name.
    pub async fn get_project(
        &self,
        org: &OrgRecord,
        name: &str,
    ) -> Result<ProjectRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM projects WHERE org_id = $1 AND name = $2")
            .bind(org.id.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("no project '{name}' in org '{}'", org.slug))
            })?;
        project_row(&row)
    }

    /// Renames a project and/or changes its description.
    pub async fn update_project(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        name: &str,
        new_name: Option<&str>,
        description: Option<&str>,
    ) -> Result<ProjectRecord, StoreError> {
        let current = self.get_project(org, name).await?;
        let now = now_millis();
        let new_name = new_name.unwrap_or(&current.name);
        let description = description.unwrap_or(&current.description);
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE projects SET name = $1, description = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(new_name)
        .bind(description)
        .bind(now)
        .bind(current.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::unique(
                e,
                format!(
                    "a project named '{new_name}' already exists in org '{}'",
                    org.slug
                ),
            )
        })?;
        let details = serde_json::json!({ "from": current.name, "to": new_name });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "project.update",
            &format!("project:{}/{new_name}", org.slug),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(ProjectRecord {
            name: new_name.to_owned(),
            description: description.to_owned(),
            updated_at: Timestamp(now),
            ..current
        })
    }

    /// Deletes a project and its assignments.
    pub async fn delete_project(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        name: &str,
    ) -> Result<(), StoreError> {
        let current = self.get_project(org, name).await?;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(current.id.to_string())
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "project.delete",
            &format!("project:{}/{name}", org.slug),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Assigns a member of the org to a project with `role` (or changes the role).
    pub async fn set_project_member(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        project: &str,
        user: UserId,
        role: ProjectRole,
    ) -> Result<(), StoreError> {
        let project = self.get_project(org, project).await?;
        let member = self.get_member(org, user).await?;
        let mut tx = self.write().await?;
        // Read again under the org's lock: a removal from the org at the same moment either
        // came first (refused here) or comes after (and deletes this assignment).
        self.lock_org(&mut tx, &org.id.to_string()).await?;
        let status = crate::users::membership_in_tx(&mut tx, org, user).await?;
        let suspended = status == MembershipStatus::Deactivated;
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project.id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO project_members (project_id, user_id, role, suspended, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(project.id.to_string())
            .bind(user.to_string())
            .bind(role.as_str())
            .bind(i64::from(suspended))
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({ "user": audit::user_target(&org.slug, &member.user.username), "role": role.as_str() });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "project.member.set",
            &format!("project:{}/{}", org.slug, project.name),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a user off a project.
    pub async fn remove_project_member(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        project: &str,
        user: UserId,
    ) -> Result<(), StoreError> {
        let project = self.get_project(org, project).await?;
        let mut tx = self.write().await?;
        let done =
            sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                .bind(project.id.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "user '{user}' is not assigned to project '{}'",
                project.name
            )));
        }
        let details = serde_json::json!({ "userId": user.to_string() });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "project.member.remove",
            &format!("project:{}/{}", org.slug, project.name),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who is assigned to a project.
    pub async fn project_members(
        &self,
        org: &OrgRecord,
        project: &str,
    ) -> Result<Vec<ProjectMemberRecord>, StoreError> {
        let project = self.get_project(org, project).await?;
        let found = sqlx::query(
            "SELECT u.id, u.email, u.username, pm.role, pm.suspended FROM project_members pm JOIN users u ON u.id = pm.user_id \
             WHERE pm.project_id = $1 ORDER BY u.email_lower",
        )
        .bind(project.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(|r| {
                Ok(ProjectMemberRecord {
                    user_id: rows::id(r, "id")?,
                    email: rows::text(r, "email")?,
                    username: rows::text(r, "username")?,
                    role: rows::parsed(r, "role", ProjectRole::parse)?,
                    suspended: rows::flag(r, "suspended")?,
                })
            })
            .collect()
    }
}
