//! Names that appear in entity references (`kind:namespace/name`) and in URLs, and their rules.

use crate::ModelError;

/// Longest name or namespace in an entity reference, as in Backstage.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an entity name (usernames, group names): `^[a-zA-Z0-9]+([._-][a-zA-Z0-9]+)*$`, at
/// most 63 characters.
pub fn validate_entity_name(field: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(ModelError::new(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ModelError::new(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    let bytes = value.as_bytes();
    let mut previous_was_separator = true;
    for &b in bytes {
        let separator = matches!(b, b'.' | b'_' | b'-');
        if !(b.is_ascii_alphanumeric() || separator) {
            return Err(ModelError::new(
                field,
                "may contain only letters, digits and the separators '.', '_' and '-'",
            ));
        }
        if separator && previous_was_separator {
            return Err(ModelError::new(
                field,
                "must start and end with a letter or digit, with one separator at most between them",
            ));
        }
        previous_was_separator = separator;
    }
    if previous_was_separator {
        return Err(ModelError::new(field, "must end with a letter or digit"));
    }
    Ok(())
}

/// Checks a slug (org slugs, project names): lower-case DNS label `^[a-z0-9]+(-[a-z0-9]+)*$`,
/// at most 63 characters; it is the namespace of entity references, so it must be one.
pub fn validate_slug(field: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(ModelError::new(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ModelError::new(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || value.starts_with('-') || value.ends_with('-') || value.contains("--") {
        return Err(ModelError::new(
            field,
            "must be lower-case letters, digits and single '-' between them (like 'team-a')",
        ));
    }
    Ok(())
}

/// Checks an email address loosely (one '@', non-empty parts, no spaces, at most 254 characters,
/// nothing invisible) and returns it trimmed. The address itself is the proof; this only refuses
/// obvious typos and addresses made to look like others.
pub fn validate_email(field: &str, value: &str) -> Result<String, ModelError> {
    let email = value.trim();
    if email.is_empty() {
        return Err(ModelError::new(field, "must not be empty"));
    }
    if email.len() > 254 {
        return Err(ModelError::new(field, "must be at most 254 characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(ModelError::new(
            field,
            "must be an email address like name@example.com",
        ));
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(ModelError::new(
            field,
            "must be an email address like name@example.com",
        ));
    }
    if email.chars().any(is_invisible) {
        return Err(ModelError::new(
            field,
            "must not contain invisible characters (direction marks, zero-width spaces or joiners)",
        ));
    }
    Ok(email.to_owned())
}

/// Checks a free-text display name: at most 200 characters, no control characters, no
/// bidirectional embedding, override or isolate characters.
pub fn validate_display_name(field: &str, value: &str) -> Result<(), ModelError> {
    if value.chars().count() > 200 {
        return Err(ModelError::new(field, "must be at most 200 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(ModelError::new(
            field,
            "must not contain control characters",
        ));
    }
    if value.chars().any(is_direction_override) {
        return Err(ModelError::new(
            field,
            "must not contain bidirectional embedding, override or isolate characters (U+202A to U+202E, U+2066 to U+2069)",
        ));
    }
    Ok(())
}

/// The bidirectional embedding, override and isolate controls: they make text display in an
/// order other than the one it has (a name that reads as another in the console or the audit
/// trail). The marks (U+200E, U+200F) that right-to-left names may need stay allowed.
fn is_direction_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that change how text displays without showing themselves: direction controls and
/// marks, zero-width spaces and joiners, the byte-order mark. No email address needs one, and
/// one makes an address look like another.
fn is_invisible(c: char) -> bool {
    is_direction_override(c)
        || matches!(
            c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
        )
}

/// Derives a username from an email's local part: characters outside the entity-name alphabet
/// become '-', runs of separators collapse to one, and the result is cut to 63 characters.
pub fn username_from_email(email: &str) -> String {
    let local = email.split('@').next().unwrap_or_default();
    let mut out = String::with_capacity(local.len());
    for c in local.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        let is_sep = matches!(c, '.' | '_' | '-');
        if is_sep && (out.is_empty() || out.ends_with(['.', '_', '-'])) {
            continue;
        }
        if out.len() == MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    while out.ends_with(['.', '_', '-']) {
        out.pop();
    }
    if out.is_empty() {
        "user".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_names_follow_the_reference_pattern() {
        let table = [
            ("alice", true),
            ("alice.smith", true),
            ("a_b-c.d", true),
            ("Alice2", true),
            ("", false),
            ("-alice", false),
            ("alice-", false),
            ("al..ice", false),
            ("al ice", false),
            ("alice@x", false),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
        ];
        for (name, ok) in table {
            assert_eq!(
                validate_entity_name("username", name).is_ok(),
                ok,
                "{name:?}"
            );
        }
    }

    #[test]
    fn slugs_are_dns_labels() {
        for (slug, ok) in [
            ("default", true),
            ("team-a", true),
            ("Team", false),
            ("a--b", false),
            ("-a", false),
            ("a_b", false),
        ] {
            assert_eq!(validate_slug("slug", slug).is_ok(), ok, "{slug:?}");
        }
    }

    #[test]
    fn emails_are_checked_loosely() {
        assert_eq!(
            validate_email("email", " Alice@Example.com ").unwrap(),
            "Alice@Example.com"
        );
        for bad in [
            "",
            "alice",
            "@x.com",
            "alice@",
            "a b@x.com",
            "a@b@c",
            "a@.com",
            // Invisible characters that make an address look like another.
            "ad\u{202E}nim@x.com",
            "admin\u{200B}@x.com",
            "admin@x\u{FEFF}.com",
            "\u{2066}admin@x.com",
        ] {
            assert!(validate_email("email", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_may_not_reorder_how_they_read() {
        for good in [
            "Ana Lima",
            "שלום\u{200F} team",
            "نور",
            "emoji \u{1F469}\u{200D}\u{1F4BB}",
        ] {
            validate_display_name("name", good).unwrap();
        }
        for bad in [
            "evil\u{202E}gnp.exe",
            "\u{2067}admin",
            "a\u{202A}b",
            "tab\there",
        ] {
            assert!(validate_display_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_derive_from_emails() {
        let table = [
            ("alice@example.com", "alice"),
            ("alice.smith@example.com", "alice.smith"),
            ("al+ice@example.com", "al-ice"),
            ("..weird..@x", "weird"),
            ("+++@x", "user"),
        ];
        for (email, expected) in table {
            let derived = username_from_email(email);
            assert_eq!(derived, expected);
            validate_entity_name("username", &derived).unwrap();
        }
        let long = format!("{}@x.com", "a".repeat(100));
        assert_eq!(username_from_email(&long).len(), 63);
    }
}
