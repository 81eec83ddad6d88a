//! Identity headers: who the backend is serving. Every name Portcullis may set is removed from
//! the client's request first, whatever the configuration, so no client can pose as a user.
//! A caller's header values are prepared once ([`CallerHeaders`]) and shared by all of their
//! requests: setting them costs a reference count per header, not a copy and a check.

use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};

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

const USER: HeaderName = HeaderName::from_static("x-portcullis-user");
const USER_ID: HeaderName = HeaderName::from_static("x-portcullis-user-id");
const GROUPS: HeaderName = HeaderName::from_static("x-portcullis-groups");
const ORG: HeaderName = HeaderName::from_static("x-portcullis-org");
const ASSERTION: HeaderName = HeaderName::from_static("x-portcullis-assertion");
const IMPERSONATED_BY: HeaderName = HeaderName::from_static("x-portcullis-impersonated-by");
const TOOLFORGE_USER: HeaderName = HeaderName::from_static("x-toolforge-user");
const TOOLFORGE_TOOL: HeaderName = HeaderName::from_static("x-toolforge-tool");
const ROND_USER: HeaderName = HeaderName::from_static("miauserid");
const ROND_GROUPS: HeaderName = HeaderName::from_static("miausergroups");
const ROND_PROPS: HeaderName = HeaderName::from_static(ROND_PROPERTIES);

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
pub struct IdentityFields {
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
    /// A signed, short-lived identity JWT.
    pub assertion: Option<String>,
}

/// One caller's identity header values, checked and encoded once.
#[derive(Debug, Clone, Default)]
pub struct CallerHeaders {
    user: Option<HeaderValue>,
    user_id: Option<HeaderValue>,
    groups: Option<HeaderValue>,
    org: Option<HeaderValue>,
    assertion: Option<HeaderValue>,
    properties: Option<HeaderValue>,
    /// The forward-auth answer's headers for a path that names no tool, built at the first
    /// answer (with the alias families it was built for).
    answer: OnceLock<(IdentityHeaders, HeaderMap)>,
}

// Values come from validated names; a value that is not a header value is left out rather than
// sent half.
fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl CallerHeaders {
    /// The header values of `identity`.
    pub fn new(identity: &IdentityFields) -> Self {
        Self {
            user: value(&identity.user),
            user_id: value(&identity.user_id),
            groups: value(&identity.groups.join(",")),
            org: identity.org.as_deref().and_then(value),
            assertion: identity.assertion.as_deref().and_then(value),
            properties: value(&identity.properties.to_string()),
            answer: OnceLock::new(),
        }
    }
}

/// What one request carries: the caller's prepared headers and the tool its path names.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The caller's headers.
    pub caller: Arc<CallerHeaders>,
    /// The tool (project) named in the path, for Toolforge's header.
    pub tool: Option<String>,
}

fn is_identity_name(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-portcullis-") || n.starts_with("x-toolforge-") || n.starts_with("miau")
}

/// Removes every header a client may have sent in the identity namespaces (`X-Portcullis-*`,
/// `X-Toolforge-*`, `miau*`), not only the names Portcullis sets today: a backend reading
/// `X-Portcullis-Role` or `miauserrole` must be able to trust that Portcullis wrote it.
pub fn strip(headers: &mut HeaderMap) {
    crate::headers::remove_where(headers, is_identity_name);
}

/// Calls `f` with every identity header name Portcullis reserves and the caller's value for it:
/// none where Portcullis sets none (an anonymous caller, a caller in no org, a path that names
/// no tool, an alias family turned off). The one place that says which value goes where.
fn each_reserved(
    caller: Option<&CallerHeaders>,
    tool: Option<&str>,
    aliases: IdentityHeaders,
    mut f: impl FnMut(&HeaderName, Option<&HeaderValue>),
) {
    let field =
        |get: fn(&CallerHeaders) -> &Option<HeaderValue>| caller.and_then(|c| get(c).as_ref());
    // Checked into a header value only where it is sent (an allocation).
    let tool = tool.filter(|_| aliases.toolforge).and_then(value);
    f(&USER, field(|c| &c.user));
    f(&USER_ID, field(|c| &c.user_id));
    f(&GROUPS, field(|c| &c.groups));
    f(&ORG, field(|c| &c.org));
    f(&ASSERTION, field(|c| &c.assertion));
    // Reserved for impersonation: never set yet, so never passed from a client either.
    f(&IMPERSONATED_BY, None);
    let (toolforge, rond) = (|_: &_| aliases.toolforge, |_: &_| aliases.rond);
    f(&TOOLFORGE_USER, field(|c| &c.user).filter(toolforge));
    f(&TOOLFORGE_TOOL, tool.as_ref());
    f(&ROND_USER, field(|c| &c.user_id).filter(rond));
    f(&ROND_GROUPS, field(|c| &c.groups).filter(rond));
    f(&ROND_PROPS, field(|c| &c.properties).filter(rond));
}

/// Calls `f` with each identity header of the caller (none for an anonymous one), the ones
/// [`apply`] sets, without copying a value.
pub fn each(
    identity: Option<&Identity>,
    aliases: IdentityHeaders,
    mut f: impl FnMut(&HeaderName, &HeaderValue),
) {
    let Some(id) = identity else { return };
    each_reserved(
        Some(&id.caller),
        id.tool.as_deref(),
        aliases,
        |name, value| {
            if let Some(v) = value {
                f(name, v);
            }
        },
    );
}

/// Every reserved name with the caller's value, or empty where there is none; room left for
/// the request id.
fn answer_map(
    caller: Option<&CallerHeaders>,
    tool: Option<&str>,
    aliases: IdentityHeaders,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(ALL_NAMES.len() + 2);
    each_reserved(caller, tool, aliases, |name, value| {
        let value = value.cloned().unwrap_or(HeaderValue::from_static(""));
        headers.insert(name.clone(), value);
    });
    headers
}

/// The identity headers of a forward-auth 200: every identity header name Portcullis reserves,
/// with the caller's value, or empty where it sets none. A proxy that copies only the headers
/// present in the answer (Envoy's `allowed_upstream_headers`) then replaces every one a client
/// sent; nginx drops a header set empty, Traefik passes it empty. Built once per caller (and
/// once for anonymous callers) and copied: a copy costs less than the eleven inserts.
pub fn answer(identity: Option<&Identity>, aliases: IdentityHeaders) -> HeaderMap {
    let Some(id) = identity else {
        // No caller: every value empty, whatever the aliases.
        static NOBODY: OnceLock<HeaderMap> = OnceLock::new();
        return NOBODY
            .get_or_init(|| answer_map(None, None, aliases))
            .clone();
    };
    let caller = &*id.caller;
    let (built_for, prepared) = caller
        .answer
        .get_or_init(|| (aliases, answer_map(Some(caller), None, aliases)));
    if *built_for != aliases {
        return answer_map(Some(caller), id.tool.as_deref(), aliases);
    }
    let mut headers = prepared.clone();
    if aliases.toolforge
        && let Some(tool) = id.tool.as_deref().and_then(value)
    {
        headers.insert(TOOLFORGE_TOOL, tool);
    }
    headers
}

/// Strips the client's identity headers, then sets the caller's (none for an anonymous one).
pub fn apply(headers: &mut HeaderMap, identity: Option<&Identity>, aliases: IdentityHeaders) {
    strip(headers);
    each(identity, aliases, |name, value| {
        headers.insert(name.clone(), value.clone());
    });
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
            caller: Arc::new(CallerHeaders::new(&IdentityFields {
                user: "ana".into(),
                user_id: "u-1".into(),
                groups: vec!["dev".into(), "ops".into()],
                org: Some("default".into()),
                properties: serde_json::json!({"email": "ana@example.com"}),
                assertion: Some("a.b.c".into()),
            })),
            tool: Some("staging".into()),
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
        assert_eq!(h["miauserproperties"], r#"{"email":"ana@example.com"}"#);

        let mut h = HeaderMap::new();
        apply(&mut h, Some(&id), IdentityHeaders::default());
        assert!(!h.contains_key("x-toolforge-user") && !h.contains_key("miauserid"));
    }

    #[test]
    fn a_forward_auth_answer_names_every_reserved_header() {
        let names = |h: &HeaderMap| {
            let mut n: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
            n.sort_unstable();
            n
        };
        let mut reserved: Vec<String> = ALL_NAMES
            .into_iter()
            .chain([ROND_PROPERTIES])
            .map(str::to_owned)
            .collect();
        reserved.sort_unstable();
        // An anonymous caller, aliases off: every name, every value empty.
        let h = answer(None, IdentityHeaders::default());
        assert_eq!(names(&h), reserved);
        assert!(h.values().all(|v| v.is_empty()));
        // A caller with no org, on a path that names no tool, aliases on.
        let id = Identity {
            caller: Arc::new(CallerHeaders::new(&IdentityFields {
                user: "ana".into(),
                user_id: "u-1".into(),
                ..IdentityFields::default()
            })),
            tool: None,
        };
        let all = IdentityHeaders {
            toolforge: true,
            rond: true,
        };
        let h = answer(Some(&id), all);
        assert_eq!(names(&h), reserved);
        assert_eq!(h["x-portcullis-user"], "ana");
        assert_eq!(h["x-toolforge-user"], "ana");
        assert_eq!(h["miauserid"], "u-1");
        for name in [
            "x-portcullis-org",
            "x-toolforge-tool",
            "x-portcullis-assertion",
            "x-portcullis-impersonated-by",
        ] {
            assert_eq!(h[name], "", "{name}");
        }
        // The same caller on a path that names a tool: the prepared answer with the tool.
        let on_tool = Identity {
            caller: id.caller.clone(),
            tool: Some("builder".into()),
        };
        let h = answer(Some(&on_tool), all);
        assert_eq!(names(&h), reserved);
        assert_eq!(h["x-toolforge-tool"], "builder");
        assert_eq!(h["x-portcullis-user"], "ana");
        assert_eq!(answer(Some(&id), all)["x-toolforge-tool"], "");
        // Aliases off: the alias headers stay empty even for a caller (and a tool).
        for identity in [&id, &on_tool] {
            let h = answer(Some(identity), IdentityHeaders::default());
            assert_eq!(names(&h), reserved);
            assert_eq!(h["x-portcullis-user"], "ana");
            assert_eq!(h["x-toolforge-user"], "");
            assert_eq!(h["x-toolforge-tool"], "");
            assert_eq!(h["miauserid"], "");
        }
    }
}
