//! Request paths and route templates. A path is normalised once, before any matching: unreserved
//! characters are percent-decoded (`%2e` becomes `.`), other escapes are kept in upper case and
//! characters outside ASCII are written as the escapes of their UTF-8 bytes, dot
//! segments are resolved and repeated slashes collapse. An encoded slash or backslash (`%2F`,
//! `%5C`) is refused: a backend that decodes it would see a different path than the one decided
//! on; so are a raw backslash, a raw `;` (path parameters) and a raw `#` (a fragment), which some
//! backends read as a separator or cut off, and a raw space. Every rule then sees the same
//! spelling, so no spelling of a path can reach a rule meant for another. Templates use
//! `{param}` segments and a trailing `*`.

use std::collections::HashMap;

/// A path that cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// It does not start with `/`.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding at byte {0}")]
    BadEscape(usize),
    /// A control character, raw or encoded as `%00`…`%1F`.
    #[error("control characters are not allowed in paths")]
    Control,
    /// `%2F` or `%5C`: a separator in disguise.
    #[error("encoded slashes and backslashes (%2F, %5C) are not allowed in paths")]
    EncodedSeparator,
    /// A raw `\`: Windows and IIS backends read it as `/`.
    #[error("backslashes are not allowed in paths")]
    Backslash,
    /// A raw `;`: servlet containers (Tomcat, Jetty, Spring) cut `;params` off each segment,
    /// so `/public/..;/admin` reaches `/admin` there and `/admin;x` is `/admin`.
    #[error("';' (path parameters) is not allowed in paths; encode it as %3B")]
    Semicolon,
    /// A raw `#`: a request target has no fragment (RFC 9112 section 3.2), and nginx, hyper and
    /// most frameworks end the path there, so `/admin#/../public` is `/admin` to them.
    #[error("'#' is not allowed in paths (a request target has no fragment); encode it as %23")]
    Fragment,
    /// A raw space: no request line can carry one, so a path naming one was not a request's.
    #[error("spaces are not allowed in paths; encode them as %20")]
    Space,
    /// A `.` or `..` segment (in any spelling) in a path a proxy names ([`check_named_uri`]).
    #[error(
        "'.' and '..' segments are not allowed in a path a proxy names: the proxy passes it on \
         as sent, and backends resolve them differently or not at all"
    )]
    DotSegment,
}

/// Checks a request target a front proxy names for forward-auth (nginx's `X-Original-URI`,
/// Traefik's `X-Forwarded-Uri`, Envoy's path under the prefix) beyond what [`normalize_path`]
/// refuses. The gateway forwards the path it normalised, but a proxy forwards the target as the
/// client sent it, so the decision must not rest on a reading the backend may not share: a dot
/// segment (`.`, `..`, `%2e%2e`) is refused, as Express-style routers keep them and others
/// resolve them against empty segments differently; so is a raw `#` or space anywhere,
/// the query included (a backend ends the query at `#`).
pub fn check_named_uri(uri: &str) -> Result<(), PathError> {
    if uri.contains('#') {
        return Err(PathError::Fragment);
    }
    if uri.contains(' ') {
        return Err(PathError::Space);
    }
    let path = uri.split_once('?').map_or(uri, |(p, _)| p);
    if path.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

/// Whether a segment is `.` or `..`, each dot raw or as `%2e` / `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let (mut dots, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'.' {
            i += 1;
        } else if bytes[i] == b'%'
            && bytes.get(i + 1) == Some(&b'2')
            && matches!(bytes.get(i + 2), Some(b'e' | b'E'))
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Normalises a request path (without the query string).
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    // Decode unreserved escapes, canonicalise the others.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x20 || b == 0x7f {
            return Err(PathError::Control);
        }
        if b == b'\\' {
            return Err(PathError::Backslash);
        }
        if b == b';' {
            return Err(PathError::Semicolon);
        }
        if b == b'#' {
            return Err(PathError::Fragment);
        }
        if b == b' ' {
            return Err(PathError::Space);
        }
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(PathError::BadEscape(i));
            };
            let v = h * 16 + l;
            if v < 0x20 || v == 0x7f {
                return Err(PathError::Control);
            }
            if v == b'/' || v == b'\\' {
                return Err(PathError::EncodedSeparator);
            }
            if unreserved(v) {
                decoded.push(v as char);
            } else {
                decoded.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if b.is_ascii() {
            decoded.push(b as char);
            i += 1;
        } else {
            // Outside ASCII, as the escapes of its UTF-8 bytes: `/wiki/Ü` and `/wiki/%C3%9C`
            // are one path to a backend, so they must be one to the rules.
            let ch_len = raw[i..].chars().next().map_or(1, char::len_utf8);
            for byte in &bytes[i..i + ch_len] {
                decoded.push_str(&format!("%{byte:02X}"));
            }
            i += ch_len;
        }
    }
    let trailing = decoded.len() > 1 && decoded.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    // The root, or a path that ended in a slash, keeps its final slash.
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Static(String),
    Param(String),
}

/// A route template: `/api/{tenant}/items`, `/static/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    wildcard: bool,
    text: String,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route '{template}': {message}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub message: String,
}

impl Template {
    /// Parses a template; its static parts are normalised like request paths.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let fail = |message: &str| TemplateError {
            template: text.to_owned(),
            message: message.to_owned(),
        };
        let (body, wildcard) = match text.strip_suffix('*') {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(fail("'*' is allowed only at the end"));
        }
        let normal = normalize_path(if body.is_empty() { "/" } else { body })
            .map_err(|e| fail(&e.to_string()))?;
        let mut parts = Vec::new();
        for seg in normal.split('/').filter(|s| !s.is_empty()) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(fail("a parameter needs a name, like {id}"));
                }
                // The name as written: normalising escaped what is outside ASCII.
                parts.push(Part::Param(percent_decode(name)));
            } else if seg.contains(['{', '}']) {
                return Err(fail("a parameter must fill a whole segment, like /{id}/"));
            } else {
                parts.push(Part::Static(seg.to_owned()));
            }
        }
        Ok(Self {
            parts,
            wildcard,
            text: text.to_owned(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches a normalised path; `ignore_trailing_slash` lets `/a/` match `/a`.
    pub fn matches(
        &self,
        path: &str,
        ignore_trailing_slash: bool,
    ) -> Option<HashMap<String, String>> {
        let trailing = path.len() > 1 && path.ends_with('/');
        if trailing && !ignore_trailing_slash && !self.wildcard {
            return None;
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.len() < self.parts.len()
            || (!self.wildcard && segments.len() != self.parts.len())
        {
            return None;
        }
        let mut params = HashMap::new();
        for (part, seg) in self.parts.iter().zip(&segments) {
            match part {
                Part::Static(s) if s == seg => {}
                Part::Static(_) => return None,
                Part::Param(name) => {
                    params.insert(name.clone(), percent_decode(seg));
                }
            }
        }
        Some(params)
    }

    /// Orders templates from most to least specific: more static segments first, then more
    /// segments, wildcards last.
    fn specificity(&self) -> (bool, usize, usize) {
        let statics = self
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Static(_)))
            .count();
        (!self.wildcard, statics, self.parts.len())
    }
}

/// Decodes every `%XX` escape (a path parameter's value, a query string's part); a `%` not
/// followed by two hex digits stays as it is, bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Methods a route applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Every method (`ALL`).
    All,
    /// These (upper case).
    Only(Vec<String>),
}

impl Methods {
    fn allows(&self, method: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.iter().any(|m| m.eq_ignore_ascii_case(method)),
        }
    }
}

/// A table of routes, matched most-specific first.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<(Template, Methods, T)>,
    ignore_trailing_slash: bool,
}

/// A matched route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch<'a, T> {
    /// The route's value.
    pub route: &'a T,
    /// The template that matched.
    pub template: &'a str,
    /// Path parameters, decoded.
    pub params: HashMap<String, String>,
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new(ignore_trailing_slash: bool) -> Self {
        Self {
            routes: Vec::new(),
            ignore_trailing_slash,
        }
    }

    /// Adds a route.
    pub fn add(&mut self, template: Template, methods: Methods, value: T) {
        self.routes.push((template, methods, value));
        self.routes
            .sort_by_key(|(t, _, _)| std::cmp::Reverse(t.specificity()));
    }

    /// The most specific route for a method and a *normalised* path.
    pub fn find(&self, method: &str, path: &str) -> Option<RouteMatch<'_, T>> {
        self.routes
            .iter()
            .filter(|(_, m, _)| m.allows(method))
            .find_map(|(t, _, v)| {
                t.matches(path, self.ignore_trailing_slash)
                    .map(|params| RouteMatch {
                        route: v,
                        template: t.as_str(),
                        params,
                    })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_uri_table() {
        let table = [
            ("/", Ok(())),
            ("/a/b?x=1", Ok(())),
            ("/a//b", Ok(())),
            ("/a/.hidden/...", Ok(())),
            ("/a/b?x=../y", Ok(())),
            ("/a/%2e%2e%2e", Ok(())),
            ("/admin/../public", Err(PathError::DotSegment)),
            ("/admin/./x", Err(PathError::DotSegment)),
            ("/admin/%2e%2e/public", Err(PathError::DotSegment)),
            ("/admin/%2E./public", Err(PathError::DotSegment)),
            ("/admin/.%2e", Err(PathError::DotSegment)),
            ("/admin//../public", Err(PathError::DotSegment)),
            ("/admin/..", Err(PathError::DotSegment)),
            ("/x?force=true#", Err(PathError::Fragment)),
            ("/x#y", Err(PathError::Fragment)),
            ("/x?a=b c", Err(PathError::Space)),
        ];
        for (uri, want) in table {
            assert_eq!(check_named_uri(uri), want, "{uri}");
        }
    }

    #[test]
    fn normalisation_table() {
        let table = [
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/../admin", Ok("/admin")),
            ("/a/%2e%2e/admin", Ok("/admin")),
            ("/a/%2E%2E/admin", Ok("/admin")),
            ("/a/.%2e/admin", Ok("/admin")),
            ("//admin", Ok("/admin")),
            ("/a//b///c", Ok("/a/b/c")),
            ("/a/./b", Ok("/a/b")),
            ("/../../admin", Ok("/admin")),
            ("/a/b/", Ok("/a/b/")),
            ("/a%2Fb", Err(PathError::EncodedSeparator)),
            ("/a%2fb", Err(PathError::EncodedSeparator)),
            ("/a%5cb", Err(PathError::EncodedSeparator)),
            ("/public/..\\admin", Err(PathError::Backslash)),
            ("/public/..;/admin", Err(PathError::Semicolon)),
            ("/admin;x=1", Err(PathError::Semicolon)),
            ("/admin#/../public", Err(PathError::Fragment)),
            ("/admin#x", Err(PathError::Fragment)),
            ("/a%23b", Ok("/a%23b")),
            ("/admin /../public", Err(PathError::Space)),
            ("/a%3Bb", Ok("/a%3Bb")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/%61dmin", Ok("/admin")),
            ("/Admin", Ok("/Admin")),
            ("/a%20b", Ok("/a%20b")),
            ("/caf\u{e9}", Ok("/caf%C3%A9")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("admin", Err(PathError::NotAbsolute)),
            ("/a%2", Err(PathError::BadEscape(2))),
            ("/a%zz", Err(PathError::BadEscape(2))),
            ("/a%00b", Err(PathError::Control)),
            ("/a\nb", Err(PathError::Control)),
        ];
        for (raw, want) in table {
            assert_eq!(
                normalize_path(raw).as_deref().map_err(Clone::clone),
                want.as_ref().map(|s| *s).map_err(Clone::clone),
                "{raw:?}"
            );
        }
    }

    fn table() -> RouteTable<&'static str> {
        let mut t = RouteTable::new(false);
        for (template, methods, name) in [
            ("/public/*", Methods::All, "public"),
            ("/admin", Methods::All, "admin"),
            ("/admin/*", Methods::All, "admin-tree"),
            (
                "/api/{tenant}/items",
                Methods::Only(vec!["GET".into()]),
                "items",
            ),
            (
                "/api/{tenant}/items/{id}",
                Methods::Only(vec!["GET".into(), "DELETE".into()]),
                "item",
            ),
            (
                "/api/acme/items",
                Methods::Only(vec!["GET".into()]),
                "acme-items",
            ),
        ] {
            t.add(Template::parse(template).unwrap(), methods, name);
        }
        t
    }

    /// Route lookup as a server does it: normalise, then find.
    fn route(t: &RouteTable<&'static str>, method: &str, raw: &str) -> Option<&'static str> {
        let path = normalize_path(raw).ok()?;
        t.find(method, &path).map(|m| *m.route)
    }

    #[test]
    fn no_spelling_reaches_another_route() {
        let t = table();
        let table = [
            ("GET", "/public/logo.png", Some("public")),
            ("GET", "/public/../admin", Some("admin")),
            ("GET", "/public/%2e%2e/admin", Some("admin")),
            ("GET", "/public/%2E%2e/admin/users", Some("admin-tree")),
            ("GET", "//admin", Some("admin")),
            ("GET", "/public//admin", Some("public")),
            ("GET", "/admin/", Some("admin-tree")),
            ("GET", "/public%2F..%2Fadmin", None),
            ("GET", "/public/..%2Fadmin", None),
            ("GET", "/ADMIN", None),
            ("GET", "/Public/x", None),
            ("GET", "/api/acme/items", Some("acme-items")),
            ("GET", "/api/other/items", Some("items")),
            ("GET", "/api/other/items/", None),
            ("POST", "/api/other/items", None),
            ("DELETE", "/api/t/items/42", Some("item")),
            ("GET", "/api/t/items/4%2F2", None),
            ("GET", "/api/t/items/4%3F2", Some("item")),
            ("GET", "/api/t/items/4/2", None),
            ("GET", "/nothing", None),
        ];
        for (method, raw, want) in table {
            assert_eq!(route(&t, method, raw), want, "{method} {raw}");
        }
    }

    #[test]
    fn parameters_are_decoded_and_trailing_slashes_can_be_ignored() {
        let t = table();
        let path = normalize_path("/api/t%20x/items/4%3F2").unwrap();
        let m = t.find("GET", &path).unwrap();
        assert_eq!(m.params["tenant"], "t x");
        assert_eq!(m.params["id"], "4?2");
        let mut lenient = RouteTable::new(true);
        lenient.add(
            Template::parse("/api/items").unwrap(),
            Methods::All,
            "items",
        );
        assert!(lenient.find("GET", "/api/items/").is_some());
        assert!(Template::parse("/a/*/b").is_err());
        assert!(Template::parse("/a/{}").is_err());
        assert!(Template::parse("/a/x{id}").is_err());
        // A name outside ASCII stays as written; the value is decoded.
        let mut t = RouteTable::new(false);
        t.add(
            Template::parse("/w/{n\u{e4}me}").unwrap(),
            Methods::All,
            "w",
        );
        let m = t
            .find("GET", &normalize_path("/w/\u{dc}x").unwrap())
            .unwrap();
        assert_eq!(m.params["n\u{e4}me"], "\u{dc}x");
    }
}
