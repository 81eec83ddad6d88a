//! Entity references `kind:namespace/name`, validated with the rules and messages of the
//! Backstage RBAC plugin, so that policy files and API clients written for it work unchanged.

use std::fmt;

use crate::names::MAX_NAME_LEN;

/// The kinds a policy may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// `user:`
    User,
    /// `group:`
    Group,
    /// `role:`
    Role,
}

impl EntityKind {
    /// The spelling in references.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Role => "role",
        }
    }
}

/// A full entity reference. User and group references are lower-cased (they name catalog
/// entities, which compare case-insensitively); role names keep the case they were written in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityRef {
    text: String,
    kind: EntityKind,
}

/// Why a reference was refused; the message is the reference plugin's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EntityRefError(pub String);

/// Which kinds a reference may have where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any of user, group, role.
    Any,
    /// Only `role:`.
    Role,
    /// Only `user:` or `group:` (members, owners).
    Member,
}

fn valid_name(name: &str) -> bool {
    crate::names::validate_entity_name("name", name).is_ok()
}

fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= MAX_NAME_LEN
        && crate::names::validate_slug("namespace", ns).is_ok()
}

impl EntityRef {
    /// Parses a full reference `kind:namespace/name`.
    pub fn parse(text: &str, expect: Expect) -> Result<Self, EntityRefError> {
        if text.is_empty() {
            return Err(EntityRefError("'entityReference' must not be empty".into()));
        }
        let (kind, rest) = match text.split_once(':') {
            Some((k, r)) if !k.is_empty() => (k, r),
            _ => {
                return Err(EntityRefError(format!(
                    "Entity reference \"{text}\" had missing or empty kind (e.g. did not start with \"component:\" or similar)"
                )));
            }
        };
        let Some((namespace, name)) = rest.split_once('/') else {
            return Err(EntityRefError(format!(
                "entity reference '{text}' does not match the required format [<kind>:][<namespace>/]<name>. Provide, please, full entity reference."
            )));
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') || name.contains(':') {
            return Err(EntityRefError(format!(
                "entity reference '{text}' does not match the required format [<kind>:][<namespace>/]<name>. Provide, please, full entity reference."
            )));
        }
        let parsed_kind = match kind {
            "user" => Some(EntityKind::User),
            "group" => Some(EntityKind::Group),
            "role" => Some(EntityKind::Role),
            _ => None,
        };
        let kind_error = match expect {
            Expect::Role if parsed_kind != Some(EntityKind::Role) => Some(format!(
                "Unsupported kind {kind}. Supported value should be \"role\""
            )),
            Expect::Member
                if !matches!(parsed_kind, Some(EntityKind::User | EntityKind::Group)) =>
            {
                Some(format!(
                    "Unsupported kind {kind}. List supported values [\"user\", \"group\"]"
                ))
            }
            _ if parsed_kind.is_none() => Some(format!(
                "Unsupported kind {kind}. List supported values [\"user\", \"group\", \"role\"]"
            )),
            _ => None,
        };
        if let Some(message) = kind_error {
            return Err(EntityRefError(message));
        }
        let kind = parsed_kind.unwrap_or(EntityKind::Role);
        if !valid_name(name) {
            return Err(EntityRefError(format!(
                "The name '{name}' in the entity reference must be a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], at most 63 characters in total"
            )));
        }
        if !valid_namespace(namespace) {
            return Err(EntityRefError(format!(
                "The namespace '{namespace}' in the entity reference must be a string that is sequences of [a-z0-9] separated by [-], at most 63 characters in total"
            )));
        }
        let text = match kind {
            EntityKind::Role => text.to_owned(),
            EntityKind::User | EntityKind::Group => text.to_lowercase(),
        };
        Ok(Self { text, kind })
    }

    /// A user reference built from parts already validated (org slug and username).
    pub fn user(namespace: &str, name: &str) -> Self {
        Self {
            text: format!("user:{namespace}/{name}").to_lowercase(),
            kind: EntityKind::User,
        }
    }

    /// A group reference built from parts already validated.
    pub fn group(namespace: &str, name: &str) -> Self {
        Self {
            text: format!("group:{namespace}/{name}").to_lowercase(),
            kind: EntityKind::Group,
        }
    }

    /// The kind.
    pub fn kind(&self) -> EntityKind {
        self.kind
    }

    /// The full text, e.g. `role:default/team_a`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_rules_and_messages() {
        // (input, expect, Ok(normalised) or Err(message start))
        let table: [(&str, Expect, Result<&str, &str>); 12] = [
            ("user:default/Alice", Expect::Any, Ok("user:default/alice")),
            (
                "group:default/Team-A",
                Expect::Member,
                Ok("group:default/team-a"),
            ),
            (
                "role:default/Team_A",
                Expect::Role,
                Ok("role:default/Team_A"),
            ),
            ("", Expect::Any, Err("'entityReference' must not be empty")),
            (
                "alice",
                Expect::Any,
                Err("Entity reference \"alice\" had missing or empty kind"),
            ),
            (
                "user:alice",
                Expect::Any,
                Err("entity reference 'user:alice' does not match the required format"),
            ),
            (
                "component:default/x",
                Expect::Any,
                Err(
                    "Unsupported kind component. List supported values [\"user\", \"group\", \"role\"]",
                ),
            ),
            (
                "user:default/x",
                Expect::Role,
                Err("Unsupported kind user. Supported value should be \"role\""),
            ),
            (
                "role:default/x",
                Expect::Member,
                Err("Unsupported kind role. List supported values [\"user\", \"group\"]"),
            ),
            (
                "user:default/a..b",
                Expect::Any,
                Err("The name 'a..b' in the entity reference must be"),
            ),
            (
                "user:Default/a",
                Expect::Any,
                Err("The namespace 'Default' in the entity reference must be"),
            ),
            ("User:default/a", Expect::Any, Err("Unsupported kind User.")),
        ];
        for (input, expect, want) in table {
            match (EntityRef::parse(input, expect), want) {
                (Ok(r), Ok(text)) => assert_eq!(r.as_str(), text, "{input}"),
                (Err(e), Err(start)) => assert!(e.0.starts_with(start), "{input}: {}", e.0),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        let long = format!("user:default/{}", "a".repeat(64));
        assert!(EntityRef::parse(&long, Expect::Any).is_err());
    }
}
