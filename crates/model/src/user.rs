//! User kinds, membership states and the built-in roles of an org and its projects.

use serde::{Deserialize, Serialize};

/// How a user proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    /// Password (and TOTP) managed by Portcullis.
    Local,
    /// Signs in through an OpenID provider.
    Sso,
    /// A program: API keys only, never the console.
    Machine,
}

impl UserKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Sso => "sso",
            Self::Machine => "machine",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(Self::Local),
            "sso" => Some(Self::Sso),
            "machine" => Some(Self::Machine),
            _ => None,
        }
    }
}

/// Whether a member may reach an org right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MembershipStatus {
    /// Every credential of the user works for the org.
    Active,
    /// Blocked from the org on every channel; project assignments are suspended, not lost.
    Deactivated,
}

impl MembershipStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "deactivated" => Some(Self::Deactivated),
            _ => None,
        }
    }
}

/// The built-in org-wide role of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    /// Organization Admin: manages users, groups, projects, keys and settings of the org.
    Admin,
    /// Read-only access to everything in the org, the audit trail included.
    Auditor,
    /// Reaches the org; what else comes from project roles and policies.
    Member,
}

impl OrgRole {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Auditor => "auditor",
            Self::Member => "member",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "auditor" => Some(Self::Auditor),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// The built-in role of a member within one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// Project Admin: manages the project.
    Admin,
    /// Works in the project.
    Member,
    /// Reads the project.
    Viewer,
}

impl ProjectRole {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spellings_round_trip() {
        for k in [UserKind::Local, UserKind::Sso, UserKind::Machine] {
            assert_eq!(UserKind::parse(k.as_str()), Some(k));
        }
        for r in [OrgRole::Admin, OrgRole::Auditor, OrgRole::Member] {
            assert_eq!(OrgRole::parse(r.as_str()), Some(r));
        }
        for r in [ProjectRole::Admin, ProjectRole::Member, ProjectRole::Viewer] {
            assert_eq!(ProjectRole::parse(r.as_str()), Some(r));
        }
        for s in [MembershipStatus::Active, MembershipStatus::Deactivated] {
            assert_eq!(MembershipStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(UserKind::parse("robot"), None);
    }
}
