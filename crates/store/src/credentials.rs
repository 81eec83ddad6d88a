//! API keys, the credential data the in-memory directory is built from, activity timestamps and
//! the first-start bootstrap.

use std::collections::HashMap;

use portcullis_model::{
    KeyId, MembershipStatus, OrgId, OrgRole, OrgSettings, Timestamp, UserId, UserKind,
};
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::rows;
use crate::users::{NewUser, insert_user, user_row};
use crate::{OrgRecord, Store, StoreError, UserRecord, now_millis};

/// An API key as stored: never the key itself, only its lookup id and hash.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// Id.
    pub id: KeyId,
    /// Owner.
    pub user_id: UserId,
    /// When set, the key works only in this org.
    pub org_id: Option<OrgId>,
    /// The owner's label.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// Hex of the index part of the key's hash.
    pub lookup: String,
    /// Hex of the key's full hash.
    pub hash: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last used (batched).
    pub last_used_at: Option<Timestamp>,
    /// Stops working at.
    pub expires_at: Option<Timestamp>,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Id.
    pub id: KeyId,
    /// Label.
    pub name: String,
    /// Recognisable prefix.
    pub prefix: String,
    /// Hex lookup id.
    pub lookup: String,
    /// Hex hash.
    pub hash: String,
    /// Bound to this org only.
    pub org_id: Option<OrgId>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// A membership as the credential directory needs it.
#[derive(Debug, Clone)]
pub struct CredentialMembership {
    /// Org id.
    pub org_id: OrgId,
    /// Org slug.
    pub slug: String,
    /// Role.
    pub role: OrgRole,
    /// Status.
    pub status: MembershipStatus,
}

/// Everything needed to authenticate one user's requests without the database.
#[derive(Debug, Clone)]
pub struct CredentialUser {
    /// The user.
    pub user: UserRecord,
    /// Their memberships.
    pub memberships: Vec<CredentialMembership>,
    /// Their API keys.
    pub keys: Vec<KeyRecord>,
}

/// The admin created on first start.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// The admin's first API key.
    pub key: NewKey,
}

fn key_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        id: rows::id(row, "id")?,
        user_id: rows::id(row, "user_id")?,
        org_id: rows::opt_id(row, "org_id")?,
        name: rows::text(row, "name")?,
        prefix: rows::text(row, "prefix")?,
        lookup: rows::text(row, "lookup")?,
        hash: rows::text(row, "hash")?,
        created_at: rows::time(row, "created_at")?,
        last_used_at: rows::opt_time(row, "last_used_at")?,
        expires_at: rows::opt_time(row, "expires_at")?,
    })
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    actor: &Actor,
    user: &UserRecord,
    org: Option<&OrgRecord>,
    key: &NewKey,
) -> Result<KeyRecord, StoreError> {
    let now = now_millis();
    // A key bound to an org is made only while its user is a member there, checked in this
    // transaction: a removal running at the same time either comes first (no member: refused)
    // or waits for this row lock and then removes the new key with the others (it deletes the
    // membership before the keys). A check made before the transaction let keys outlive it.
    if let Some(org_id) = key.org_id {
        let member = sqlx::query(
            "UPDATE memberships SET updated_at = updated_at WHERE user_id = $1 AND org_id = $2",
        )
        .bind(user.id.to_string())
        .bind(org_id.to_string())
        .execute(&mut **tx)
        .await?;
        if member.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "'{}' is not a member of the org the key would be bound to",
                user.username
            )));
        }
    }
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, org_id, name, prefix, lookup, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key.id.to_string())
    .bind(user.id.to_string())
    .bind(key.org_id.map(|o| o.to_string()))
    .bind(key.name.as_str())
    .bind(key.prefix.as_str())
    .bind(key.lookup.as_str())
    .bind(key.hash.as_str())
    .bind(now)
    .bind(key.expires_at.map(|t| t.0))
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::unique(e, "that key is already installed"))?;
    let details =
        serde_json::json!({ "keyId": key.id.to_string(), "name": key.name, "prefix": key.prefix });
    let target = audit::user_target(org.map_or("-", |o| o.slug.as_str()), &user.username);
    audit::record(
        tx,
        actor,
        org.map(|o| (&o.id, o.slug.as_str())),
        "key.create",
        &target,
        Some(details),
    )
    .await?;
    Ok(KeyRecord {
        id: key.id,
        user_id: user.id,
        org_id: key.org_id,
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        lookup: key.lookup.clone(),
        hash: key.hash.clone(),
        created_at: Timestamp(now),
        last_used_at: None,
        expires_at: key.expires_at,
    })
}

impl Store {
    /// Stores a new API key of `user`; `org` is the org the change is made in (for the audit trail).
    pub async fn create_key(
        &self,
        actor: &Actor,
        user: &UserRecord,
        org: Option<&OrgRecord>,
        key: &NewKey,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.write().await?;
        let record = insert_key(&mut tx, actor, user, org, key).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The keys of `user`; with `usable_in`, only those that work in that org.
    pub async fn list_keys(
        &self,
        user: UserId,
        usable_in: Option<OrgId>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let found =
            sqlx::query("SELECT * FROM api_keys WHERE user_id = $1 ORDER BY created_at, id")
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await?;
        let mut keys = found.iter().map(key_row).collect::<Result<Vec<_>, _>>()?;
        if let Some(org) = usable_in {
            keys.retain(|k| k.org_id.is_none_or(|o| o == org));
        }
        Ok(keys)
    }

    /// Deletes a key of `user`.
    pub async fn delete_key(
        &self,
        actor: &Actor,
        user: &UserRecord,
        org: Option<&OrgRecord>,
        key: KeyId,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
            .bind(key.to_string())
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no key '{key}'")));
        }
        let target = audit::user_target(org.map_or("-", |o| o.slug.as_str()), &user.username);
        audit::record(
            &mut tx,
            actor,
            org.map(|o| (&o.id, o.slug.as_str())),
            "key.delete",
            &target,
            Some(serde_json::json!({ "keyId": key.to_string() })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The credential data of one user, or `None` when the user does not exist.
    pub async fn load_credentials(
        &self,
        user: UserId,
    ) -> Result<Option<CredentialUser>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let user = user_row(&row)?;
        let memberships = sqlx::query(
            "SELECT m.org_id, o.slug, m.role, m.status FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1",
        )
        .bind(user.id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(membership_row)
        .collect::<Result<_, _>>()?;
        let keys = self.list_keys(user.id, None).await?;
        Ok(Some(CredentialUser {
            user,
            memberships,
            keys,
        }))
    }

    /// The credential data of every user (at start).
    pub async fn load_all_credentials(&self) -> Result<Vec<CredentialUser>, StoreError> {
        let mut users: HashMap<String, CredentialUser> = HashMap::new();
        for row in sqlx::query("SELECT * FROM users")
            .fetch_all(&self.pool)
            .await?
        {
            let user = user_row(&row)?;
            users.insert(
                user.id.to_string(),
                CredentialUser {
                    user,
                    memberships: Vec::new(),
                    keys: Vec::new(),
                },
            );
        }
        for row in sqlx::query("SELECT m.user_id, m.org_id, o.slug, m.role, m.status FROM memberships m JOIN orgs o ON o.id = m.org_id")
            .fetch_all(&self.pool)
            .await?
        {
            if let Some(u) = users.get_mut(&rows::text(&row, "user_id")?) {
                u.memberships.push(membership_row(&row)?);
            }
        }
        for row in sqlx::query("SELECT * FROM api_keys")
            .fetch_all(&self.pool)
            .await?
        {
            let key = key_row(&row)?;
            if let Some(u) = users.get_mut(&key.user_id.to_string()) {
                u.keys.push(key);
            }
        }
        Ok(users.into_values().collect())
    }

    /// Writes batched activity: last access per user and last use per key.
    pub async fn record_activity(
        &self,
        users: &[(UserId, i64)],
        keys: &[(KeyId, i64)],
    ) -> Result<(), StoreError> {
        if users.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for (user, at) in users {
            sqlx::query("UPDATE users SET last_access_at = $1 WHERE id = $2 AND (last_access_at IS NULL OR last_access_at < $3)")
                .bind(*at)
                .bind(user.to_string())
                .bind(*at)
                .execute(&mut *tx)
                .await?;
        }
        for (key, at) in keys {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
                .bind(*at)
                .bind(key.to_string())
                .bind(*at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// On a fresh database, creates org `default` and its first admin (a platform admin) with an
    /// API key, in one transaction. Returns `None` when any org exists already (or another replica
    /// won the race).
    pub async fn bootstrap(
        &self,
        admin: &BootstrapAdmin,
    ) -> Result<Option<(OrgRecord, UserRecord)>, StoreError> {
        if !self.is_empty().await? {
            return Ok(None);
        }
        let actor = Actor::system();
        let now = now_millis();
        let org = OrgRecord {
            id: OrgId::new(),
            slug: "default".to_owned(),
            name: "Default".to_owned(),
            settings: OrgSettings::default(),
            created_at: Timestamp(now),
            updated_at: Timestamp(now),
        };
        let mut tx = self.write().await?;
        let inserted = sqlx::query("INSERT INTO orgs (id, slug, name, settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(org.id.to_string())
            .bind(org.slug.as_str())
            .bind(org.name.as_str())
            .bind(crate::orgs::settings_json(&org.settings)?)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await;
        match inserted.map_err(|e| StoreError::unique(e, "")) {
            Err(StoreError::Conflict(_)) => return Ok(None),
            other => {
                other?;
            }
        }
        audit::record(
            &mut tx,
            &actor,
            Some((&org.id, &org.slug)),
            "org.create",
            "org:default",
            None,
        )
        .await?;
        let new = NewUser {
            email: admin.email.clone(),
            username: admin.username.clone(),
            display_name: "Administrator".to_owned(),
            kind: UserKind::Local,
            console_access: true,
            role: OrgRole::Admin,
            platform_admin: true,
        };
        let member = insert_user(&mut tx, &actor, &org, &new, false).await?;
        insert_key(&mut tx, &actor, &member.user, Some(&org), &admin.key).await?;
        tx.commit().await?;
        Ok(Some((org, member.user)))
    }
}

fn membership_row(row: &AnyRow) -> Result<CredentialMembership, StoreError> {
    Ok(CredentialMembership {
        org_id: rows::id(row, "org_id")?,
        slug: rows::text(row, "slug")?,
        role: rows::parsed(row, "role", OrgRole::parse)?,
        status: rows::parsed(row, "status", MembershipStatus::parse)?,
    })
}
