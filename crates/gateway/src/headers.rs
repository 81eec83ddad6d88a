//! Header rules of a proxy: hop-by-hop headers (RFC 9110 §7.6.1) are removed in both directions,
//! with every header the `Connection` header names; `X-Forwarded-For` is appended to only when
//! the previous hop is a trusted proxy, and replaced otherwise; cookies travel on as one header
//! (an HTTP/2 client may split them into several fields).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that concern one connection only.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    // The settings of an HTTP/1.1 -> h2c upgrade (RFC 7540 §3.2.1), which is not passed on.
    HeaderName::from_static("http2-settings"),
];

/// The same, as text (for heads written without a header map).
pub const HOP_BY_HOP_NAMES: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "http2-settings",
];

/// Whether `name` is a hop-by-hop header (a name's comparison, cheaper than one in any case).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Whether `name` (any case) is one of [`HOP_BY_HOP_NAMES`], for heads written without a
/// header map.
pub fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP_NAMES
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// The current time as an HTTP date (`Date` header), formatted at most once a second per
/// thread.
pub fn http_date() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second || cached.1.is_empty() {
            let text = httpdate::fmt_http_date(now);
            if let Ok(v) = HeaderValue::from_str(&text) {
                *cached = (second, v);
            }
        }
        cached.1.clone()
    })
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and those listed in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few names settles it.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Rewrites the request's cookies as one `Cookie` header, in their order, without the pairs
/// whose name `drop` matches (none left: no header). An HTTP/2 client may send each cookie as a
/// field of its own (RFC 9113 §8.2.3); an HTTP/1.1 backend must get one header (RFC 6265
/// §5.4), and either version accepts that. A single header with nothing to drop is left as it
/// came.
pub fn rewrite_cookies(headers: &mut HeaderMap, drop: impl Fn(&[u8]) -> bool) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    let Some(first) = fields.next() else {
        return;
    };
    if fields.next().is_none() && !cookie_pairs(first.as_bytes()).any(|p| drop(cookie_name(p))) {
        return;
    }
    let kept: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .filter(|p| !drop(cookie_name(p)))
        .collect();
    let joined = kept.join(&b"; "[..]);
    if joined.is_empty() {
        headers.remove(header::COOKIE);
    } else if let Ok(value) = HeaderValue::from_bytes(&joined) {
        // Parts of valid values joined by "; " make a valid value: this always holds.
        headers.insert(header::COOKIE, value);
    }
}

/// The `name=value` pairs of a `Cookie` value, trimmed, empty ones skipped.
fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// The name of a cookie pair (or of the cookie a `Set-Cookie` value sets), trimmed.
pub fn cookie_name(pair: &[u8]) -> &[u8] {
    pair.split(|b| *b == b'=')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// What a client's request header is, to a backend that believes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// Nothing Portcullis decides on.
    Nothing,
    /// Another method than the request's (`X-HTTP-Method-Override`) or another path
    /// (`X-Original-URL`): frameworks that honour them would serve what was not decided.
    Override,
    /// Where the request came from or what the client asked for, as a proxy reports it: only
    /// a trusted proxy's are kept.
    ProxyReport,
}

fn told_by(name: &str) -> Told {
    match name {
        "x-http-method-override"
        | "x-http-method"
        | "x-method-override"
        | "x-original-url"
        | "x-rewrite-url" => Told::Override,
        "forwarded"
        | "x-forwarded"
        | "forwarded-for"
        | "x-real-ip"
        | "x-client-ip"
        | "true-client-ip"
        | "x-cluster-client-ip"
        | "cf-connecting-ip"
        | "fastly-client-ip"
        | "x-original-forwarded-for"
        | "x-proxyuser-ip"
        | "x-original-uri"
        | "x-original-method"
        | "x-original-host" => Told::ProxyReport,
        // Every other `X-Forwarded-*` among them.
        _ if reported_by_a_proxy(name) => Told::ProxyReport,
        _ => Told::Nothing,
    }
}

/// Names under which proxies and other authenticating fronts report a request's origin, its
/// client certificate or its caller: every `X-Forwarded-*` but the three Portcullis sets,
/// oauth2-proxy's `X-Auth-Request-*`, Authelia's `Remote-*`, the Kubernetes authenticating
/// proxy's `X-Remote-*`, Grafana's `X-WEBAUTH-USER`, TLS terminators' client certificates,
/// AWS ALB's `X-Amzn-OIDC-*`, Google IAP's, Cloudflare Access's, authentik's, Pomerium's,
/// Vouch's, Azure App Service's `X-MS-Client-Principal*` and Kong's consumer headers. A backend
/// moved behind Portcullis from one of them may still believe its names.
fn reported_by_a_proxy(name: &str) -> bool {
    const X_PREFIXES: [&str; 11] = [
        "x-forwarded-",
        "x-auth-request-",
        "x-remote-",
        "x-ssl-client-",
        "x-amzn-oidc-",
        "x-goog-authenticated-user-",
        "x-authentik-",
        "x-pomerium-",
        "x-vouch-",
        "x-ms-client-principal",
        "x-consumer-",
    ];
    // Dispatched on the first letter: most names a request carries are passed over at once.
    match name.as_bytes().first() {
        Some(b'x') => {
            (X_PREFIXES.iter().any(|p| name.starts_with(p))
                && !matches!(
                    name,
                    "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
                ))
                || matches!(
                    name,
                    "x-webauth-user"
                        | "x-client-cert"
                        | "x-goog-iap-jwt-assertion"
                        | "x-userinfo"
                        | "x-credential-identifier"
                )
        }
        Some(b'r') => matches!(
            name,
            "remote-user" | "remote-groups" | "remote-email" | "remote-name"
        ),
        Some(b'c') => name.starts_with("cf-access-"),
        Some(b's') => name == "ssl-client-cert",
        _ => false,
    }
}

/// Whether a name, read with `-` for `_` as CGI, WSGI, PHP and Rack backends read it, is one
/// Portcullis sets, reads or rules on.
fn protected_as_dashed(name: &str) -> bool {
    let dashed = name.replace('_', "-");
    dashed.starts_with("x-portcullis-")
        || dashed.starts_with("x-toolforge-")
        || dashed.starts_with("miau")
        || dashed.starts_with("x-forwarded-")
        || dashed == "x-api-key"
        || dashed == "x-request-id"
        || told_by(&dashed) != Told::Nothing
        || is_hop_by_hop_name(&dashed)
        || dashed == "content-length"
        || dashed == "host"
}

/// Removes the client headers a backend could be misled by: method and path overrides always;
/// proxy reports (`Forwarded`, `X-Real-IP`, `X-Forwarded-Port`, …) unless the peer is a
/// trusted proxy; and names with `_`, which many backends read as `-` (so
/// `X_Portcullis_User` would pose as `X-Portcullis-User`): all of them, as nginx does by
/// default, or with `underscores` only those that would read as a header Portcullis sets or
/// rules on. (`X-Forwarded-For`, `-Proto` and `-Host` are set by [`set_forwarded`].)
pub fn remove_misleading(headers: &mut HeaderMap, peer_trusted: bool, underscores: bool) {
    let misleading = |name: &HeaderName| {
        let n = name.as_str();
        if n.contains('_') {
            return !underscores || protected_as_dashed(n);
        }
        match told_by(n) {
            Told::Nothing => false,
            Told::Override => true,
            Told::ProxyReport => !peer_trusted,
        }
    };
    remove_where(headers, misleading);
}

/// Removes every header whose name `matches` picks. Most requests carry none: one pass over
/// their few names settles that without an allocation.
pub(crate) fn remove_where(headers: &mut HeaderMap, matches: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&matches) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| matches(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// An address as a header value. A connection's requests all come from one address: the last
/// one is kept per thread, so it is formatted once per connection rather than per request.
fn address_value(ip: IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, value)) = last.as_ref()
            && *cached == ip
        {
            return value.clone();
        }
        let value = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        *last = Some((ip, value.clone()));
        value
    })
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` for the backend. A client's own values are kept
/// (and appended to) only when `peer_trusted`; otherwise they are replaced, so a client cannot
/// pose as another address.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    peer_trusted: bool,
    proto: &str,
    host: Option<&HeaderValue>,
) {
    let chain = if peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        String::new()
    };
    let value = if chain.is_empty() {
        None
    } else {
        Some(format!("{chain}, {client}"))
    };
    let keep_proto_host = peer_trusted
        && headers.contains_key(&X_FORWARDED_PROTO)
        && headers.contains_key(&X_FORWARDED_HOST);
    // `insert` replaces every value a client sent under the name.
    let value = match value {
        None => Some(address_value(client)),
        Some(v) => HeaderValue::from_str(&v).ok(),
    };
    if let Some(v) = value {
        headers.insert(X_FORWARDED_FOR, v);
    } else {
        headers.remove(X_FORWARDED_FOR);
    }
    if !keep_proto_host {
        let proto = match proto {
            "https" => HeaderValue::from_static("https"),
            _ => HeaderValue::from_static("http"),
        };
        headers.insert(X_FORWARDED_PROTO, proto);
        match host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST, h.clone());
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misleading_client_headers_are_removed() {
        // (header name, kept from an untrusted peer, from a trusted proxy, from an untrusted
        // peer with underscores allowed)
        let table: &[(&str, bool, bool, bool)] = &[
            ("accept", true, true, true),
            ("x-custom", true, true, true),
            ("x-api-key", true, true, true),
            ("x-http-method-override", false, false, false),
            ("x-method-override", false, false, false),
            ("x-original-url", false, false, false),
            ("x-rewrite-url", false, false, false),
            ("forwarded", false, true, false),
            ("x-real-ip", false, true, false),
            ("true-client-ip", false, true, false),
            ("x-cluster-client-ip", false, true, false),
            ("cf-connecting-ip", false, true, false),
            ("fastly-client-ip", false, true, false),
            ("x-forwarded", false, true, false),
            ("forwarded-for", false, true, false),
            ("x-original-forwarded-for", false, true, false),
            ("x-proxyuser-ip", false, true, false),
            ("x-forwarded-port", false, true, false),
            ("x-forwarded-prefix", false, true, false),
            ("x-original-uri", false, true, false),
            // Other fronts' reports of the caller and its certificate.
            ("x-forwarded-user", false, true, false),
            ("x-forwarded-email", false, true, false),
            ("x-forwarded-groups", false, true, false),
            ("x-forwarded-access-token", false, true, false),
            ("x-forwarded-client-cert", false, true, false),
            ("x-auth-request-user", false, true, false),
            ("x-auth-request-email", false, true, false),
            ("remote-user", false, true, false),
            ("remote-groups", false, true, false),
            ("x-remote-user", false, true, false),
            ("x-remote-group", false, true, false),
            ("x-remote-extra-scopes", false, true, false),
            ("x-webauth-user", false, true, false),
            ("x-ssl-client-verify", false, true, false),
            ("x-ssl-client-s-dn", false, true, false),
            ("ssl-client-cert", false, true, false),
            ("x-client-cert", false, true, false),
            ("x-amzn-oidc-identity", false, true, false),
            ("x-goog-authenticated-user-email", false, true, false),
            ("x-goog-iap-jwt-assertion", false, true, false),
            ("cf-access-authenticated-user-email", false, true, false),
            ("x-authentik-username", false, true, false),
            ("x-pomerium-jwt-assertion", false, true, false),
            ("x-vouch-user", false, true, false),
            ("x-ms-client-principal-name", false, true, false),
            ("x-consumer-username", false, true, false),
            ("x-userinfo", false, true, false),
            // A credential some APIs take from their clients is not a report.
            ("x-auth-token", true, true, true),
            // Names that only look alike pass.
            ("x-forwardedfor", true, true, true),
            ("remote-users", true, true, true),
            ("x-remote", true, true, true),
            ("cf-ray", true, true, true),
            // set_forwarded's business.
            ("x-forwarded-proto", true, true, true),
            ("x-forwarded-host", true, true, true),
            ("x-forwarded-for", true, true, true),
            // Underscores: gone by default; allowed, gone only where they read as ours.
            ("x_portcullis_user", false, false, false),
            ("x_toolforge_user", false, false, false),
            ("x_api_key", false, false, false),
            ("x_forwarded_for", false, false, false),
            ("x_http_method_override", false, false, false),
            ("transfer_encoding", false, false, false),
            ("x_custom_thing", false, false, true),
        ];
        for &(name, untrusted, trusted, allowed) in table {
            for (peer_trusted, underscores, kept) in [
                (false, false, untrusted),
                (true, false, trusted),
                (false, true, allowed),
            ] {
                let mut h = HeaderMap::new();
                h.insert("accept", HeaderValue::from_static("*/*"));
                h.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static("v"),
                );
                remove_misleading(&mut h, peer_trusted, underscores);
                assert_eq!(
                    h.contains_key(name),
                    kept,
                    "{name} trusted={peer_trusted} underscores={underscores}"
                );
                assert!(h.contains_key("accept"));
            }
        }
    }

    #[test]
    fn hop_by_hop_names_agree() {
        for (name, text) in HOP_BY_HOP.iter().zip(HOP_BY_HOP_NAMES) {
            assert_eq!(name.as_str(), text);
        }
    }

    #[test]
    fn hop_by_hop_names_are_known_in_any_case_and_no_others() {
        for name in HOP_BY_HOP_NAMES {
            assert!(is_hop_by_hop_name(name), "{name}");
            assert!(is_hop_by_hop_name(&name.to_ascii_uppercase()), "{name}");
        }
        for name in [
            "",
            "t",
            "tea",
            "date",
            "content-length",
            "x-request-id",
            "upgrades",
            "keep-alivE2",
            "proxy-connections",
            "transfer-encodinG ",
            "connectio",
        ] {
            assert!(!is_hop_by_hop_name(name), "{name}");
        }
        // The header-name form agrees with the text form, on every name and on names of the
        // same lengths.
        for name in HOP_BY_HOP_NAMES.into_iter().chain([
            "x-portcullis-org",
            "x-portcullis-user",
            "x-portcullis-groups",
            "content-type",
            "keep-alivf",
        ]) {
            let header = HeaderName::from_static(name);
            assert_eq!(is_hop_by_hop(&header), is_hop_by_hop_name(name), "{name}");
        }
    }

    #[test]
    fn date_is_an_http_date() {
        let d = http_date();
        let text = d.to_str().unwrap();
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn cookie_fields_are_joined_in_order() {
        let keep_all = |_: &[u8]| false;
        let mut h = HeaderMap::new();
        rewrite_cookies(&mut h, keep_all);
        assert!(!h.contains_key("cookie"));
        h.append("cookie", "a=1".parse().unwrap());
        rewrite_cookies(&mut h, keep_all);
        assert_eq!(h["cookie"], "a=1");
        h.append("cookie", "b=2; c=3".parse().unwrap());
        h.append("cookie", "d=4".parse().unwrap());
        rewrite_cookies(&mut h, keep_all);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3; d=4"]);
    }

    #[test]
    fn forwarded_for_is_appended_only_after_a_trusted_proxy() {
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let host = HeaderValue::from_static("portal.example");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("x-forwarded-host", "evil.example".parse().unwrap());
        set_forwarded(&mut h, client, false, "https", Some(&host));
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(h["x-forwarded-host"], "portal.example");
        assert_eq!(h["x-forwarded-proto"], "https");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        set_forwarded(&mut h, client, true, "http", Some(&host));
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.7");
    }
}
