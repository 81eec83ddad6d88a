//! The single place that decides who may do what to an org, until roles and policies take over.

use portcullis_model::{MembershipStatus, OrgId, OrgRole};

/// What a caller wants to do inside one org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// See the org, its projects and groups.
    View,
    /// See users, keys of machine users and the audit trail.
    Inspect,
    /// Change anything in the org: users, groups, projects, keys, settings.
    Manage,
}

/// What a caller wants to do outside any one org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformAction {
    /// Create a new org.
    CreateOrg,
    /// List every org, not just one's own.
    ListAllOrgs,
}

/// A caller's membership in one org, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgMembership {
    /// The org.
    pub org_id: OrgId,
    /// Built-in org role.
    pub role: OrgRole,
    /// Active or deactivated.
    pub status: MembershipStatus,
}

/// The caller of a request, as far as authorization is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Platform administrators may create orgs (and administer those they create).
    pub platform_admin: bool,
    /// The caller's membership in the org at hand, if any.
    pub membership: Option<&'a OrgMembership>,
    /// When the credential is bound to one org, that org; other orgs are out of its reach.
    pub credential_org: Option<OrgId>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Go ahead.
    Allow,
    /// The caller is not a member (or the credential is bound elsewhere): the org is not revealed.
    Hidden,
    /// The caller's membership is deactivated.
    Deactivated,
    /// The caller is a member but the role does not allow the action.
    Forbidden,
}

/// Decides whether `caller` may perform `action` in the org of its membership. Deny by default:
/// anything not listed is refused.
pub fn check_org(caller: Caller<'_>, action: OrgAction) -> Access {
    let Some(membership) = caller.membership else {
        return Access::Hidden;
    };
    if caller
        .credential_org
        .is_some_and(|bound| bound != membership.org_id)
    {
        return Access::Hidden;
    }
    if membership.status != MembershipStatus::Active {
        return Access::Deactivated;
    }
    let allowed = matches!(
        (membership.role, action),
        (OrgRole::Admin, _)
            | (OrgRole::Auditor, OrgAction::View | OrgAction::Inspect)
            | (OrgRole::Member, OrgAction::View)
    );
    if allowed {
        Access::Allow
    } else {
        Access::Forbidden
    }
}

/// Decides platform-wide actions: only platform administrators using a credential not bound to
/// one org.
pub fn check_platform(caller: Caller<'_>, _action: PlatformAction) -> Access {
    if caller.platform_admin && caller.credential_org.is_none() {
        Access::Allow
    } else {
        Access::Forbidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MembershipStatus::*;
    use OrgAction::*;
    use OrgRole::*;

    #[test]
    fn org_access_table() {
        let org = OrgId::new();
        let other = OrgId::new();
        // (role, status, credential bound to, action) -> expected
        let table = [
            (Admin, Active, None, Manage, Access::Allow),
            (Admin, Active, Some(org), Manage, Access::Allow),
            (Admin, Active, Some(other), View, Access::Hidden),
            (Admin, Deactivated, None, View, Access::Deactivated),
            (Auditor, Active, None, Inspect, Access::Allow),
            (Auditor, Active, None, Manage, Access::Forbidden),
            (Member, Active, None, View, Access::Allow),
            (Member, Active, None, Inspect, Access::Forbidden),
            (Member, Active, None, Manage, Access::Forbidden),
            (Member, Deactivated, None, View, Access::Deactivated),
        ];
        for (role, status, bound, action, expected) in table {
            let m = OrgMembership {
                org_id: org,
                role,
                status,
            };
            let caller = Caller {
                platform_admin: false,
                membership: Some(&m),
                credential_org: bound,
            };
            assert_eq!(
                check_org(caller, action),
                expected,
                "{role:?} {status:?} {bound:?} {action:?}"
            );
        }
    }

    #[test]
    fn non_members_never_see_the_org_even_as_platform_admins() {
        let caller = Caller {
            platform_admin: true,
            membership: None,
            credential_org: None,
        };
        assert_eq!(check_org(caller, View), Access::Hidden);
    }

    #[test]
    fn only_unbound_platform_admins_create_orgs() {
        let admin = Caller {
            platform_admin: true,
            membership: None,
            credential_org: None,
        };
        assert_eq!(
            check_platform(admin, PlatformAction::CreateOrg),
            Access::Allow
        );
        let bound = Caller {
            credential_org: Some(OrgId::new()),
            ..admin
        };
        assert_eq!(
            check_platform(bound, PlatformAction::CreateOrg),
            Access::Forbidden
        );
        let plain = Caller {
            platform_admin: false,
            ..admin
        };
        assert_eq!(
            check_platform(plain, PlatformAction::ListAllOrgs),
            Access::Forbidden
        );
    }
}
