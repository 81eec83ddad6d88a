//! HTTP-level tests of the admin API: each test starts the real server on a real port with a
//! SQLite database of its own and talks to it over HTTP, as a client would.

#[path = "common/reply.rs"]
mod reply;
#[path = "admin_api/support.rs"]
mod support;

#[path = "admin_api/access.rs"]
mod access;
#[path = "admin_api/audit.rs"]
mod audit;
#[path = "admin_api/groups.rs"]
mod groups;
#[path = "admin_api/health_and_auth.rs"]
mod health_and_auth;
#[path = "admin_api/keys.rs"]
mod keys;
#[path = "admin_api/orgs_and_projects.rs"]
mod orgs_and_projects;
#[path = "admin_api/roles_and_bindings.rs"]
mod roles_and_bindings;
#[path = "admin_api/users.rs"]
mod users;
#[path = "admin_api/validation.rs"]
mod validation;
