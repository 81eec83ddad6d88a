//! Plain domain types of Portcullis: ids, validated names, org security settings, user kinds and
//! roles. This crate does no I/O; every other crate speaks in these types.
#![forbid(unsafe_code)]

pub mod clock;
pub mod condition;
pub mod entity_ref;
pub mod error;
pub mod ids;
pub mod names;
pub mod org;
pub mod timestamp;
pub mod user;

pub use clock::Clock;
pub use condition::{Condition, Criteria};
pub use entity_ref::{EntityKind, EntityRef, EntityRefError, Expect};
pub use error::ModelError;
pub use ids::{GroupId, KeyId, OrgId, ProjectId, SessionId, UserId};
pub use org::OrgSettings;
pub use timestamp::Timestamp;
pub use user::{MembershipStatus, OrgRole, ProjectRole, UserKind};
