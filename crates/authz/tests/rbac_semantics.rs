//! The semantics of the RBAC engine as a table: a small world (policy lines, group membership,
//! conditions, super users) and a question -> the expected decision.

use portcullis_authz::rbac::{
    Action, GroupGraph, Outcome, PermissionQuery, RbacConfig, RbacSnapshot, Reason, RoleCondition,
    parse_policy_csv,
};
use portcullis_model::{Criteria, EntityRef, Expect};
use serde_json::{Value, json};

struct World {
    csv: &'static str,
    /// `member -> parent` edges: `user:… -> group:…` or `group:… -> group:…`.
    groups: &'static [(&'static str, &'static str)],
    /// (role, resource type, actions, conditions JSON)
    conditions: Vec<(&'static str, &'static str, &'static [&'static str], Value)>,
    super_users: &'static [&'static str],
    max_depth: Option<usize>,
}

impl World {
    fn new(csv: &'static str) -> Self {
        Self {
            csv,
            groups: &[],
            conditions: Vec::new(),
            super_users: &[],
            max_depth: None,
        }
    }

    fn snapshot(&self) -> RbacSnapshot {
        let parsed = parse_policy_csv("test.csv", self.csv);
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let mut graph = GroupGraph::default();
        for (member, parent) in self.groups {
            let map = if member.starts_with("user:") {
                &mut graph.user_groups
            } else {
                &mut graph.group_parents
            };
            map.entry(member.to_string())
                .or_default()
                .push(parent.to_string());
        }
        let conditions: Vec<RoleCondition> = self
            .conditions
            .iter()
            .enumerate()
            .map(|(i, (role, rt, actions, c))| RoleCondition {
                id: i as i64 + 1,
                role: EntityRef::parse(role, Expect::Role).unwrap(),
                plugin_id: "catalog".into(),
                resource_type: rt.to_string(),
                actions: actions.iter().map(|a| Action::parse(a).unwrap()).collect(),
                conditions: Criteria::from_json(c).unwrap(),
            })
            .collect();
        let config = RbacConfig {
            super_users: self
                .super_users
                .iter()
                .map(|u| EntityRef::parse(u, Expect::Member).unwrap())
                .collect(),
            max_depth: self.max_depth,
        };
        RbacSnapshot::build(
            &parsed.policies,
            &parsed.members,
            &conditions,
            &graph,
            &config,
        )
    }
}

struct Case {
    what: &'static str,
    world: World,
    user: &'static str,
    name: &'static str,
    resource_type: Option<&'static str>,
    action: Option<&'static str>,
    want: &'static str,
    reason: Reason,
    /// For CONDITIONAL: the merged conditions.
    conditions: Option<Value>,
}

fn owner(claims: Value) -> Value {
    json!({"rule": "IS_ENTITY_OWNER", "resourceType": "catalog-entity", "params": {"claims": claims}})
}

// One row of the table: reads better as positional arguments than as a struct literal.
#[allow(clippy::too_many_arguments)]
fn case(
    what: &'static str,
    world: World,
    user: &'static str,
    name: &'static str,
    rt: Option<&'static str>,
    action: Option<&'static str>,
    want: &'static str,
    reason: Reason,
) -> Case {
    Case {
        what,
        world,
        user,
        name,
        resource_type: rt,
        action,
        want,
        reason,
        conditions: None,
    }
}

const READ: Option<&str> = Some("read");
const ENTITY: Option<&str> = Some("catalog-entity");

fn cases() -> Vec<Case> {
    let alice = "user:default/alice";
    vec![
        case(
            "default deny: no policy at all",
            World::new(""),
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::NoPolicy,
        ),
        case(
            "allow through a role held by the user",
            World::new(
                "p, role:default/dev, catalog-entity, read, allow\ng, user:default/alice, role:default/dev",
            ),
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        case(
            "user refs compare case-insensitively",
            World::new(
                "p, role:default/dev, catalog-entity, read, allow\ng, user:default/Alice, role:default/dev",
            ),
            "user:default/ALICE",
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        case(
            "another action is not allowed",
            World::new(
                "p, role:default/dev, catalog-entity, read, allow\ng, user:default/alice, role:default/dev",
            ),
            alice,
            "catalog.entity.delete",
            ENTITY,
            Some("delete"),
            "DENY",
            Reason::NoPolicy,
        ),
        case(
            "group deny beats user allow",
            World {
                groups: &[("user:default/alice", "group:default/team")],
                ..World::new(
                    "p, user:default/alice, catalog-entity, read, allow\np, group:default/team, catalog-entity, read, deny",
                )
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::PolicyOnResourceType,
        ),
        case(
            "user deny beats group allow",
            World {
                groups: &[("user:default/alice", "group:default/team")],
                ..World::new(
                    "p, user:default/alice, catalog-entity, read, deny\np, group:default/team, catalog-entity, read, allow",
                )
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::PolicyOnResourceType,
        ),
        case(
            "deny of one role beats allow of another",
            World::new(
                "p, role:default/a, catalog-entity, read, allow\np, role:default/b, catalog-entity, read, deny\ng, user:default/alice, role:default/a\ng, user:default/alice, role:default/b",
            ),
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::PolicyOnResourceType,
        ),
        case(
            "nested groups: a role of the grandparent group applies",
            World {
                groups: &[
                    ("user:default/alice", "group:default/team"),
                    ("group:default/team", "group:default/dept"),
                    ("group:default/dept", "group:default/org"),
                ],
                ..World::new(
                    "p, role:default/reader, catalog-entity, read, allow\ng, group:default/org, role:default/reader",
                )
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        case(
            "maximum depth: a grandparent beyond it does not count",
            World {
                groups: &[
                    ("user:default/alice", "group:default/team"),
                    ("group:default/team", "group:default/dept"),
                    ("group:default/dept", "group:default/org"),
                ],
                max_depth: Some(1),
                ..World::new(
                    "p, role:default/reader, catalog-entity, read, allow\ng, group:default/org, role:default/reader",
                )
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::NoPolicy,
        ),
        case(
            "a cycle in the user's groups denies even what is allowed",
            World {
                groups: &[
                    ("user:default/alice", "group:default/a"),
                    ("group:default/a", "group:default/b"),
                    ("group:default/b", "group:default/a"),
                ],
                ..World::new("p, user:default/alice, catalog-entity, read, allow")
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::GroupCycle,
        ),
        case(
            "a cycle elsewhere does not touch other users",
            World {
                groups: &[
                    ("user:default/bob", "group:default/a"),
                    ("group:default/a", "group:default/b"),
                    ("group:default/b", "group:default/a"),
                    ("user:default/alice", "group:default/c"),
                ],
                ..World::new("p, group:default/c, catalog-entity, read, allow")
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        case(
            "diamond-shaped groups are not a cycle",
            World {
                groups: &[
                    ("user:default/alice", "group:default/a"),
                    ("user:default/alice", "group:default/b"),
                    ("group:default/a", "group:default/top"),
                    ("group:default/b", "group:default/top"),
                ],
                ..World::new("p, group:default/top, catalog-entity, read, allow")
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        case(
            "name beats resource type: allow on the name, deny on the type",
            World::new(
                "p, role:default/dev, catalog.entity.read, read, allow\np, role:default/dev, catalog-entity, read, deny\ng, user:default/alice, role:default/dev",
            ),
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnName,
        ),
        case(
            "name beats resource type: deny on the name, allow on the type",
            World::new(
                "p, role:default/dev, catalog.entity.read, read, deny\np, role:default/dev, catalog-entity, read, allow\ng, user:default/alice, role:default/dev",
            ),
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::PolicyOnName,
        ),
        case(
            "a name policy of another role also takes precedence",
            World::new(
                "p, role:a/x, catalog.entity.read, read, deny\np, role:default/dev, catalog-entity, read, allow\ng, user:default/alice, role:default/dev\ng, user:default/alice, role:a/x",
            ),
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::PolicyOnName,
        ),
        case(
            "basic permission without action is 'use'",
            World::new(
                "p, role:default/dev, kubernetes.proxy, use, allow\ng, user:default/alice, role:default/dev",
            ),
            alice,
            "kubernetes.proxy",
            None,
            None,
            "ALLOW",
            Reason::PolicyOnName,
        ),
        case(
            "basic permission does not fall back to any resource type",
            World::new(
                "p, role:default/dev, catalog-entity, use, allow\ng, user:default/alice, role:default/dev",
            ),
            alice,
            "kubernetes.proxy",
            None,
            None,
            "DENY",
            Reason::NoPolicy,
        ),
        case(
            "super user is always allowed",
            World {
                super_users: &["user:default/alice"],
                ..World::new("p, user:default/alice, catalog-entity, read, deny")
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::SuperUser,
        ),
        case(
            "members of a super group are always allowed",
            World {
                super_users: &["group:default/admins"],
                groups: &[("user:default/alice", "group:default/admins")],
                ..World::new("")
            },
            alice,
            "anything.at.all",
            None,
            None,
            "ALLOW",
            Reason::SuperUser,
        ),
        case(
            "refs of users that do not exist yet apply once they appear",
            World::new(
                "g, user:default/newcomer, role:default/dev\np, role:default/dev, catalog-entity, read, allow",
            ),
            "user:default/newcomer",
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        Case {
            conditions: Some(json!({"anyOf": [owner(json!(["user:default/alice"]))]})),
            ..case(
                "a condition decides first, with $currentUser replaced",
                World {
                    conditions: vec![(
                        "role:default/dev",
                        "catalog-entity",
                        &["read"],
                        owner(json!(["$currentUser"])),
                    )],
                    ..World::new(
                        "p, role:default/dev, catalog-entity, read, deny\ng, user:default/alice, role:default/dev",
                    )
                },
                alice,
                "catalog.entity.read",
                ENTITY,
                READ,
                "CONDITIONAL",
                Reason::Conditions,
            )
        },
        Case {
            conditions: Some(
                json!({"anyOf": [owner(json!(["group:default/a"])), {"not": {"rule": "IS_ENTITY_KIND", "resourceType": "catalog-entity", "params": {"kinds": ["api"]}}}]}),
            ),
            ..case(
                "conditions of two roles are merged with anyOf",
                World {
                    conditions: vec![
                        (
                            "role:default/one",
                            "catalog-entity",
                            &["read", "update"],
                            owner(json!(["group:default/a"])),
                        ),
                        (
                            "role:default/two",
                            "catalog-entity",
                            &["read"],
                            json!({"not": {"rule": "IS_ENTITY_KIND", "resourceType": "catalog-entity", "params": {"kinds": ["api"]}}}),
                        ),
                    ],
                    ..World::new(
                        "g, user:default/alice, role:default/one\ng, user:default/alice, role:default/two",
                    )
                },
                alice,
                "catalog.entity.read",
                ENTITY,
                READ,
                "CONDITIONAL",
                Reason::Conditions,
            )
        },
        Case {
            conditions: Some(
                json!({"anyOf": [owner(json!(["user:default/alice", "group:default/team"]))]}),
            ),
            ..case(
                "$ownerRefs is the user and their direct groups (not the ancestors)",
                World {
                    groups: &[
                        ("user:default/alice", "group:default/team"),
                        ("group:default/team", "group:default/dept"),
                    ],
                    conditions: vec![(
                        "role:default/dev",
                        "catalog-entity",
                        &["delete"],
                        owner(json!(["$ownerRefs"])),
                    )],
                    ..World::new("g, group:default/team, role:default/dev")
                },
                alice,
                "catalog.entity.delete",
                ENTITY,
                Some("delete"),
                "CONDITIONAL",
                Reason::Conditions,
            )
        },
        case(
            "two conditions of one role for the same type and action deny",
            World {
                conditions: vec![
                    (
                        "role:default/dev",
                        "catalog-entity",
                        &["read"],
                        owner(json!(["$currentUser"])),
                    ),
                    (
                        "role:default/dev",
                        "catalog-entity",
                        &["read", "delete"],
                        owner(json!(["group:default/x"])),
                    ),
                ],
                ..World::new(
                    "p, role:default/dev, catalog-entity, read, allow\ng, user:default/alice, role:default/dev",
                )
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "DENY",
            Reason::ConditionCollision,
        ),
        case(
            "a condition for another action does not apply; the policy decides",
            World {
                conditions: vec![(
                    "role:default/dev",
                    "catalog-entity",
                    &["delete"],
                    owner(json!(["$currentUser"])),
                )],
                ..World::new(
                    "p, role:default/dev, catalog-entity, read, allow\ng, user:default/alice, role:default/dev",
                )
            },
            alice,
            "catalog.entity.read",
            ENTITY,
            READ,
            "ALLOW",
            Reason::PolicyOnResourceType,
        ),
        case(
            "conditions apply only to resource permissions",
            World {
                conditions: vec![(
                    "role:default/dev",
                    "catalog-entity",
                    &["use"],
                    owner(json!(["$currentUser"])),
                )],
                ..World::new("g, user:default/alice, role:default/dev")
            },
            alice,
            "catalog.entity.use",
            None,
            None,
            "DENY",
            Reason::NoPolicy,
        ),
    ]
}

#[test]
fn rbac_semantics_table() {
    let mut failures = Vec::new();
    for c in cases() {
        let snapshot = c.world.snapshot();
        let query = PermissionQuery {
            name: c.name,
            resource_type: c.resource_type,
            action: c.action.map(|a| Action::parse(a).unwrap()),
        };
        let d = snapshot.decide(c.user, &query, true);
        let got = match &d.outcome {
            Outcome::Allow => "ALLOW",
            Outcome::Deny => "DENY",
            Outcome::Conditional { .. } => "CONDITIONAL",
        };
        if got != c.want || d.reason != c.reason {
            failures.push(format!(
                "{}: got {got} ({:?}), want {} ({:?}); {:?}",
                c.what, d.reason, c.want, c.reason, d.explanation
            ));
            continue;
        }
        if let (
            Outcome::Conditional {
                conditions,
                resource_type,
                plugin_id,
            },
            Some(want),
        ) = (&d.outcome, &c.conditions)
        {
            assert_eq!(resource_type, "catalog-entity");
            assert_eq!(plugin_id, "catalog");
            let got = serde_json::to_value(conditions).unwrap();
            if &got != want {
                failures.push(format!("{}: conditions {got}, want {want}", c.what));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn explain_names_groups_roles_and_lines() {
    let world = World {
        groups: &[("user:default/alice", "group:default/team")],
        ..World::new(
            "p, role:default/dev, catalog-entity, read, allow\np, group:default/team, catalog-entity, read, allow\ng, group:default/team, role:default/dev",
        )
    };
    let d = world.snapshot().decide(
        "user:default/alice",
        &PermissionQuery {
            name: "catalog.entity.read",
            resource_type: ENTITY,
            action: Some(Action::Read),
        },
        true,
    );
    let e = d.explanation.unwrap();
    assert_eq!(e.groups, ["group:default/team"]);
    assert_eq!(e.roles, ["role:default/dev"]);
    assert_eq!(e.policies.len(), 2);
    assert!(
        e.policies
            .contains(&"p, role:default/dev, catalog-entity, read, allow".to_string())
    );
    let quiet = world.snapshot().decide(
        "user:default/alice",
        &PermissionQuery {
            name: "x",
            resource_type: None,
            action: None,
        },
        false,
    );
    assert!(quiet.explanation.is_none());
}

/// Diamonds of nested groups (every group a member of both groups of the next layer) are walked
/// once per group, not once per path: 40 layers would be 2^40 paths.
#[test]
fn deep_diamonds_of_groups_cost_once_per_group() {
    let layers = 40;
    let mut graph = GroupGraph::default();
    graph.user_groups.insert(
        "user:default/alice".into(),
        vec!["group:default/l0a".into(), "group:default/l0b".into()],
    );
    for l in 0..layers - 1 {
        for side in ["a", "b"] {
            graph.group_parents.insert(
                format!("group:default/l{l}{side}"),
                vec![
                    format!("group:default/l{}a", l + 1),
                    format!("group:default/l{}b", l + 1),
                ],
            );
        }
    }
    let top = format!(
        "p, group:default/l{}a, catalog-entity, read, allow",
        layers - 1
    );
    let parsed = parse_policy_csv("t.csv", &top);
    let snapshot = RbacSnapshot::build(
        &parsed.policies,
        &parsed.members,
        &[],
        &graph,
        &RbacConfig::default(),
    );
    let started = std::time::Instant::now();
    let d = snapshot.decide(
        "user:default/alice",
        &PermissionQuery {
            name: "catalog.entity.read",
            resource_type: ENTITY,
            action: Some(Action::Read),
        },
        false,
    );
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_super_user_in_a_group_cycle_is_still_a_super_user() {
    let world = World {
        groups: &[
            ("user:default/root", "group:default/a"),
            ("group:default/a", "group:default/b"),
            ("group:default/b", "group:default/a"),
        ],
        super_users: &["user:default/root"],
        ..World::new("")
    };
    let d = world.snapshot().decide(
        "user:default/root",
        &PermissionQuery {
            name: "x",
            resource_type: None,
            action: None,
        },
        false,
    );
    assert_eq!((d.outcome, d.reason), (Outcome::Allow, Reason::SuperUser));
}
