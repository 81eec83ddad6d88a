//! The compiled RBAC index and the decision over it.

use std::collections::{HashMap, HashSet};

use portcullis_model::{Criteria, EntityRef};

/// What a policy allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `create`
    Create,
    /// `read`
    Read,
    /// `update`
    Update,
    /// `delete`
    Delete,
    /// `use`: permissions without an action.
    Use,
}

impl Action {
    /// Every action, in the reference's order.
    pub const ALL: [Action; 5] = [
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Delete,
        Self::Use,
    ];

    /// Parses `create`, `read`, `update`, `delete` or `use`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "create" => Some(Self::Create),
            "read" => Some(Self::Read),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            "use" => Some(Self::Use),
            _ => None,
        }
    }

    /// The spelling in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Use => "use",
        }
    }
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, and wins over any allow.
    Deny,
}

impl Effect {
    /// Parses `allow` or `deny`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }

    /// The spelling in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Allow => 1,
            Self::Deny => 2,
        }
    }
}

/// A `p` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyLine {
    /// A role, user or group.
    pub subject: EntityRef,
    /// A permission name or a resource type.
    pub permission: String,
    /// The action.
    pub action: Action,
    /// Allow or deny.
    pub effect: Effect,
}

impl std::fmt::Display for PolicyLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p, {}, {}, {}, {}",
            self.subject,
            self.permission,
            self.action.as_str(),
            self.effect.as_str()
        )
    }
}

/// A `g` line: a user or group holds a role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleMember {
    /// The user or group.
    pub member: EntityRef,
    /// The role.
    pub role: EntityRef,
}

/// A conditional policy of a role.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleCondition {
    /// Id (as the REST API numbers them).
    pub id: i64,
    /// The role.
    pub role: EntityRef,
    /// The plugin that evaluates the conditions.
    pub plugin_id: String,
    /// The resource type.
    pub resource_type: String,
    /// The actions it applies to.
    pub actions: Vec<Action>,
    /// The criteria.
    pub conditions: Criteria,
}

/// Group membership from the identity model: users' direct groups, and groups' parent groups.
#[derive(Debug, Clone, Default)]
pub struct GroupGraph {
    /// `user:…` -> direct `group:…`.
    pub user_groups: HashMap<String, Vec<String>>,
    /// `group:…` -> parent `group:…` (the groups it is a member of).
    pub group_parents: HashMap<String, Vec<String>>,
}

/// Configuration of the engine.
#[derive(Debug, Clone, Default)]
pub struct RbacConfig {
    /// Users and groups that are always allowed.
    pub super_users: Vec<EntityRef>,
    /// How many levels of parent groups count (`None`: all; `Some(0)`: direct groups only).
    pub max_depth: Option<usize>,
}

/// A permission to decide.
#[derive(Debug, Clone, Copy)]
pub struct PermissionQuery<'a> {
    /// Permission name, e.g. `catalog.entity.read`.
    pub name: &'a str,
    /// Resource type for resource permissions, e.g. `catalog-entity`.
    pub resource_type: Option<&'a str>,
    /// The action attribute; none means `use`.
    pub action: Option<Action>,
}

/// The result of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Allowed where the conditions hold for the resource.
    Conditional {
        /// The plugin that evaluates them.
        plugin_id: String,
        /// The resource type.
        resource_type: String,
        /// `anyOf` of the conditions of every role that has one.
        conditions: Criteria,
    },
}

/// Why the outcome is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A super user or member of a super group.
    SuperUser,
    /// The principal's groups contain a cycle.
    GroupCycle,
    /// Conditional policies of the principal's roles decided.
    Conditions,
    /// One role holds two conditions for the same resource type and action.
    ConditionCollision,
    /// Policies on the permission name decided.
    PolicyOnName,
    /// Policies on the resource type decided.
    PolicyOnResourceType,
    /// No policy matched: denied by default.
    NoPolicy,
}

/// What an explained decision rests on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explanation {
    /// The principal's groups, nearest first.
    pub groups: Vec<String>,
    /// The principal's roles.
    pub roles: Vec<String>,
    /// The policy lines that matched.
    pub policies: Vec<String>,
    /// Ids of the conditional policies used.
    pub conditions: Vec<i64>,
}

/// A decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Allow, deny or conditional.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
    /// Details, when asked for.
    pub explanation: Option<Explanation>,
}

type Id = u32;

/// Buffers a decision works in, kept per thread so that deciding does not allocate.
#[derive(Debug, Default)]
struct Scratch {
    found: Vec<Id>,
    depths: Vec<usize>,
    path: Vec<Id>,
    stack: Vec<(Id, usize, bool)>,
    subjects: Vec<Id>,
    roles: Vec<Id>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, Id>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, text: &str) -> Id {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.names.len() as Id;
        self.names.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    fn get(&self, text: &str) -> Option<Id> {
        self.ids.get(text).copied()
    }

    fn name(&self, id: Id) -> &str {
        &self.names[id as usize]
    }
}

#[derive(Debug, Default)]
struct Matched {
    effects: u8,
    lines: Vec<u32>,
}

/// Everything a decision needs, compiled and immutable. Build a new one to change anything.
#[derive(Debug, Default)]
pub struct RbacSnapshot {
    subjects: Interner,
    objects: Interner,
    policies: HashMap<(Id, Id, Action), Matched>,
    lines: Vec<PolicyLine>,
    roles_of: HashMap<Id, Vec<Id>>,
    user_groups: HashMap<Id, Vec<Id>>,
    group_parents: HashMap<Id, Vec<Id>>,
    conditions: HashMap<(Id, Id), Vec<u32>>,
    condition_list: Vec<RoleCondition>,
    super_users: HashSet<Id>,
    max_depth: Option<usize>,
}

impl RbacSnapshot {
    /// Compiles policies, role members, conditions and group membership.
    pub fn build(
        policies: &[PolicyLine],
        members: &[RoleMember],
        conditions: &[RoleCondition],
        groups: &GroupGraph,
        config: &RbacConfig,
    ) -> Self {
        let mut s = Self {
            max_depth: config.max_depth,
            ..Self::default()
        };
        for (i, p) in policies.iter().enumerate() {
            let subject = s.subjects.intern(p.subject.as_str());
            let object = s.objects.intern(&p.permission);
            let m = s.policies.entry((subject, object, p.action)).or_default();
            m.effects |= p.effect.bit();
            m.lines.push(i as u32);
        }
        s.lines = policies.to_vec();
        for g in members {
            let member = s.subjects.intern(g.member.as_str());
            let role = s.subjects.intern(g.role.as_str());
            let roles = s.roles_of.entry(member).or_default();
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        for (user, direct) in &groups.user_groups {
            let user = s.subjects.intern(&user.to_lowercase());
            let ids: Vec<Id> = direct
                .iter()
                .map(|g| s.subjects.intern(&g.to_lowercase()))
                .collect();
            s.user_groups.entry(user).or_default().extend(ids);
        }
        for (group, parents) in &groups.group_parents {
            let group = s.subjects.intern(&group.to_lowercase());
            let ids: Vec<Id> = parents
                .iter()
                .map(|g| s.subjects.intern(&g.to_lowercase()))
                .collect();
            s.group_parents.entry(group).or_default().extend(ids);
        }
        for (i, c) in conditions.iter().enumerate() {
            let role = s.subjects.intern(c.role.as_str());
            let rt = s.objects.intern(&c.resource_type);
            s.conditions.entry((role, rt)).or_default().push(i as u32);
        }
        s.condition_list = conditions.to_vec();
        for u in &config.super_users {
            let id = s.subjects.intern(u.as_str());
            s.super_users.insert(id);
        }
        s
    }

    /// The groups of a user (references, nearest first, within the maximum depth); empty for an
    /// unknown user or one whose groups form a cycle.
    pub fn groups_of_user(&self, user: &str) -> Vec<String> {
        let Some(uid) = self.subjects.get(&user.to_lowercase()) else {
            return Vec::new();
        };
        let mut scratch = Scratch::default();
        match self.groups_of(uid, &mut scratch) {
            Ok(()) => scratch
                .found
                .iter()
                .map(|&g| self.subjects.name(g).to_owned())
                .collect(),
            Err(()) => Vec::new(),
        }
    }

    /// How many `p` lines are compiled in.
    pub fn policy_count(&self) -> usize {
        self.lines.len()
    }

    /// The groups of `user` (nearest first) within the configured depth; `Err(())` when they
    /// contain a cycle.
    fn groups_of(&self, user: Id, scratch: &mut Scratch) -> Result<(), ()> {
        let Scratch {
            found,
            depths,
            path,
            stack,
            ..
        } = scratch;
        found.clear();
        depths.clear();
        path.clear();
        stack.clear();
        let Some(direct) = self.user_groups.get(&user) else {
            return Ok(());
        };
        // Depth-first with the path kept, so a group reached again along its own path is a cycle.
        // A group is expanded again only when reached at a smaller depth than before (which
        // matters with a maximum depth), so shared ancestors cost once, not once per path.
        stack.extend(direct.iter().rev().map(|&g| (g, 0, false)));
        while let Some((group, depth, leaving)) = stack.pop() {
            if leaving {
                path.pop();
                continue;
            }
            if path.contains(&group) {
                return Err(());
            }
            match found.iter().position(|&g| g == group) {
                Some(i) if depths[i] <= depth => continue,
                Some(i) => depths[i] = depth,
                None => {
                    found.push(group);
                    depths.push(depth);
                }
            }
            if self.max_depth.is_some_and(|max| depth >= max) {
                continue;
            }
            path.push(group);
            stack.push((group, depth, true));
            for &parent in self.group_parents.get(&group).into_iter().flatten().rev() {
                stack.push((parent, depth + 1, false));
            }
        }
        Ok(())
    }

    /// Decides `query` for the user with entity reference `user` (`user:<ns>/<name>`).
    pub fn decide(&self, user: &str, query: &PermissionQuery<'_>, explain: bool) -> Decision {
        // Reuse this thread's buffers: a decision then allocates nothing unless it explains or
        // returns conditions.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.decide_in(user, query, explain, &mut scratch),
            Err(_) => self.decide_in(user, query, explain, &mut Scratch::default()),
        })
    }

    fn decide_in(
        &self,
        user: &str,
        query: &PermissionQuery<'_>,
        explain: bool,
        scratch: &mut Scratch,
    ) -> Decision {
        // The reference treats a basic `policy.entity.create` without a policy on its name as the
        // resource permission on `policy-entity` (the permission's former shape).
        let converted;
        let query = if query.name == "policy.entity.create" && query.resource_type.is_none() {
            converted = PermissionQuery {
                name: query.name,
                resource_type: Some("policy-entity"),
                action: Some(Action::Create),
            };
            &converted
        } else {
            query
        };
        let finish =
            |outcome: Outcome, reason: Reason, explanation: Option<Explanation>| Decision {
                outcome,
                reason,
                explanation,
            };
        let user_lower;
        let user = if user.bytes().any(|b| b.is_ascii_uppercase()) {
            user_lower = user.to_lowercase();
            user_lower.as_str()
        } else {
            user
        };
        let Some(uid) = self.subjects.get(user) else {
            return finish(
                Outcome::Deny,
                Reason::NoPolicy,
                explain.then(Explanation::default),
            );
        };
        if self.groups_of(uid, scratch).is_err() {
            // A super user stays one; anyone else with a cycle in their groups is denied.
            if self.super_users.contains(&uid) {
                return finish(
                    Outcome::Allow,
                    Reason::SuperUser,
                    explain.then(Explanation::default),
                );
            }
            return finish(
                Outcome::Deny,
                Reason::GroupCycle,
                explain.then(Explanation::default),
            );
        }
        let groups = &scratch.found;
        let mut explanation = explain.then(|| Explanation {
            groups: groups
                .iter()
                .map(|&g| self.subjects.name(g).to_owned())
                .collect(),
            ..Explanation::default()
        });
        if self.super_users.contains(&uid) || groups.iter().any(|g| self.super_users.contains(g)) {
            return finish(Outcome::Allow, Reason::SuperUser, explanation);
        }

        // The principal matches policies through itself, its groups and the roles of either.
        let subjects = &mut scratch.subjects;
        subjects.clear();
        subjects.push(uid);
        subjects.extend_from_slice(groups);
        let roles = &mut scratch.roles;
        roles.clear();
        for s in subjects.iter() {
            for &r in self.roles_of.get(s).into_iter().flatten() {
                if !roles.contains(&r) {
                    roles.push(r);
                }
            }
        }
        subjects.extend_from_slice(roles);
        if let Some(e) = explanation.as_mut() {
            e.roles = roles
                .iter()
                .map(|&r| self.subjects.name(r).to_owned())
                .collect();
        }
        let action = query.action.unwrap_or(Action::Use);
        let name_id = self.objects.get(query.name);
        let has_named = name_id.is_some_and(|n| {
            subjects
                .iter()
                .any(|&s| self.policies.contains_key(&(s, n, action)))
        });

        let object = match query.resource_type {
            Some(resource_type) => {
                let rt_id = self.objects.get(resource_type);
                if let Some(rt) = rt_id {
                    match self.conditions_for(roles, rt, action) {
                        Ok(found) if found.is_empty() => {}
                        Ok(found) => {
                            // Ownership references: the user and their direct groups.
                            let direct = self
                                .user_groups
                                .get(&uid)
                                .map(Vec::as_slice)
                                .unwrap_or_default();
                            let owner_refs: Vec<String> = std::iter::once(user.to_owned())
                                .chain(direct.iter().map(|&g| self.subjects.name(g).to_owned()))
                                .collect();
                            let plugin_id = self.condition_list[found[found.len() - 1] as usize]
                                .plugin_id
                                .clone();
                            let merged = Criteria::AnyOf(
                                found
                                    .iter()
                                    .map(|&i| {
                                        self.condition_list[i as usize]
                                            .conditions
                                            .with_aliases(user, &owner_refs)
                                    })
                                    .collect(),
                            );
                            if let Some(e) = explanation.as_mut() {
                                e.conditions = found
                                    .iter()
                                    .map(|&i| self.condition_list[i as usize].id)
                                    .collect();
                            }
                            let outcome = Outcome::Conditional {
                                plugin_id,
                                resource_type: resource_type.to_owned(),
                                conditions: merged,
                            };
                            return finish(outcome, Reason::Conditions, explanation);
                        }
                        Err(()) => {
                            return finish(Outcome::Deny, Reason::ConditionCollision, explanation);
                        }
                    }
                }
                if has_named { name_id } else { rt_id }
            }
            None => name_id,
        };
        let on_name = has_named || query.resource_type.is_none();
        let Some(object) = object else {
            return finish(Outcome::Deny, Reason::NoPolicy, explanation);
        };
        let mut effects = 0u8;
        for &s in subjects.iter() {
            if let Some(m) = self.policies.get(&(s, object, action)) {
                effects |= m.effects;
                if let Some(e) = explanation.as_mut() {
                    e.policies
                        .extend(m.lines.iter().map(|&l| self.lines[l as usize].to_string()));
                }
            }
        }
        let reason = match (effects, on_name) {
            (0, _) => Reason::NoPolicy,
            (_, true) => Reason::PolicyOnName,
            (_, false) => Reason::PolicyOnResourceType,
        };
        let allowed = effects & Effect::Allow.bit() != 0 && effects & Effect::Deny.bit() == 0;
        finish(
            if allowed {
                Outcome::Allow
            } else {
                Outcome::Deny
            },
            reason,
            explanation,
        )
    }

    /// The conditions of `roles` for a resource type and action: at most one per role, or
    /// `Err` when a role holds two.
    fn conditions_for(
        &self,
        roles: &[Id],
        resource_type: Id,
        action: Action,
    ) -> Result<Vec<u32>, ()> {
        let mut found = Vec::new();
        for &role in roles {
            let mut of_role = self
                .conditions
                .get(&(role, resource_type))
                .into_iter()
                .flatten()
                .filter(|&&i| self.condition_list[i as usize].actions.contains(&action));
            if let Some(&first) = of_role.next() {
                if of_role.next().is_some() {
                    return Err(());
                }
                found.push(first);
            }
        }
        Ok(found)
    }
}
