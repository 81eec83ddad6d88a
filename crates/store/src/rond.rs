//! Rönd-style roles and bindings of an org, stored as the JSON documents the API validated.

use portcullis_model::Timestamp;

use crate::audit::{self, Actor};
use crate::rows;
use crate::{OrgRecord, Store, StoreError, now_millis};

/// `role` or `binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RondKind {
    /// A role: `roleId`, `name`, `description`, `permissions`.
    Role,
    /// A binding: `bindingId`, `subjects`, `groups`, `roles`, `permissions`, `resource`.
    Binding,
}

impl RondKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Binding => "binding",
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct RondDocument {
    /// `roleId` or `bindingId`.
    pub id: String,
    /// The document.
    pub document: serde_json::Value,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

fn doc_row(row: &sqlx::any::AnyRow) -> Result<RondDocument, StoreError> {
    let text = rows::text(row, "document")?;
    Ok(RondDocument {
        id: rows::text(row, "doc_id")?,
        document: serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

impl Store {
    /// Every org's documents: (org slug, kind, document), for the decision snapshot.
    pub async fn list_all_rond(&self) -> Result<Vec<(String, RondKind, RondDocument)>, StoreError> {
        let found = sqlx::query("SELECT d.*, o.slug FROM rond_documents d JOIN orgs o ON o.id = d.org_id ORDER BY o.slug, d.kind, d.doc_id")
            .fetch_all(&self.pool)
            .await?;
        found
            .iter()
            .map(|row| {
                let kind = if rows::text(row, "kind")? == "role" {
                    RondKind::Role
                } else {
                    RondKind::Binding
                };
                Ok((rows::text(row, "slug")?, kind, doc_row(row)?))
            })
            .collect()
    }

    /// The org's documents of one kind, by id.
    pub async fn list_rond(
        &self,
        org: &OrgRecord,
        kind: RondKind,
    ) -> Result<Vec<RondDocument>, StoreError> {
        sqlx::query("SELECT * FROM rond_documents WHERE org_id = $1 AND kind = $2 ORDER BY doc_id")
            .bind(org.id.to_string())
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(doc_row)
            .collect()
    }

    /// One document.
    pub async fn get_rond(
        &self,
        org: &OrgRecord,
        kind: RondKind,
        id: &str,
    ) -> Result<RondDocument, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM rond_documents WHERE org_id = $1 AND kind = $2 AND doc_id = $3",
        )
        .bind(org.id.to_string())
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("no {} '{id}' in org '{}'", kind.as_str(), org.slug))
        })?;
        doc_row(&row)
    }

    /// Creates documents, all or none (409 when an id exists already).
    pub async fn create_rond(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        kind: RondKind,
        docs: &[(String, serde_json::Value)],
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.write().await?;
        for (id, doc) in docs {
            sqlx::query("INSERT INTO rond_documents (org_id, kind, doc_id, document, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(org.id.to_string())
                .bind(kind.as_str())
                .bind(id.as_str())
                .bind(doc.to_string())
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::unique(e, format!("a {} with id '{id}' already exists in org '{}'", kind.as_str(), org.slug)))?;
        }
        let ids: Vec<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
        let action = format!("{}.create", kind.as_str());
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            &action,
            &format!("org:{}", org.slug),
            Some(serde_json::json!({ "ids": ids })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a document (404 when it does not exist).
    pub async fn replace_rond(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        kind: RondKind,
        id: &str,
        doc: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE rond_documents SET document = $1, updated_at = $2 WHERE org_id = $3 AND kind = $4 AND doc_id = $5")
            .bind(doc.to_string())
            .bind(now_millis())
            .bind(org.id.to_string())
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no {} '{id}' in org '{}'",
                kind.as_str(),
                org.slug
            )));
        }
        let action = format!("{}.update", kind.as_str());
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            &action,
            &format!("{}:{}/{id}", kind.as_str(), org.slug),
            Some(doc.clone()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces and deletes several documents in one transaction (Rönd's revoke).
    pub async fn change_rond(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        kind: RondKind,
        replace: &[(String, serde_json::Value)],
        delete: &[String],
        action: &str,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.write().await?;
        for (id, doc) in replace {
            sqlx::query("UPDATE rond_documents SET document = $1, updated_at = $2 WHERE org_id = $3 AND kind = $4 AND doc_id = $5")
                .bind(doc.to_string())
                .bind(now)
                .bind(org.id.to_string())
                .bind(kind.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for id in delete {
            sqlx::query(
                "DELETE FROM rond_documents WHERE org_id = $1 AND kind = $2 AND doc_id = $3",
            )
            .bind(org.id.to_string())
            .bind(kind.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let replaced: Vec<&str> = replace.iter().map(|(id, _)| id.as_str()).collect();
        let details = serde_json::json!({ "modified": replaced, "deleted": delete });
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            action,
            &format!("org:{}", org.slug),
            Some(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a document (404 when it does not exist).
    pub async fn delete_rond(
        &self,
        actor: &Actor,
        org: &OrgRecord,
        kind: RondKind,
        id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "DELETE FROM rond_documents WHERE org_id = $1 AND kind = $2 AND doc_id = $3",
        )
        .bind(org.id.to_string())
        .bind(kind.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no {} '{id}' in org '{}'",
                kind.as_str(),
                org.slug
            )));
        }
        let action = format!("{}.delete", kind.as_str());
        audit::record(
            &mut tx,
            actor,
            Some((&org.id, &org.slug)),
            &action,
            &format!("{}:{}/{id}", kind.as_str(), org.slug),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
