//! The audit trail: one append-only record per change, written inside the change's transaction,
//! and the gateway's decisions, appended in batches.

use portcullis_model::{OrgId, Timestamp, UserId};
use sqlx::Transaction;
use sqlx::any::AnyRow;

use crate::rows::{self, Dynamic, Param};
use crate::{Page, Paged, Store, StoreError, now_millis};

/// Who acts, as the audit trail records it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The acting user, when a user acts (none for the system itself).
    pub user_id: Option<UserId>,
    /// A readable name: the user's email, or `system`.
    pub name: String,
    /// The user who really acted when this one is impersonated.
    pub impersonator: Option<String>,
    /// The request that carried the change.
    pub request_id: Option<String>,
}

impl Actor {
    /// `user`, acting for themselves.
    pub fn user(user: &crate::UserRecord) -> Self {
        Self {
            user_id: Some(user.id),
            name: user.email.clone(),
            impersonator: None,
            request_id: None,
        }
    }

    /// Portcullis itself (first start, background jobs).
    pub fn system() -> Self {
        Self {
            user_id: None,
            name: "system".to_owned(),
            impersonator: None,
            request_id: None,
        }
    }
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// Position in the trail.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// Acting user id.
    pub actor_id: Option<UserId>,
    /// Acting user's name.
    pub actor: String,
    /// Who really acted, when impersonating.
    pub impersonator: Option<String>,
    /// The org concerned.
    pub org_id: Option<OrgId>,
    /// Its slug.
    pub org: Option<String>,
    /// What was done, e.g. `user.create`.
    pub action: String,
    /// What it was done to, e.g. `user:default/alice`.
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The request id.
    pub request_id: Option<String>,
    /// Extra facts (never secrets).
    pub details: Option<serde_json::Value>,
}

/// Filters for reading the trail.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only these orgs (empty: none, so callers must name what they may see).
    pub orgs: Vec<OrgId>,
    /// Also records with no org (platform events).
    pub include_platform: bool,
    /// Acting user.
    pub actor_id: Option<UserId>,
    /// Exact action, or a prefix ending in `.` (e.g. `user.`).
    pub action: Option<String>,
    /// Target contains this text.
    pub target: Option<String>,
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
}

/// The audit target naming a user: the entity reference, lower-cased as references are.
pub(crate) fn user_target(org: &str, username: &str) -> String {
    format!("user:{org}/{}", username.to_lowercase())
}

/// Appends one record of a successful action inside `tx`.
pub(crate) async fn record(
    tx: &mut Transaction<'static, sqlx::Any>,
    actor: &Actor,
    org: Option<(&OrgId, &str)>,
    action: &str,
    target: &str,
    details: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    record_outcome(tx, actor, org, action, target, "success", details).await
}

/// Appends one record with an explicit outcome (`success`, `failure`, `denied`) inside `tx`.
pub(crate) async fn record_outcome(
    tx: &mut Transaction<'static, sqlx::Any>,
    actor: &Actor,
    org: Option<(&OrgId, &str)>,
    action: &str,
    target: &str,
    outcome: &str,
    details: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor_id, actor, impersonator, org_id, org_slug, action, target, outcome, request_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(now_millis())
    .bind(actor.user_id.map(|u| u.to_string()))
    .bind(actor.name.as_str())
    .bind(actor.impersonator.as_deref())
    .bind(org.map(|(id, _)| id.to_string()))
    .bind(org.map(|(_, slug)| slug.to_owned()))
    .bind(action)
    .bind(target)
    .bind(outcome)
    .bind(actor.request_id.as_deref())
    .bind(details.map(|d| d.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A record that belongs to no change of the store's own: a gateway decision, made in memory
/// and written later with others ([`Store::append_audit`]).
#[derive(Debug, Clone)]
pub struct NewAuditRecord {
    /// When it happened (not when it is written).
    pub at: Timestamp,
    /// Who acted.
    pub actor: Actor,
    /// What was done, e.g. `gateway.request`.
    pub action: &'static str,
    /// What it was done to, e.g. `GET /admin/panel`.
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    /// Extra facts (never secrets).
    pub details: Option<serde_json::Value>,
}

/// Columns of one record in [`Store::append_audit`]'s statements.
const APPENDED_COLUMNS: usize = 9;
/// Records per statement: far below every backend's limit on bound values (SQLite's 32,766,
/// PostgreSQL's 65,535), and few enough to keep a statement's text short.
const RECORDS_PER_STATEMENT: usize = 64;

impl Store {
    /// Appends records in their order, in one transaction: all of them are written, or none.
    /// Many records go in a few statements, so that a burst of gateway refusals costs the
    /// database a few round trips rather than one transaction each.
    pub async fn append_audit(&self, records: &[NewAuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(RECORDS_PER_STATEMENT) {
            // Only placeholders are made up; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(append_statement(chunk.len())));
            for r in chunk {
                q = q
                    .bind(r.at.millis())
                    .bind(r.actor.user_id.map(|u| u.to_string()))
                    .bind(r.actor.name.as_str())
                    .bind(r.actor.impersonator.as_deref())
                    .bind(r.action)
                    .bind(r.target.as_str())
                    .bind(r.outcome)
                    .bind(r.actor.request_id.as_deref())
                    .bind(r.details.as_ref().map(|d| d.to_string()));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `INSERT … VALUES (…), (…)` for `rows` records of [`APPENDED_COLUMNS`] values each.
fn append_statement(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_events (at, actor_id, actor, impersonator, action, target, outcome, request_id, details) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..APPENDED_COLUMNS {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * APPENDED_COLUMNS + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

fn audit_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let details = rows::opt_text(row, "details")?.and_then(|d| serde_json::from_str(&d).ok());
    Ok(AuditRecord {
        id: rows::int(row, "id")?,
        at: rows::time(row, "at")?,
        actor_id: rows::opt_id(row, "actor_id")?,
        actor: rows::text(row, "actor")?,
        impersonator: rows::opt_text(row, "impersonator")?,
        org_id: rows::opt_id(row, "org_id")?,
        org: rows::opt_text(row, "org_slug")?,
        action: rows::text(row, "action")?,
        target: rows::text(row, "target")?,
        outcome: rows::text(row, "outcome")?,
        request_id: rows::opt_text(row, "request_id")?,
        details,
    })
}

impl Store {
    /// Reads the trail, newest first.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<Paged<AuditRecord>, StoreError> {
        let mut q = Dynamic::default();
        let mut scope = Vec::new();
        if !filter.orgs.is_empty() {
            let list: Vec<String> = filter
                .orgs
                .iter()
                .map(|o| q.push(Param::Text(o.to_string())))
                .collect();
            scope.push(format!("org_id IN ({})", list.join(", ")));
        }
        if filter.include_platform {
            scope.push("org_id IS NULL".to_owned());
        }
        if scope.is_empty() {
            return Ok(Paged {
                items: Vec::new(),
                total: 0,
            });
        }
        let mut clauses = vec![format!("({})", scope.join(" OR "))];
        if let Some(actor) = filter.actor_id {
            clauses.push(format!(
                "actor_id = {}",
                q.push(Param::Text(actor.to_string()))
            ));
        }
        if let Some(action) = &filter.action {
            if let Some(prefix) = action.strip_suffix('.') {
                let p = q.push(Param::Text(format!(
                    "{}.%",
                    prefix.replace(['%', '_', '\\'], "")
                )));
                clauses.push(format!("action LIKE {p}"));
            } else {
                clauses.push(format!("action = {}", q.push(Param::Text(action.clone()))));
            }
        }
        if let Some(target) = &filter.target {
            let p = q.push(Param::Text(rows::contains_pattern(target)));
            clauses.push(format!("LOWER(target) LIKE {p} ESCAPE '\\'"));
        }
        if let Some(since) = filter.since {
            clauses.push(format!("at >= {}", q.push(Param::Int(since.0))));
        }
        if let Some(until) = filter.until {
            clauses.push(format!("at < {}", q.push(Param::Int(until.0))));
        }
        let where_sql = clauses.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS n FROM audit_events WHERE {where_sql}");
        let total = rows::int(&q.query(count_sql).fetch_one(&self.pool).await?, "n")?;
        let list_sql = format!(
            "SELECT * FROM audit_events WHERE {where_sql} ORDER BY id DESC LIMIT {} OFFSET {}",
            page.limit, page.offset
        );
        let found = q.query(list_sql).fetch_all(&self.pool).await?;
        let items = found.iter().map(audit_row).collect::<Result<_, _>>()?;
        Ok(Paged { items, total })
    }
}
