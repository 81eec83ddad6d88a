//! API keys: `/api/v1/me/keys` for one's own, `/api/v1/orgs/{org}/users/{userId}/keys` for org
//! admins managing the keys of the machine and SSO users of their org.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use portcullis_authn::api_key;
use portcullis_authz::OrgAction;
use portcullis_model::{KeyId, ModelError, UserKind, names};
use portcullis_store::{KeyRecord, OrgRecord, UserRecord};

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::Body;
use crate::routes::user_id;
use crate::state::AppState;
use crate::views::{CreateKey, CreatedKey, KeyView};

fn key_id(raw: &str) -> Result<KeyId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no key '{raw}'")))
}

fn check_new_key(body: &CreateKey) -> Result<(), ApiError> {
    if body.name.trim().is_empty() {
        return Err(ModelError::new("name", "must not be empty").into());
    }
    names::validate_display_name("name", &body.name)?;
    if body
        .expires_at
        .is_some_and(|t| t.0 <= portcullis_store::now_millis())
    {
        return Err(ModelError::new("expiresAt", "must be in the future").into());
    }
    Ok(())
}

async fn slug_of(
    state: &AppState,
    key: &KeyRecord,
    known: Option<&OrgRecord>,
) -> Result<Option<String>, ApiError> {
    let Some(org_id) = key.org_id else {
        return Ok(None);
    };
    if let Some(org) = known.filter(|o| o.id == org_id) {
        return Ok(Some(org.slug.clone()));
    }
    Ok(Some(state.store.get_org_by_id(org_id).await?.slug))
}

async fn views(
    state: &AppState,
    keys: Vec<KeyRecord>,
    known: Option<&OrgRecord>,
) -> Result<Vec<KeyView>, ApiError> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let slug = slug_of(state, &k, known).await?;
        out.push(KeyView::of(k, slug));
    }
    Ok(out)
}

async fn create(
    state: &AppState,
    auth: &Authenticated,
    owner: &UserRecord,
    org: Option<&OrgRecord>,
    body: CreateKey,
) -> Result<CreatedKey, ApiError> {
    check_new_key(&body)?;
    let generated = api_key::generate(body.name.trim(), org.map(|o| o.id), body.expires_at)?;
    let record = state
        .store
        .create_key(&auth.actor(), owner, org, &generated.record)
        .await?;
    state.directory.user_changed(&state.store, owner.id).await?;
    let slug = org.map(|o| o.slug.clone());
    Ok(CreatedKey {
        details: KeyView::of(record, slug),
        key: generated.secret,
    })
}

/// Lists the caller's API keys.
#[utoipa::path(get, path = "/api/v1/me/keys", tag = "keys", responses((status = 200, body = [KeyView]), (status = 401)))]
pub async fn list_mine(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let bound = bound_org(&state, &auth).await?;
    let keys = state
        .store
        .list_keys(auth.principal.user.id, bound.as_ref().map(|o| o.id))
        .await?;
    Ok(Json(views(&state, keys, bound.as_ref()).await?))
}

/// Creates an API key for the caller; the key is in the answer, once.
#[utoipa::path(post, path = "/api/v1/me/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400), (status = 401), (status = 422)))]
pub async fn create_mine(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let me = state.store.get_user(auth.principal.user.id).await?;
    // A key made with an org-bound key stays bound to that org.
    let bound = bound_org(&state, &auth).await?;
    Ok((
        StatusCode::CREATED,
        Json(create(&state, &auth, &me, bound.as_ref(), body).await?),
    ))
}

/// Deletes one of the caller's keys; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/me/keys/{keyId}", tag = "keys", params(("keyId" = String, Path, description = "key id")),
    responses((status = 204), (status = 401), (status = 404)))]
pub async fn delete_mine(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let me = state.store.get_user(auth.principal.user.id).await?;
    let key = key_id(&key)?;
    let bound = bound_org(&state, &auth).await?;
    let usable = state
        .store
        .list_keys(me.id, bound.as_ref().map(|o| o.id))
        .await?;
    let Some(found) = usable.iter().find(|k| k.id == key) else {
        return Err(ApiError::NotFound(format!("no key '{key}'")));
    };
    // Audited in the org the key is bound to, so that org's admins see it.
    let key_org = match (found.org_id, &bound) {
        (Some(id), Some(b)) if b.id == id => bound.clone(),
        (Some(id), _) => Some(state.store.get_org_by_id(id).await?),
        (None, _) => None,
    };
    state
        .store
        .delete_key(&auth.actor(), &me, key_org.as_ref(), key)
        .await?;
    state.directory.user_changed(&state.store, me.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The org the caller's credential is bound to, checked like any access to that org: a key
/// bound to an org where its owner is deactivated manages no keys.
async fn bound_org(state: &AppState, auth: &Authenticated) -> Result<Option<OrgRecord>, ApiError> {
    let Some(org_id) = auth.principal.credential_org else {
        return Ok(None);
    };
    let org = state.store.get_org_by_id(org_id).await?;
    auth.org(state, &org.slug, OrgAction::View).await.map(Some)
}

/// The org and the key owner, for an org admin managing a machine or SSO user's keys.
async fn managed_owner(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    user: &str,
    action: OrgAction,
) -> Result<(OrgRecord, UserRecord), ApiError> {
    let org = auth.org(state, org, action).await?;
    let member = state.store.get_member(&org, user_id(user)?).await?;
    if member.user.kind == UserKind::Local {
        return Err(ApiError::Forbidden(
            "keys of local users are managed by the users themselves (/api/v1/me/keys); admins manage keys of machine and SSO users".into(),
        ));
    }
    Ok((org, member.user))
}

/// Lists the keys of a machine or SSO user that work in this org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/users/{userId}/keys", tag = "keys",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = [KeyView]), (status = 403), (status = 404)))]
pub async fn list_for_user(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let (org, owner) = managed_owner(&state, &auth, &org, &user, OrgAction::Inspect).await?;
    let keys = state.store.list_keys(owner.id, Some(org.id)).await?;
    Ok(Json(views(&state, keys, Some(&org)).await?))
}

/// Creates a key for a machine or SSO user, bound to this org; the key is in the answer, once.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/users/{userId}/keys", tag = "keys", request_body = CreateKey,
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 201, body = CreatedKey), (status = 403), (status = 404), (status = 422)))]
pub async fn create_for_user(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let (org, owner) = managed_owner(&state, &auth, &org, &user, OrgAction::Manage).await?;
    Ok((
        StatusCode::CREATED,
        Json(create(&state, &auth, &owner, Some(&org), body).await?),
    ))
}

/// Deletes a key of a machine or SSO user that works in this org.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/users/{userId}/keys/{keyId}", tag = "keys",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id"), ("keyId" = String, Path, description = "key id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_for_user(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (org, owner) = managed_owner(&state, &auth, &org, &user, OrgAction::Manage).await?;
    let key = key_id(&key)?;
    let usable_here = state
        .store
        .list_keys(owner.id, Some(org.id))
        .await?
        .iter()
        .any(|k| k.id == key);
    if !usable_here {
        return Err(ApiError::NotFound(format!(
            "no key '{key}' of this user in org '{}'",
            org.slug
        )));
    }
    state
        .store
        .delete_key(&auth.actor(), &owner, Some(&org), key)
        .await?;
    state.directory.user_changed(&state.store, owner.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
