//! Forward-auth: which request a proxy is asking about. nginx's `auth_request` sends
//! `X-Original-Method` / `X-Original-URI`, Traefik's `forwardAuth` `X-Forwarded-Method` /
//! `-Uri` / `-Host` / `-Proto`; Envoy's `ext_authz` (HTTP service with `path_prefix`) sends the
//! original request itself under the prefix. Those headers are believed only when the caller is
//! a trusted proxy; otherwise the check is made on the request as it arrived.

use http::{HeaderMap, Method};

/// The proxy flavour a forward-auth call came from (it decides how a browser is sent to login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// nginx `auth_request`: it cannot pass a redirect on, so a 401 carries the login URL.
    Nginx,
    /// Traefik `forwardAuth`: passes the answer (a 302) to the client.
    Traefik,
    /// Envoy `ext_authz` or a direct call: the request itself, minus the prefix.
    Direct,
}

/// The request a forward-auth call asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    /// Method.
    pub method: String,
    /// Path and query, as the client sent them.
    pub uri: String,
    /// Where it came from.
    pub flavour: Flavour,
    /// The host the client asked for, where the proxy names it in a header of its own
    /// (Traefik's `X-Forwarded-Host`); otherwise the call's own `Host` is the client's.
    pub host: Option<String>,
}

/// Why a forward-auth call does not say unambiguously which request it is about. A proxy
/// sends one kind of header, always, once: anything else means a client added some, and
/// guessing which to believe would let the client choose what is checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardAuthError {
    /// The request is named in two ways (two proxies' headers, or headers and the path).
    #[error(
        "the forward-auth call names its request twice ({0} and {1}); a proxy sends only its own"
    )]
    Conflict(&'static str, &'static str),
    /// A header that names the request is repeated.
    #[error("the forward-auth call carries {0} more than once")]
    Repeated(&'static str),
    /// One of the URI and method headers is missing (without the proxy's method, a client
    /// could supply it).
    #[error("the forward-auth call has {present} without {missing}; the proxy must send both")]
    Incomplete {
        /// The header present.
        present: &'static str,
        /// The header missing.
        missing: &'static str,
    },
}

/// The one value of a header; none when absent or empty, an error when repeated. Bytes
/// outside ASCII (nginx copies a raw request target into `X-Original-URI`) are
/// percent-encoded rather than making the header unreadable.
fn single(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, ForwardAuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ForwardAuthError::Repeated(name));
    }
    let mut text = String::with_capacity(value.len());
    for &b in value.as_bytes().trim_ascii() {
        if b.is_ascii() {
            text.push(char::from(b));
        } else {
            text.push_str(&format!("%{b:02X}"));
        }
    }
    Ok((!text.is_empty()).then_some(text))
}

/// nginx's and Traefik's headers naming the original request.
const NGINX_URI: &str = "x-original-uri";
const NGINX_METHOD: &str = "x-original-method";
const TRAEFIK_URI: &str = "x-forwarded-uri";
const TRAEFIK_METHOD: &str = "x-forwarded-method";
const TRAEFIK_HOST: &str = "x-forwarded-host";

/// The original request of a forward-auth call to `own_path` (e.g. `/auth/api/jobs?x=1`) under
/// `prefix` (`/auth`). From a trusted proxy exactly one way of naming it must be present:
/// nginx's headers, Traefik's, or (Envoy) the path under the prefix; a call that mixes them, or
/// repeats one, or sends a URI without its method, is refused. From anyone else the headers
/// are ignored and the call itself is the request checked.
pub fn original_request(
    method: &Method,
    own_path_and_query: &str,
    prefix: &str,
    headers: &HeaderMap,
    peer_trusted: bool,
) -> Result<OriginalRequest, ForwardAuthError> {
    let rest = own_path_and_query
        .strip_prefix(prefix)
        .unwrap_or(own_path_and_query);
    // Envoy's form: a path under the prefix (`/auth` and `/auth?x` name the root).
    let in_path = !(rest.is_empty() || rest.starts_with('?'));
    let direct = || OriginalRequest {
        method: method.as_str().to_owned(),
        uri: if in_path {
            rest.to_owned()
        } else {
            format!("/{rest}")
        },
        flavour: Flavour::Direct,
        host: None,
    };
    if !peer_trusted {
        return Ok(direct());
    }
    let named = |uri: &'static str, method: &'static str| {
        headers.contains_key(uri) || headers.contains_key(method)
    };
    let nginx = named(NGINX_URI, NGINX_METHOD);
    let traefik = named(TRAEFIK_URI, TRAEFIK_METHOD);
    match (nginx, traefik, in_path) {
        (true, true, _) => Err(ForwardAuthError::Conflict(NGINX_URI, TRAEFIK_URI)),
        (true, _, true) => Err(ForwardAuthError::Conflict(NGINX_URI, "the path")),
        (_, true, true) => Err(ForwardAuthError::Conflict(TRAEFIK_URI, "the path")),
        (true, false, false) => from_headers(headers, NGINX_URI, NGINX_METHOD, Flavour::Nginx),
        (false, true, false) => {
            let mut original =
                from_headers(headers, TRAEFIK_URI, TRAEFIK_METHOD, Flavour::Traefik)?;
            original.host = single(headers, TRAEFIK_HOST)?;
            Ok(original)
        }
        (false, false, _) => Ok(direct()),
    }
}

fn from_headers(
    headers: &HeaderMap,
    uri_name: &'static str,
    method_name: &'static str,
    flavour: Flavour,
) -> Result<OriginalRequest, ForwardAuthError> {
    let uri = single(headers, uri_name)?;
    let method = single(headers, method_name)?;
    match (uri, method) {
        (Some(uri), Some(method)) => Ok(OriginalRequest {
            method: method.to_ascii_uppercase(),
            uri,
            flavour,
            host: None,
        }),
        (Some(_), None) => Err(ForwardAuthError::Incomplete {
            present: uri_name,
            missing: method_name,
        }),
        (None, _) => Err(ForwardAuthError::Incomplete {
            present: method_name,
            missing: uri_name,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn ok(
        method: &str,
        uri: &str,
        flavour: Flavour,
        host: Option<&str>,
    ) -> Result<OriginalRequest, ForwardAuthError> {
        Ok(OriginalRequest {
            method: method.into(),
            uri: uri.into(),
            flavour,
            host: host.map(str::to_owned),
        })
    }

    #[test]
    fn the_request_checked_is_named_one_way_only() {
        use ForwardAuthError::*;
        type Case = (
            &'static str,
            &'static [(&'static str, &'static [u8])],
            bool,
            Result<OriginalRequest, ForwardAuthError>,
        );
        let nginx: &[(&str, &[u8])] = &[
            ("x-original-uri", b"/api/jobs?x=1"),
            ("x-original-method", b"post"),
        ];
        let traefik: &[(&str, &[u8])] = &[
            ("x-forwarded-uri", b"/builds/1"),
            ("x-forwarded-method", b"DELETE"),
            ("x-forwarded-host", b"portal.example"),
        ];
        // (own path, headers, peer trusted, what is checked)
        let table: &[Case] = &[
            (
                "/auth",
                nginx,
                true,
                ok("POST", "/api/jobs?x=1", Flavour::Nginx, None),
            ),
            (
                "/auth",
                traefik,
                true,
                ok(
                    "DELETE",
                    "/builds/1",
                    Flavour::Traefik,
                    Some("portal.example"),
                ),
            ),
            // Envoy: the original request under the prefix.
            (
                "/auth/api/jobs/7?dry=1",
                &[],
                true,
                ok("PUT", "/api/jobs/7?dry=1", Flavour::Direct, None),
            ),
            (
                "/auth?x=1",
                &[],
                true,
                ok("PUT", "/?x=1", Flavour::Direct, None),
            ),
            // From an untrusted address the headers are ignored: the call itself is checked.
            ("/auth", nginx, false, ok("PUT", "/", Flavour::Direct, None)),
            (
                "/auth/x",
                traefik,
                false,
                ok("PUT", "/x", Flavour::Direct, None),
            ),
            // A client behind Traefik adds nginx's header (Traefik passes client headers on),
            // or one behind nginx adds Traefik's: refused, not guessed.
            (
                "/auth",
                &[
                    ("x-forwarded-uri", b"/admin/x"),
                    ("x-forwarded-method", b"GET"),
                    ("x-original-uri", b"/public/x"),
                ],
                true,
                Err(Conflict("x-original-uri", "x-forwarded-uri")),
            ),
            (
                "/auth",
                &[
                    ("x-original-uri", b"/admin/x"),
                    ("x-original-method", b"GET"),
                    ("x-forwarded-method", b"GET"),
                ],
                true,
                Err(Conflict("x-original-uri", "x-forwarded-uri")),
            ),
            // Envoy passing a client's header on.
            (
                "/auth/admin/x",
                &[
                    ("x-original-uri", b"/public/x"),
                    ("x-original-method", b"GET"),
                ],
                true,
                Err(Conflict("x-original-uri", "the path")),
            ),
            (
                "/auth/admin/x",
                &[("x-forwarded-uri", b"/public/x")],
                true,
                Err(Conflict("x-forwarded-uri", "the path")),
            ),
            // Repeated: the proxy's value and a client's.
            (
                "/auth",
                &[
                    ("x-original-uri", b"/public/x"),
                    ("x-original-uri", b"/admin/x"),
                    ("x-original-method", b"GET"),
                ],
                true,
                Err(Repeated("x-original-uri")),
            ),
            (
                "/auth",
                &[
                    ("x-forwarded-uri", b"/x"),
                    ("x-forwarded-method", b"GET"),
                    ("x-forwarded-host", b"a"),
                    ("x-forwarded-host", b"b"),
                ],
                true,
                Err(Repeated("x-forwarded-host")),
            ),
            // Without the proxy's method a client could name one.
            (
                "/auth",
                &[("x-original-uri", b"/admin/x")],
                true,
                Err(Incomplete {
                    present: "x-original-uri",
                    missing: "x-original-method",
                }),
            ),
            (
                "/auth",
                &[("x-forwarded-method", b"GET")],
                true,
                Err(Incomplete {
                    present: "x-forwarded-method",
                    missing: "x-forwarded-uri",
                }),
            ),
            // nginx copies a raw target: bytes outside ASCII are encoded, not dropped.
            (
                "/auth",
                &[
                    ("x-original-uri", b"/admin/\xC3\xA9"),
                    ("x-original-method", b"DELETE"),
                ],
                true,
                ok("DELETE", "/admin/%C3%A9", Flavour::Nginx, None),
            ),
        ];
        for (own, pairs, trusted, expected) in table {
            let got = original_request(&Method::PUT, own, "/auth", &headers(pairs), *trusted);
            assert_eq!(&got, expected, "{own} {pairs:?} trusted={trusted}");
        }
    }
}
