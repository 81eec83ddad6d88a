//! HTTP tests of local users (issue 3): passwords, temporary passwords, reset, TOTP MFA,
//! lockout, sessions and the authentication endpoints. Each test starts the real server on a
//! real port with its own SQLite file and an adjustable clock that it moves instead of waiting.

#[path = "common/python.rs"]
mod python;
#[path = "common/reply.rs"]
mod reply;
#[path = "local_users/support.rs"]
mod support;

#[path = "local_users/jwt.rs"]
mod jwt;
#[path = "local_users/lockout.rs"]
mod lockout;
#[path = "local_users/machine.rs"]
mod machine;
#[path = "local_users/mail.rs"]
mod mail;
#[path = "local_users/mfa_required.rs"]
mod mfa_required;
#[path = "local_users/open_redirect.rs"]
mod open_redirect;
#[path = "local_users/rate_limit.rs"]
mod rate_limit;
#[path = "local_users/sessions.rs"]
mod sessions;
#[path = "local_users/temporary_password.rs"]
mod temporary_password;
#[path = "local_users/totp.rs"]
mod totp;
#[path = "local_users/web_login.rs"]
mod web_login;
