//! The data plane of Portcullis: forwarding an allowed request to its backend (pooled
//! connections, streaming bodies, hop-by-hop headers removed, `X-Forwarded-*` set, timeouts), the
//! identity headers backends receive (client-sent ones always removed first, with the caller's
//! Portcullis credential), and reading the original request out of a forward-auth call. Decisions are not made here: the control plane
//! decides and hands over what to forward.
#![forbid(unsafe_code)]

pub mod credentials;
pub mod forward_auth;
pub mod headers;
pub mod identity;
pub mod idle_body;
pub mod proxy;
pub mod send_timeout;
pub mod task_watch;

pub use identity::{CallerHeaders, Identity, IdentityFields, IdentityHeaders};
pub use idle_body::{BodyStalled, IdleBody};
pub use proxy::{
    Backend, DEFAULT_UPGRADED_IDLE, Forward, GatewayError, HeldWhileUpgraded, Proxy, UpgradeEvents,
    UpgradedEnd,
};
pub use send_timeout::{SendTimeout, WriteStalled};
pub use task_watch::TaskWatch;
