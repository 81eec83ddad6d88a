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
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The original request of a forward-auth call to `own_path` (e.g. `/auth/api/jobs?x=1`) under
/// `prefix` (`/auth`).
pub fn original_request(
    method: &Method,
    own_path_and_query: &str,
    prefix: &str,
    headers: &HeaderMap,
    peer_trusted: bool,
) -> OriginalRequest {
    if peer_trusted {
        if let Some(uri) = header(headers, "x-original-uri") {
            return OriginalRequest {
                method: header(headers, "x-original-method")
                    .unwrap_or("GET")
                    .to_ascii_uppercase(),
                uri: uri.to_owned(),
                flavour: Flavour::Nginx,
            };
        }
        if let Some(uri) = header(headers, "x-forwarded-uri") {
            return OriginalRequest {
                method: header(headers, "x-forwarded-method")
                    .unwrap_or("GET")
                    .to_ascii_uppercase(),
                uri: uri.to_owned(),
                flavour: Flavour::Traefik,
            };
        }
    }
    let rest = own_path_and_query
        .strip_prefix(prefix)
        .unwrap_or(own_path_and_query);
    let uri = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_owned()
    };
    OriginalRequest {
        method: method.as_str().to_owned(),
        uri,
        flavour: Flavour::Direct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn proxy_headers_are_believed_only_from_trusted_peers() {
        let nginx = headers(&[
            ("x-original-uri", "/api/jobs?x=1"),
            ("x-original-method", "post"),
        ]);
        let traefik = headers(&[
            ("x-forwarded-uri", "/builds/1"),
            ("x-forwarded-method", "DELETE"),
        ]);
        let get = Method::GET;
        assert_eq!(
            original_request(&get, "/auth", "/auth", &nginx, true),
            OriginalRequest {
                method: "POST".into(),
                uri: "/api/jobs?x=1".into(),
                flavour: Flavour::Nginx
            }
        );
        assert_eq!(
            original_request(&get, "/auth", "/auth", &traefik, true),
            OriginalRequest {
                method: "DELETE".into(),
                uri: "/builds/1".into(),
                flavour: Flavour::Traefik
            }
        );
        // From an untrusted address the headers are ignored: the request itself is checked.
        assert_eq!(
            original_request(&get, "/auth", "/auth", &nginx, false),
            OriginalRequest {
                method: "GET".into(),
                uri: "/".into(),
                flavour: Flavour::Direct
            }
        );
        // Envoy: the original path under the prefix.
        assert_eq!(
            original_request(
                &Method::PUT,
                "/auth/api/jobs/7?dry=1",
                "/auth",
                &HeaderMap::new(),
                true
            ),
            OriginalRequest {
                method: "PUT".into(),
                uri: "/api/jobs/7?dry=1".into(),
                flavour: Flavour::Direct
            }
        );
    }
}
