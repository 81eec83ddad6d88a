//! The JSON shapes of the API (camelCase on the wire), converted from store records.

use portcullis_model::{MembershipStatus, OrgRole, OrgSettings, ProjectRole, Timestamp, UserKind};
use portcullis_store::{
    AuditRecord, GroupMember, GroupRecord, KeyRecord, MemberRecord, OrgRecord, ProjectMemberRecord,
    ProjectRecord,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An org.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    /// Id.
    pub id: String,
    /// URL slug and entity-reference namespace.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Security settings.
    pub settings: OrgSettings,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl From<OrgRecord> for OrgView {
    fn from(o: OrgRecord) -> Self {
        Self {
            id: o.id.to_string(),
            slug: o.slug,
            name: o.name,
            settings: o.settings,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// Body of `POST /api/v1/orgs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrg {
    /// Lower-case slug, e.g. `team-a`.
    pub slug: String,
    /// Display name (defaults to the slug).
    pub name: Option<String>,
}

/// Body of `PATCH /api/v1/orgs/{org}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateOrg {
    /// New display name.
    pub name: Option<String>,
    /// Settings to change (JSON merge patch of `settings`).
    #[schema(value_type = Object)]
    pub settings: Option<serde_json::Value>,
}

/// A project.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    /// Id.
    pub id: String,
    /// Name (slug), unique in the org.
    pub name: String,
    /// Description.
    pub description: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl From<ProjectRecord> for ProjectView {
    fn from(p: ProjectRecord) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name,
            description: p.description,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Body of `POST /api/v1/orgs/{org}/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProject {
    /// Lower-case name, e.g. `staging`.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// Body of `PATCH /api/v1/orgs/{org}/projects/{project}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProject {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// A user assigned to a project.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMemberView {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Role in the project.
    pub role: ProjectRole,
    /// Suspended while the user is deactivated in the org.
    pub suspended: bool,
}

impl From<ProjectMemberRecord> for ProjectMemberView {
    fn from(m: ProjectMemberRecord) -> Self {
        Self {
            user_id: m.user_id.to_string(),
            email: m.email,
            username: m.username,
            role: m.role,
            suspended: m.suspended,
        }
    }
}

/// Body of `PUT /api/v1/orgs/{org}/projects/{project}/members/{userId}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetProjectMember {
    /// Role in the project.
    pub role: ProjectRole,
}

/// A project assignment of a user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectAssignmentView {
    /// Project name.
    pub project: String,
    /// Role.
    pub role: ProjectRole,
    /// Suspended while the user is deactivated.
    pub suspended: bool,
}

/// A user as seen from one org.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Email (unique across all orgs).
    pub email: String,
    /// Username.
    pub username: String,
    /// Entity reference `user:<org>/<username>`.
    #[serde(rename = "ref")]
    pub entity_ref: String,
    /// Full name.
    pub name: String,
    /// Kind.
    pub kind: UserKind,
    /// May use the console.
    pub console_access: bool,
    /// Role in this org.
    pub org_role: OrgRole,
    /// Membership status in this org.
    pub status: MembershipStatus,
    /// Direct groups in this org.
    pub groups: Vec<String>,
    /// Projects in this org.
    pub projects: Vec<ProjectAssignmentView>,
    /// Last access (batched; may lag by a few seconds).
    pub last_access_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Joined this org.
    pub joined_at: Timestamp,
}

impl UserView {
    /// Builds the view of `m` within the org `slug`.
    pub fn of(slug: &str, m: MemberRecord) -> Self {
        Self {
            id: m.user.id.to_string(),
            entity_ref: format!("user:{slug}/{}", m.user.username.to_lowercase()),
            email: m.user.email,
            username: m.user.username,
            name: m.user.display_name,
            kind: m.user.kind,
            console_access: m.user.console_access,
            org_role: m.role,
            status: m.status,
            groups: m.groups,
            projects: m
                .projects
                .into_iter()
                .map(|p| ProjectAssignmentView {
                    project: p.project,
                    role: p.role,
                    suspended: p.suspended,
                })
                .collect(),
            last_access_at: m.user.last_access_at,
            created_at: m.user.created_at,
            joined_at: m.joined_at,
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    /// Users on this page.
    pub items: Vec<UserView>,
    /// Users matching the filters in all.
    pub total: i64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}

/// Body of `POST /api/v1/orgs/{org}/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    /// Email, unique across all orgs (case-insensitive).
    pub email: String,
    /// Username; derived from the email when absent.
    pub username: Option<String>,
    /// Full name.
    pub name: Option<String>,
    /// `local` (default), `sso` or `machine`.
    pub kind: Option<UserKind>,
    /// Console access (default: true for people, never for machines).
    pub console_access: Option<bool>,
    /// Role in the org (default `member`).
    pub org_role: Option<OrgRole>,
    /// For a local user: mail the temporary password instead of answering it.
    pub send_invite: Option<bool>,
}

/// A user just created: for a local user, the temporary password (shown once unless mailed).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUser {
    /// The user.
    #[serde(flatten)]
    pub user: UserView,
    /// A local user's temporary password (absent when mailed, and for other kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
    /// When the temporary password stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password_expires_at: Option<Timestamp>,
    /// The temporary password was mailed.
    pub invited: bool,
}

/// Body of `PATCH /api/v1/orgs/{org}/users/{userId}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    /// New email.
    pub email: Option<String>,
    /// New username.
    pub username: Option<String>,
    /// New full name.
    pub name: Option<String>,
    /// Console access.
    pub console_access: Option<bool>,
    /// Role in this org.
    pub org_role: Option<OrgRole>,
}

/// Body of `POST /api/v1/orgs/{org}/members`: adds an existing user to the org.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    /// The user's email.
    pub email: String,
    /// Role in the org (default `member`).
    pub org_role: Option<OrgRole>,
}

/// A group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Entity reference `group:<org>/<name>`.
    #[serde(rename = "ref")]
    pub entity_ref: String,
    /// Description.
    pub description: String,
    /// `local` or `idp`.
    pub source: String,
    /// Created.
    pub created_at: Timestamp,
}

impl GroupView {
    /// Builds the view of `g` within org `slug`.
    pub fn of(slug: &str, g: GroupRecord) -> Self {
        Self {
            id: g.id.to_string(),
            entity_ref: format!("group:{slug}/{}", g.name.to_lowercase()),
            name: g.name,
            description: g.description,
            source: g.source,
            created_at: g.created_at,
        }
    }
}

/// Body of `POST /api/v1/orgs/{org}/groups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroup {
    /// Name, e.g. `platform-team`.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// A user in a group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupUserView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
}

/// The direct members of a group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMembersView {
    /// Users.
    pub users: Vec<GroupUserView>,
    /// Nested groups, by name.
    pub groups: Vec<String>,
}

impl From<portcullis_store::GroupMembers> for GroupMembersView {
    fn from(m: portcullis_store::GroupMembers) -> Self {
        let users = m
            .users
            .into_iter()
            .filter_map(|u| match u {
                GroupMember::User {
                    id,
                    email,
                    username,
                } => Some(GroupUserView {
                    id: id.to_string(),
                    email,
                    username,
                }),
                GroupMember::Group(_) => None,
            })
            .collect();
        let groups = m
            .groups
            .into_iter()
            .filter_map(|g| match g {
                GroupMember::Group(name) => Some(name),
                GroupMember::User { .. } => None,
            })
            .collect();
        Self { users, groups }
    }
}

/// Body of `POST /api/v1/orgs/{org}/groups/{group}/members`: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddGroupMember {
    /// A user of the org.
    pub user_id: Option<String>,
    /// A group of the org, to nest.
    pub group: Option<String>,
}

/// An API key (never the key itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// Id.
    pub id: String,
    /// Label.
    pub name: String,
    /// First characters of the key.
    pub prefix: String,
    /// The org the key is bound to; none when it works in every org of its owner.
    pub org: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last used (batched).
    pub last_used_at: Option<Timestamp>,
    /// Stops working at.
    pub expires_at: Option<Timestamp>,
}

impl KeyView {
    /// Builds the view; `org_slug` names the org the key is bound to, if any.
    pub fn of(k: KeyRecord, org_slug: Option<String>) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name,
            prefix: k.prefix,
            org: org_slug,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
        }
    }
}

/// A new API key: shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The key's details.
    #[serde(flatten)]
    pub details: KeyView,
    /// The key itself. It is not stored and cannot be shown again.
    pub key: String,
}

/// Body of `POST …/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    /// Label, e.g. `laptop` or `jenkins`.
    pub name: String,
    /// When the key stops working (RFC 3339).
    pub expires_at: Option<Timestamp>,
}

/// One org of the caller.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MyOrgView {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: OrgRole,
    /// Status.
    pub status: MembershipStatus,
    /// Direct groups.
    pub groups: Vec<String>,
    /// Projects.
    pub projects: Vec<ProjectAssignmentView>,
}

/// `GET /api/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Full name.
    pub name: String,
    /// Kind.
    pub kind: UserKind,
    /// May use the console.
    pub console_access: bool,
    /// May create orgs.
    pub platform_admin: bool,
    /// The org the credential in use is bound to, if any.
    pub credential_org: Option<String>,
    /// Orgs with role, status, groups and projects.
    pub orgs: Vec<MyOrgView>,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    /// Position in the trail.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// Acting user's name.
    pub actor: String,
    /// Acting user's id.
    pub actor_id: Option<String>,
    /// Who really acted, when impersonating.
    pub impersonator: Option<String>,
    /// Org slug.
    pub org: Option<String>,
    /// Action, e.g. `user.create`.
    pub action: String,
    /// Target, e.g. `user:default/alice`.
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Extra facts.
    #[schema(value_type = Object)]
    pub details: Option<serde_json::Value>,
}

impl From<AuditRecord> for AuditView {
    fn from(a: AuditRecord) -> Self {
        Self {
            id: a.id,
            at: a.at,
            actor: a.actor,
            actor_id: a.actor_id.map(|u| u.to_string()),
            impersonator: a.impersonator,
            org: a.org,
            action: a.action,
            target: a.target,
            outcome: a.outcome,
            request_id: a.request_id,
            details: a.details,
        }
    }
}

/// A page of audit records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    /// Records, newest first.
    pub items: Vec<AuditView>,
    /// Matching records in all.
    pub total: i64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}
