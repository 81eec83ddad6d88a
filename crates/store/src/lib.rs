//! The source of truth of Portcullis in SQL. One SQLite file by default, PostgreSQL for several
//! replicas; the same migrations exist for both, and callers never see which one is in use.
//!
//! Every mutating call writes its audit record in the same transaction as the change: no audit
//! record, no change.
#![forbid(unsafe_code)]

mod audit;
mod changes;
mod credentials;
mod database;
mod error;
mod groups;
mod local_auth;
mod orgs;
mod projects;
mod rbac;
mod records;
mod rond;
mod rows;
mod users;

pub use audit::{Actor, AuditFilter, AuditRecord, NewAuditRecord};
pub use changes::{Change, ChangeFeed};
pub use credentials::{BootstrapAdmin, CredentialMembership, CredentialUser, KeyRecord, NewKey};
pub use database::{Backend, Store};
pub use error::StoreError;
pub use groups::{GroupMember, GroupMembers, GroupRecord};
pub use local_auth::{
    LoginCandidate, MailRecord, PasswordChange, PasswordRecord, RefreshOutcome, SessionRecord,
    SessionStage, SigningKeyRecord, TotpRecord,
};
pub use projects::{ProjectMemberRecord, ProjectRecord};
pub use rbac::{
    ConditionRecord, NewCondition, PolicyRecord, RbacRows, RoleRecord, SourceDiff, SourceItems,
    policy_text,
};
pub use records::{OrgRecord, Page, Paged};
pub use rond::{RondDocument, RondKind};
pub use users::{
    MemberRecord, MyOrg, NewUser, ProjectAssignment, UserFilter, UserPatch, UserRecord,
};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
