//! `GET /api/v1/me`: who am I, my orgs, groups, projects and roles.

use axum::Json;
use axum::extract::State;

use crate::ApiError;
use crate::auth::Authenticated;
use crate::state::AppState;
use crate::views::{MeView, MyOrgView, ProjectAssignmentView};

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", responses((status = 200, body = MeView), (status = 401)))]
pub async fn me(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<MeView>, ApiError> {
    let user = state.store.get_user(auth.principal.user.id).await?;
    let bound = auth.principal.credential_org;
    let orgs = state.store.my_orgs(user.id).await?;
    let credential_org = bound.and_then(|b| {
        orgs.iter()
            .find(|o| o.org.id == b)
            .map(|o| o.org.slug.clone())
    });
    let orgs = orgs
        .into_iter()
        .filter(|o| bound.is_none_or(|b| b == o.org.id))
        .map(|o| MyOrgView {
            slug: o.org.slug,
            name: o.org.name,
            role: o.role,
            status: o.status,
            groups: o.groups,
            projects: o
                .projects
                .into_iter()
                .map(|p| ProjectAssignmentView {
                    project: p.project,
                    role: p.role,
                    suspended: p.suspended,
                })
                .collect(),
        })
        .collect();
    Ok(Json(MeView {
        id: user.id.to_string(),
        email: user.email,
        username: user.username,
        name: user.display_name,
        kind: user.kind,
        console_access: user.console_access,
        platform_admin: user.platform_admin,
        credential_org,
        orgs,
    }))
}
