//! HTTP-level tests of the Backstage-compatible permission API (`/api/permission/…`, seed 002
//! chapter 4), the decision endpoints built on the RBAC engine (`/api/permission/authorize`,
//! `/api/v1/check`, `/api/v1/me/permissions`) and the user statistics
//! (`/api/licensed-users-info/…`). Each test starts the real server on a real port with a SQLite
//! database of its own and talks to it over HTTP.

// The shared helpers of the admin API tests are not all used here.
#![allow(dead_code)]

#[path = "common/reply.rs"]
mod reply;
#[path = "admin_api/support.rs"]
mod support;

#[path = "permission_api/common.rs"]
mod common;

#[path = "permission_api/access.rs"]
mod access;
#[path = "permission_api/audit.rs"]
mod audit;
#[path = "permission_api/conditions.rs"]
mod conditions;
#[path = "permission_api/decisions.rs"]
mod decisions;
#[path = "permission_api/groups.rs"]
mod groups;
#[path = "permission_api/policies.rs"]
mod policies;
#[path = "permission_api/roles.rs"]
mod roles;
#[path = "permission_api/sources.rs"]
mod sources;
#[path = "permission_api/status_codes.rs"]
mod status_codes;
#[path = "permission_api/user_stats.rs"]
mod user_stats;
