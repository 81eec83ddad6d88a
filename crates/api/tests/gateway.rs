//! End-to-end tests of the gateway: a real Portcullis server in front of a real backend (an
//! axum server the tests start), requests through the gateway itself, forward-auth at `/auth`
//! as nginx, Traefik and Envoy call it, and real front proxies
//! asking it: nginx (`auth_request`), Envoy (`ext_authz`) and Traefik (`forwardAuth`).

#[path = "gateway/backend.rs"]
mod backend;
#[path = "common/metrics.rs"]
mod metrics;
#[path = "common/python.rs"]
mod python;
#[path = "common/reply.rs"]
mod reply;
#[path = "gateway/support.rs"]
mod support;

#[path = "gateway/audit.rs"]
mod audit;
#[path = "gateway/draining.rs"]
mod draining;
#[path = "gateway/external.rs"]
mod external;
#[path = "gateway/forward_auth.rs"]
mod forward_auth;
#[path = "gateway/front_proxies.rs"]
mod front_proxies;
#[path = "gateway/nginx.rs"]
mod nginx;
#[path = "gateway/policy_body.rs"]
mod policy_body;
#[path = "gateway/proxy.rs"]
mod proxy;
#[path = "gateway/raw_lane.rs"]
mod raw_lane;
#[path = "gateway/stalled_readers.rs"]
mod stalled_readers;
#[path = "gateway/streaming.rs"]
mod streaming;
