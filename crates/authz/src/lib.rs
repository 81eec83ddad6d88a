//! The decision engine of Portcullis. Decisions are pure functions of in-memory data: this crate
//! does no I/O and never waits.
//!
//! For now it holds the one rule set of the foundation, [`org_access`]: org admins manage their own
//! org and nobody reaches another org. The RBAC and Rego engines replace it behind the same calls.
#![forbid(unsafe_code)]

pub mod access_expr;
pub mod org_access;
pub mod rbac;
pub mod rego;
pub mod route_match;
pub mod route_rules;

pub use org_access::{
    Access, Caller, OrgAction, OrgMembership, PlatformAction, check_org, check_platform,
};
