//! Identity headers: who the backend is serving. Every name Portcullis may set is removed from
//! the client's request first, whatever the configuration, so no client can pose as a user.

use http::header::{HeaderMap, HeaderValue};

/// Every identity header name, ours and the configurable aliases.
pub const ALL_NAMES: [&str; 10] = [
    "x-portcullis-user",
    "x-portcullis-user-id",
    "x-portcullis-groups",
    "x-portcullis-org",
    "x-portcullis-assertion",
    "x-portcullis-impersonated-by",
    "x-toolforge-user",
    "x-toolforge-tool",
    "miauserid",
    "miausergroups",
];

/// Rönd's user-properties header (also removed).
pub const ROND_PROPERTIES: &str = "miauserproperties";

/// Which alias families are set besides Portcullis's own headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// Toolforge's `X-Toolforge-User` / `X-Toolforge-Tool`.
    pub toolforge: bool,
    /// Rönd's `miauserid`, `miausergroups`, `miauserproperties`.
    pub rond: bool,
}

/// The caller, as backends learn it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Username.
    pub user: String,
    /// User id.
    pub user_id: String,
    /// Group names in `org`.
    pub groups: Vec<String>,
    /// The org (slug).
    pub org: Option<String>,
    /// User properties (email, name) for Rönd's header.
    pub properties: serde_json::Value,
    /// The tool (project) named in the path, for Toolforge's header.
    pub tool: Option<String>,
    /// A signed, short-lived identity JWT.
    pub assertion: Option<String>,
}

/// Removes every identity header a client may have sent.
pub fn strip(headers: &mut HeaderMap) {
    for name in ALL_NAMES {
        headers.remove(name);
    }
    headers.remove(ROND_PROPERTIES);
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // Values come from validated names; a value that is not a header value is left out rather
    // than sent half.
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Strips the client's identity headers, then sets the caller's (none for an anonymous one).
pub fn apply(headers: &mut HeaderMap, identity: Option<&Identity>, aliases: IdentityHeaders) {
    strip(headers);
    let Some(id) = identity else { return };
    let groups = id.groups.join(",");
    put(headers, "x-portcullis-user", &id.user);
    put(headers, "x-portcullis-user-id", &id.user_id);
    put(headers, "x-portcullis-groups", &groups);
    if let Some(org) = &id.org {
        put(headers, "x-portcullis-org", org);
    }
    if let Some(a) = &id.assertion {
        put(headers, "x-portcullis-assertion", a);
    }
    if aliases.toolforge {
        put(headers, "x-toolforge-user", &id.user);
        if let Some(tool) = &id.tool {
            put(headers, "x-toolforge-tool", tool);
        }
    }
    if aliases.rond {
        put(headers, "miauserid", &id.user_id);
        put(headers, "miausergroups", &groups);
        put(headers, ROND_PROPERTIES, &id.properties.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_headers_never_survive() {
        let mut h = HeaderMap::new();
        for name in ALL_NAMES.iter().chain([ROND_PROPERTIES].iter()) {
            h.insert(*name, "forged".parse().unwrap());
        }
        h.insert("accept", "*/*".parse().unwrap());
        apply(
            &mut h,
            None,
            IdentityHeaders {
                toolforge: true,
                rond: true,
            },
        );
        assert_eq!(h.len(), 1, "{h:?}");

        let id = Identity {
            user: "ana".into(),
            user_id: "u-1".into(),
            groups: vec!["dev".into(), "ops".into()],
            org: Some("default".into()),
            properties: serde_json::json!({"email": "ana@example.com"}),
            tool: Some("staging".into()),
            assertion: Some("a.b.c".into()),
        };
        let mut h = HeaderMap::new();
        h.insert("x-portcullis-user", "mallory".parse().unwrap());
        h.insert("miauserid", "mallory".parse().unwrap());
        apply(
            &mut h,
            Some(&id),
            IdentityHeaders {
                toolforge: true,
                rond: true,
            },
        );
        assert_eq!(h["x-portcullis-user"], "ana");
        assert_eq!(h["x-portcullis-groups"], "dev,ops");
        assert_eq!(h["x-toolforge-user"], "ana");
        assert_eq!(h["x-toolforge-tool"], "staging");
        assert_eq!(h["miauserid"], "u-1");
        assert_eq!(h["miausergroups"], "dev,ops");
        assert_eq!(h["x-portcullis-assertion"], "a.b.c");

        let mut h = HeaderMap::new();
        apply(&mut h, Some(&id), IdentityHeaders::default());
        assert!(!h.contains_key("x-toolforge-user") && !h.contains_key("miauserid"));
    }
}
