//! Policy lines as text: the CSV policy file and the validation every `p` and `g` line goes
//! through, with the reference plugin's messages.

use std::collections::HashMap;

use portcullis_model::{EntityKind, EntityRef, Expect};

use super::snapshot::{Action, Effect, PolicyLine, RoleMember};

/// The valid lines of a policy file and a warning for every line that was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedPolicies {
    /// `p` lines, in file order, duplicates removed.
    pub policies: Vec<PolicyLine>,
    /// `g` lines, in file order, duplicates removed.
    pub members: Vec<RoleMember>,
    /// `"<file>:<line>: <why>"` for every skipped line.
    pub warnings: Vec<String>,
}

/// Checks the four fields of a `p` line.
pub fn validate_policy(
    subject: &str,
    permission: &str,
    action: &str,
    effect: &str,
) -> Result<PolicyLine, String> {
    let subject = EntityRef::parse(subject, Expect::Any).map_err(|e| e.0)?;
    if permission.is_empty() {
        return Err("'permission' field must not be empty".into());
    }
    if permission.chars().any(char::is_control) {
        return Err("'permission' must not contain control characters".into());
    }
    if permission.contains('"') {
        return Err("'permission' contains double quotes (\") which are not supported by the RBAC policy persistence format.".into());
    }
    if action.is_empty() {
        return Err("'policy' field must not be empty".into());
    }
    let Some(action) = Action::parse(action) else {
        return Err(format!(
            "'policy' has invalid value: '{action}'. It should be one of: create, read, update, delete, use"
        ));
    };
    if effect.is_empty() {
        return Err("'effect' field must not be empty".into());
    }
    let Some(effect) = Effect::parse(effect) else {
        return Err(format!(
            "'effect' has invalid value: '{effect}'. It should be: 'allow' or 'deny'"
        ));
    };
    Ok(PolicyLine {
        subject,
        permission: permission.to_owned(),
        action,
        effect,
    })
}

/// Checks the two fields of a `g` line: a user or group, and a role.
pub fn validate_grouping(member: &str, role: &str) -> Result<RoleMember, String> {
    let both = format!("{member},{role}");
    let m = EntityRef::parse(member, Expect::Any)
        .map_err(|e| format!("Failed to validate group policy {both}. Cause: {}", e.0))?;
    let r = EntityRef::parse(role, Expect::Any)
        .map_err(|e| format!("Failed to validate group policy {both}. Cause: {}", e.0))?;
    match (m.kind(), r.kind()) {
        (EntityKind::Role, _) => Err(format!(
            "Group policy is invalid: {both}. rbac-backend plugin doesn't support role inheritance."
        )),
        (EntityKind::Group, EntityKind::Group) => Err(format!(
            "Group policy is invalid: {both}. Group inheritance information could be provided only with help of Catalog API."
        )),
        (EntityKind::User, EntityKind::Group) => Err(format!(
            "Group policy is invalid: {both}. User membership information could be provided only with help of Catalog API."
        )),
        (_, EntityKind::User) => Err(format!(
            "Failed to validate group policy {both}. Cause: Unsupported kind user. Supported value should be \"role\""
        )),
        _ => Ok(RoleMember { member: m, role: r }),
    }
}

/// Parses a policy CSV. Invalid lines are skipped with a warning naming the file and line;
/// a line repeated exactly counts once; the same `p` line with both effects is skipped
/// entirely (both lines), as the reference does.
pub fn parse_policy_csv(file: &str, text: &str) -> ParsedPolicies {
    let mut out = ParsedPolicies::default();
    let mut seen_policies: HashMap<PolicyLine, u64> = HashMap::new();
    let mut seen_members: HashMap<RoleMember, u64> = HashMap::new();
    let mut effects: HashMap<(EntityRef, String, Action), Vec<(u64, Effect)>> = HashMap::new();
    let mut policies: Vec<(u64, PolicyLine)> = Vec::new();
    // A byte-order mark some editors write must not hide the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = index as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = split_fields(trimmed);
        let fields: Vec<&str> = fields.iter().map(|f| f.as_ref()).collect();
        match fields.as_slice() {
            [""] | [] => {}
            ["p", sub, obj, act, eft] => match validate_policy(sub, obj, act, eft) {
                Ok(p) => {
                    if let Some(first) = seen_policies.get(&p) {
                        out.warnings.push(format!(
                            "{file}:{line}: duplicate of line {first}, counted once: {p}"
                        ));
                        continue;
                    }
                    seen_policies.insert(p.clone(), line);
                    effects
                        .entry((p.subject.clone(), p.permission.clone(), p.action))
                        .or_default()
                        .push((line, p.effect));
                    policies.push((line, p));
                }
                Err(e) => out.warnings.push(format!("{file}:{line}: {e}")),
            },
            ["p", ..] => out.warnings.push(format!(
                "{file}:{line}: a 'p' line has 5 fields: p, subject, permission, action, effect"
            )),
            ["g", member, role] => match validate_grouping(member, role) {
                Ok(g) => {
                    if let Some(first) = seen_members.get(&g) {
                        out.warnings.push(format!(
                            "{file}:{line}: duplicate of line {first}, counted once: g, {}, {}",
                            g.member, g.role
                        ));
                        continue;
                    }
                    seen_members.insert(g.clone(), line);
                    out.members.push(g);
                }
                Err(e) => out.warnings.push(format!("{file}:{line}: {e}")),
            },
            ["g", ..] => out
                .warnings
                .push(format!("{file}:{line}: Group policy should have length 2")),
            [kind, ..] => out.warnings.push(format!(
                "{file}:{line}: unknown line type '{kind}': expected 'p' or 'g'"
            )),
        }
    }
    for (line, p) in policies {
        let conflicting = effects
            .get(&(p.subject.clone(), p.permission.clone(), p.action))
            .is_some_and(|e| e.iter().any(|(_, eft)| *eft != p.effect));
        if conflicting {
            out.warnings.push(format!(
                "{file}:{line}: Duplicate policy: {}, {}, {} with different effect found in the file {file}",
                p.subject,
                p.permission,
                p.action.as_str()
            ));
        } else {
            out.policies.push(p);
        }
    }
    out
}

/// The comma-separated fields of one line, trimmed. A field may be quoted (`"…"`, with `""`
/// for a quote inside), as CSV writers do; unquoted fields are borrowed, not copied.
fn split_fields(line: &str) -> Vec<std::borrow::Cow<'_, str>> {
    let mut fields = Vec::with_capacity(5);
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start();
        if let Some(quoted) = trimmed.strip_prefix('"') {
            // Up to the closing quote that is not doubled.
            let mut value = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().is_some_and(|&(_, n)| n == '"') {
                        value.push('"');
                        chars.next();
                    } else {
                        end = i + 1;
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            fields.push(std::borrow::Cow::Owned(value));
            let after = &quoted[end.min(quoted.len())..];
            match after.find(',') {
                Some(comma) => rest = &after[comma + 1..],
                None => return fields,
            }
        } else {
            match trimmed.find(',') {
                Some(comma) => {
                    fields.push(std::borrow::Cow::Borrowed(trimmed[..comma].trim()));
                    rest = &trimmed[comma + 1..];
                }
                None => {
                    fields.push(std::borrow::Cow::Borrowed(trimmed.trim()));
                    return fields;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_follow_the_reference() {
        let table = [
            (
                ("role:default/a", "", "read", "allow"),
                "'permission' field must not be empty",
            ),
            (
                ("role:default/a", "x\"y", "read", "allow"),
                "'permission' contains double quotes",
            ),
            (
                ("role:default/a", "x", "", "allow"),
                "'policy' field must not be empty",
            ),
            (
                ("role:default/a", "x", "write", "allow"),
                "'policy' has invalid value: 'write'. It should be one of: create, read, update, delete, use",
            ),
            (
                ("role:default/a", "x", "read", ""),
                "'effect' field must not be empty",
            ),
            (
                ("role:default/a", "x", "read", "maybe"),
                "'effect' has invalid value: 'maybe'. It should be: 'allow' or 'deny'",
            ),
            (
                ("team", "x", "read", "allow"),
                "Entity reference \"team\" had missing or empty kind",
            ),
        ];
        for ((s, p, a, e), want) in table {
            let err = validate_policy(s, p, a, e).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
        let g = [
            (
                ("role:default/a", "role:default/b"),
                "Group policy is invalid: role:default/a,role:default/b. rbac-backend plugin doesn't support role inheritance.",
            ),
            (
                ("group:default/a", "group:default/b"),
                "Group policy is invalid: group:default/a,group:default/b. Group inheritance information could be provided only with help of Catalog API.",
            ),
            (
                ("user:default/a", "group:default/b"),
                "Group policy is invalid: user:default/a,group:default/b. User membership information could be provided only with help of Catalog API.",
            ),
            (
                ("user:default/a", "role:bad ns/b"),
                "Failed to validate group policy user:default/a,role:bad ns/b. Cause: The namespace 'bad ns'",
            ),
        ];
        for ((m, r), want) in g {
            let err = validate_grouping(m, r).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn csv_lines_are_read_skipped_and_deduplicated() {
        let text = "\
# a comment
p, role:default/team_a, catalog-entity, read, allow
p, role:default/team_a, catalog-entity, read, allow
g, user:default/Alice, role:default/team_a

p, role:default/team_a, catalog.entity.create, create, allow
p, role:default/team_a, catalog.entity.create, create, deny
p, role:default/team_a, catalog-entity, write, allow
g, group:default/a, group:default/b
x, what
p, role:default/too, few
";
        let parsed = parse_policy_csv("rbac-policy.csv", text);
        assert_eq!(parsed.policies.len(), 1);
        let bom = parse_policy_csv(
            "bom.csv",
            "\u{feff}p, role:default/a, catalog-entity, read, allow\n",
        );
        assert_eq!(
            (bom.policies.len(), bom.warnings.len()),
            (1, 0),
            "{:?}",
            bom.warnings
        );
        let quoted = parse_policy_csv(
            "q.csv",
            "p, \"role:default/a\", \"catalog-entity\", read, allow\np, role:default/a, \"x",
        );
        assert_eq!(quoted.policies.len(), 1, "{:?}", quoted.warnings);
        assert_eq!(quoted.policies[0].permission, "catalog-entity");
        assert_eq!(
            parsed.policies[0].to_string(),
            "p, role:default/team_a, catalog-entity, read, allow"
        );
        assert_eq!(parsed.members.len(), 1);
        assert_eq!(parsed.members[0].member.as_str(), "user:default/alice");
        let w = parsed.warnings.join("\n");
        for want in [
            "rbac-policy.csv:3: duplicate of line 2",
            "rbac-policy.csv:8: 'policy' has invalid value: 'write'",
            "rbac-policy.csv:9: Group policy is invalid",
            "rbac-policy.csv:10: unknown line type 'x'",
            "rbac-policy.csv:11: a 'p' line has 5 fields",
            "rbac-policy.csv:6: Duplicate policy: role:default/team_a, catalog.entity.create, create with different effect",
            "rbac-policy.csv:7: Duplicate policy: role:default/team_a, catalog.entity.create, create with different effect",
        ] {
            assert!(w.contains(want), "missing {want:?} in\n{w}");
        }
    }
}
