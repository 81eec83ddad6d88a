//! `/api/v1/orgs/{org}/users`: users of an org, deactivation and removal.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use portcullis_authz::OrgAction;
use portcullis_model::{MembershipStatus, ModelError, OrgRole, UserId, UserKind, names};
use portcullis_store::{NewUser, UserFilter, UserPatch};
use serde::Deserialize;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::extract::{Body, Params};
use crate::routes::{page, user_id};
use crate::state::AppState;
use crate::views::{AddMember, CreateUser, CreatedUser, UpdateUser, UserList, UserView};

/// Query of `GET /api/v1/orgs/{org}/users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Email contains (case-insensitive).
    email: Option<String>,
    /// Username or full name contains (case-insensitive).
    name: Option<String>,
    /// `local`, `sso` or `machine`.
    kind: Option<UserKind>,
    /// Direct member of this group.
    group: Option<String>,
    /// `active` or `deactivated`.
    status: Option<MembershipStatus>,
    /// Page size, 1..=500 (default 50).
    limit: Option<u32>,
    /// Items to skip.
    offset: Option<u32>,
}

/// Creates a user in the org.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/users", tag = "users", request_body = CreateUser,
    params(("org" = String, Path, description = "org slug")),
    responses((status = 201, body = CreatedUser), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    let email = names::validate_email("email", &body.email)?;
    let made_from_email = body.username.is_none();
    let username = match body.username {
        Some(u) => {
            names::validate_entity_name("username", &u)?;
            u
        }
        None => names::username_from_email(&email),
    };
    let display_name = body.name.unwrap_or_default();
    names::validate_display_name("name", &display_name)?;
    let kind = body.kind.unwrap_or(UserKind::Local);
    if kind == UserKind::Machine && body.console_access == Some(true) {
        return Err(
            ModelError::new("consoleAccess", "machine users never have console access").into(),
        );
    }
    let new = NewUser {
        email,
        username,
        display_name,
        kind,
        console_access: body.console_access.unwrap_or(kind != UserKind::Machine),
        role: body.org_role.unwrap_or(OrgRole::Member),
        platform_admin: false,
    };
    if kind != UserKind::Local && body.send_invite.is_some() {
        return Err(ModelError::new(
            "sendInvite",
            "only local users get a temporary password; SSO users sign in at their identity provider, machine users use API keys",
        )
        .into());
    }
    let mail = body.send_invite.unwrap_or(false);
    let created = async {
        Ok::<_, ApiError>(match kind {
            UserKind::Local => {
                let (member, password, expires_at) = state
                    .auth
                    .create_local_user(&auth.actor(), &org, &new, mail)
                    .await?;
                let shown = crate::routes::login::account::TemporaryPassword {
                    temporary_password: (!mail).then_some(password),
                    expires_at: portcullis_model::Timestamp(expires_at),
                    emailed: mail,
                };
                (member, Some(shown))
            }
            _ => (
                state.store.create_user(&auth.actor(), &org, &new).await?,
                None,
            ),
        })
    };
    let (member, temporary) = created.await.map_err(|e| match e {
        // The client never named that username: say where it came from and what to do.
        ApiError::Conflict(m) if made_from_email && m.starts_with("username '") => {
            ApiError::Conflict(format!(
                "username '{}' (made from the email address) is taken; send a 'username' of its own",
                new.username
            ))
        }
        e => e,
    })?;
    state
        .directory
        .user_changed(&state.store, member.user.id)
        .await?;
    let invited = temporary.as_ref().is_some_and(|t| t.emailed);
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: UserView::of(&org.slug, member),
            temporary_password_expires_at: temporary.as_ref().map(|t| t.expires_at),
            temporary_password: temporary.and_then(|t| t.temporary_password),
            invited,
        }),
    ))
}

/// Adds an existing user (by email) to the org.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "users", request_body = AddMember,
    params(("org" = String, Path, description = "org slug")),
    responses((status = 201, body = UserView), (status = 403), (status = 404), (status = 409)))]
pub async fn add_member(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Body(body): Body<AddMember>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    let email = names::validate_email("email", &body.email)?;
    let member = state
        .store
        .add_member(
            &auth.actor(),
            &org,
            &email,
            body.org_role.unwrap_or(OrgRole::Member),
        )
        .await?;
    state
        .directory
        .user_changed(&state.store, member.user.id)
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::of(&org.slug, member))))
}

/// Lists the org's users, with filters and paging.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/users", tag = "users", params(("org" = String, Path, description = "org slug"), ListQuery),
    responses((status = 200, body = UserList), (status = 400), (status = 403), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org): Path<String>,
    Params(q): Params<ListQuery>,
) -> Result<Json<UserList>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Inspect).await?;
    let page = page(q.limit, q.offset)?;
    let filter = UserFilter {
        email: q.email,
        name: q.name,
        kind: q.kind,
        group: q.group,
        status: q.status,
    };
    let found = state.store.list_members(&org, &filter, page).await?;
    Ok(Json(UserList {
        items: found
            .items
            .into_iter()
            .map(|m| UserView::of(&org.slug, m))
            .collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// One user of the org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/users/{userId}", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Inspect).await?;
    let member = state.store.get_member(&org, user_id(&user)?).await?;
    Ok(Json(UserView::of(&org.slug, member)))
}

/// Changes a user's details or their role in the org.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/users/{userId}", tag = "users", request_body = UpdateUser,
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
    Body(body): Body<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    let user = user_id(&user)?;
    let email = body
        .email
        .as_deref()
        .map(|e| names::validate_email("email", e))
        .transpose()?;
    if let Some(u) = &body.username {
        names::validate_entity_name("username", u)?;
    }
    if let Some(n) = &body.name {
        names::validate_display_name("name", n)?;
    }
    let global_change = email.is_some()
        || body.username.is_some()
        || body.name.is_some()
        || body.console_access.is_some();
    if global_change {
        may_change_identity(&state, &auth, user)?;
    }
    let current = state.store.get_member(&org, user).await?;
    if current.user.kind == UserKind::Machine && body.console_access == Some(true) {
        return Err(
            ModelError::new("consoleAccess", "machine users never have console access").into(),
        );
    }
    if user == auth.principal.user.id && body.org_role.is_some_and(|r| r != OrgRole::Admin) {
        return Err(ApiError::Conflict(
            "you cannot take the admin role from yourself; ask another admin".into(),
        ));
    }
    let patch = UserPatch {
        email,
        username: body.username,
        display_name: body.name,
        console_access: body.console_access,
        role: body.org_role,
    };
    let member = state
        .store
        .update_member(&auth.actor(), &org, user, &patch)
        .await?;
    state.rbac.changed(&state.store).await?;
    state.directory.user_changed(&state.store, user).await?;
    Ok(Json(UserView::of(&org.slug, member)))
}

async fn set_status(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    user: &str,
    status: MembershipStatus,
) -> Result<UserView, ApiError> {
    let org = auth.org(state, org, OrgAction::Manage).await?;
    let user = user_id(user)?;
    refuse_self(auth, user, "deactivate")?;
    let member = state
        .store
        .set_member_status(&auth.actor(), &org, user, status)
        .await?;
    state.rbac.changed(&state.store).await?;
    state.directory.user_changed(&state.store, user).await?;
    Ok(UserView::of(&org.slug, member))
}

/// Email, username, name and console access belong to the user in every org: an org admin may
/// change them only when they administer every org the user belongs to.
fn may_change_identity(
    state: &AppState,
    auth: &Authenticated,
    user: UserId,
) -> Result<(), ApiError> {
    let Some(target) = state.directory.user(user) else {
        return Ok(());
    };
    let elsewhere = target.memberships.keys().find(|slug| {
        portcullis_authz::check_org(auth.principal.caller_in(slug), OrgAction::Manage)
            != portcullis_authz::Access::Allow
    });
    match elsewhere {
        None => Ok(()),
        Some(slug) => Err(ApiError::Forbidden(format!(
            "this user also belongs to org '{slug}', which you do not administer: only their org role can be changed here"
        ))),
    }
}

fn refuse_self(auth: &Authenticated, user: UserId, what: &str) -> Result<(), ApiError> {
    if user == auth.principal.user.id {
        return Err(ApiError::Conflict(format!(
            "you cannot {what} yourself; ask another admin"
        )));
    }
    Ok(())
}

/// Deactivates a member: blocked from the org on every channel, project assignments suspended.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/users/{userId}/deactivate", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 403), (status = 404), (status = 409)))]
pub async fn deactivate(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(
        set_status(&state, &auth, &org, &user, MembershipStatus::Deactivated).await?,
    ))
}

/// Reactivates a member, restoring their project assignments.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/users/{userId}/reactivate", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 403), (status = 404)))]
pub async fn reactivate(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(
        set_status(&state, &auth, &org, &user, MembershipStatus::Active).await?,
    ))
}

/// Removes the user from this org for good; other orgs are not affected.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/users/{userId}", tag = "users",
    params(("org" = String, Path, description = "org slug"), ("userId" = String, Path, description = "user id")),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = auth.org(&state, &org, OrgAction::Manage).await?;
    let user = user_id(&user)?;
    refuse_self(&auth, user, "remove")?;
    state.store.remove_member(&auth.actor(), &org, user).await?;
    state.rbac.changed(&state.store).await?;
    state.directory.user_changed(&state.store, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
