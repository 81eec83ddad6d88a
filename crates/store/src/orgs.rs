//! Orgs (tenants).

use portcullis_model::{OrgId, OrgRole, OrgSettings, UserId};
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::rows;
use crate::{OrgRecord, Store, StoreError, now_millis};

pub(crate) fn org_row(row: &AnyRow) -> Result<OrgRecord, StoreError> {
    let raw = rows::text(row, "settings")?;
    let settings: OrgSettings = serde_json::from_str(&raw)
        .map_err(|e| StoreError::Corrupt(format!("org settings: {e}")))?;
    Ok(OrgRecord {
        id: rows::id(row, "id")?,
        slug: rows::text(row, "slug")?,
        name: rows::text(row, "name")?,
        settings,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

pub(crate) fn settings_json(settings: &OrgSettings) -> Result<String, StoreError> {
    serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Creates an org; `admin`, when given, becomes its first org admin.
    pub async fn create_org(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
        admin: Option<UserId>,
    ) -> Result<OrgRecord, StoreError> {
        let now = now_millis();
        let org = OrgRecord {
            id: OrgId::new(),
            slug: slug.to_owned(),
            name: name.to_owned(),
            settings: OrgSettings::default(),
            created_at: portcullis_model::Timestamp(now),
            updated_at: portcullis_model::Timestamp(now),
        };
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO orgs (id, slug, name, settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(org.id.to_string())
            .bind(slug)
            .bind(name)
            .bind(settings_json(&org.settings)?)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, format!("an org with slug '{slug}' already exists")))?;
        if let Some(admin) = admin {
            sqlx::query(
                "INSERT INTO memberships (user_id, org_id, role, status, created_at, updated_at) VALUES ($1, $2, $3, 'active', $4, $5)",
            )
            .bind(admin.to_string())
            .bind(org.id.to_string())
            .bind(OrgRole::Admin.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let details = serde_json::json!({ "name": name, "admin": admin.map(|a| a.to_string()) });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, slug)),
            "org.create",
            &format!("org:{slug}"),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    /// Every org, or only those in `only`, ordered by slug.
    pub async fn list_orgs(&self, only: Option<&[OrgId]>) -> Result<Vec<OrgRecord>, StoreError> {
        let found = sqlx::query("SELECT * FROM orgs ORDER BY slug")
            .fetch_all(&self.pool)
            .await?;
        let mut orgs = found.iter().map(org_row).collect::<Result<Vec<_>, _>>()?;
        if let Some(only) = only {
            orgs.retain(|o| only.contains(&o.id));
        }
        Ok(orgs)
    }

    /// The org with this slug.
    pub async fn get_org(&self, slug: &str) -> Result<OrgRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM orgs WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no org '{slug}'")))?;
        org_row(&row)
    }

    /// The org with this id.
    pub async fn get_org_by_id(&self, id: OrgId) -> Result<OrgRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM orgs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no org '{id}'")))?;
        org_row(&row)
    }

    /// Whether no org exists yet (a fresh database).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM orgs")
            .fetch_one(&self.pool)
            .await?;
        Ok(rows::int(&row, "n")? == 0)
    }

    /// Renames an org and/or replaces its settings.
    pub async fn update_org(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        name: Option<&str>,
        settings: Option<&OrgSettings>,
    ) -> Result<OrgRecord, StoreError> {
        let now = now_millis();
        let name = name.unwrap_or(&org.name);
        let settings = settings.unwrap_or(&org.settings);
        let mut tx = self.write().await?;
        sqlx::query("UPDATE orgs SET name = $1, settings = $2, updated_at = $3 WHERE id = $4")
            .bind(name)
            .bind(settings_json(settings)?)
            .bind(now)
            .bind(org.id.to_string())
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({ "name": name, "settings": settings });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            "org.update",
            &format!("org:{}", org.slug),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(OrgRecord {
            name: name.to_owned(),
            settings: settings.clone(),
            updated_at: portcullis_model::Timestamp(now),
            ..org.clone()
        })
    }
}
