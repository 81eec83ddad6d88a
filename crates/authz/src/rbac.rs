//! RBAC with the semantics of the Backstage RBAC plugin, compiled into an indexed
//! [`RbacSnapshot`]: a decision looks up the principal's groups and roles and a handful of hash
//! entries, so its cost does not grow with the number of policies or users.
//!
//! - `p, <subject>, <permission name | resource type>, <action>, <allow|deny>`: the subject is a
//!   user, a group or a role; a principal is matched through itself, its groups (nested, from the
//!   identity model) and the roles any of them hold through `g, <user|group>, <role>`.
//! - Deny wins over allow; no matching allow is a deny.
//! - A policy on the permission *name* takes precedence over one on its *resource type*.
//! - Conditional policies of the principal's roles decide resource permissions first and are
//!   merged with `anyOf`; two conditions of one role for the same resource type and action deny.
//! - Super users and super groups are always allowed; a cycle in a principal's groups denies.

mod catalog_rules;
mod policy_file;
mod snapshot;

pub use catalog_rules::evaluate_catalog_rule;
pub use policy_file::{ParsedPolicies, parse_policy_csv, validate_grouping, validate_policy};
pub use snapshot::{
    Action, Decision, Effect, Explanation, GroupGraph, Outcome, PermissionQuery, PolicyLine,
    RbacConfig, RbacSnapshot, Reason, RoleCondition, RoleMember,
};
