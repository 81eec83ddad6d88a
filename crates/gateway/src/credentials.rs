//! The caller's Portcullis credential stays with Portcullis. A backend learns who is calling
//! from the identity headers and the signed assertion; the API key, bearer token or session
//! cookie that proved it would let the backend (or whoever reads its logs) act as the caller
//! on every other route, so they are removed from a forwarded request unless the backend is
//! configured to receive them (`pass_credentials`). The other way, a backend never sets
//! Portcullis's own cookies: a backend on the same origin that could would choose the session
//! of everyone who visits it (session fixation).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::headers::{cookie_name, rewrite_cookies};

/// The session cookie Portcullis sets at sign-in and reads as a credential.
pub const SESSION_COOKIE: &str = "sid";
/// The cookie of the login form's CSRF token.
pub const CSRF_COOKIE: &str = "pcl_csrf";
/// The cookie of a browser session's refresh token.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// Every cookie Portcullis sets; no backend may set one of them.
pub const PORTCULLIS_COOKIES: [&str; 3] = [SESSION_COOKIE, CSRF_COOKIE, REFRESH_COOKIE];

/// The header that carries an API key.
pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Removes the credentials Portcullis reads from a request bound for a backend: `X-API-Key`,
/// `Authorization` when it carries a bearer token (another scheme is the backend's own and
/// stays), and Portcullis's cookies (other cookies stay, in their order, as one header). The
/// refresh token's cookie is scoped to `/refreshtoken`, but a browser also sends it to any
/// path below that a route may forward; it mints sessions, so it goes too.
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(API_KEY);
    if headers.get_all(header::AUTHORIZATION).iter().any(is_bearer) {
        headers.remove(header::AUTHORIZATION);
    }
    rewrite_cookies(headers, is_portcullis_cookie);
}

/// Whether a cookie name is one of [`PORTCULLIS_COOKIES`] (names are exact, as browsers
/// compare them).
fn is_portcullis_cookie(name: &[u8]) -> bool {
    PORTCULLIS_COOKIES.iter().any(|c| c.as_bytes() == name)
}

/// Whether a `Set-Cookie` value sets one of [`PORTCULLIS_COOKIES`]. A nameless cookie
/// (`=sid=x`) counts by its value: browsers store it with an empty name and send it back as
/// the value alone (`Cookie: sid=x`, RFC 6265bis §5.6), which reads as the cookie it spells.
pub fn sets_portcullis_cookie(value: &[u8]) -> bool {
    let pair = value.split(|b| *b == b';').next().unwrap_or_default();
    let name = cookie_name(pair);
    if !name.is_empty() {
        return is_portcullis_cookie(name);
    }
    let spelled = pair.splitn(2, |b| *b == b'=').nth(1).unwrap_or_default();
    is_portcullis_cookie(cookie_name(spelled))
}

/// Removes from a backend's answer every `Set-Cookie` that sets one of Portcullis's cookies;
/// the backend's other cookies stay, in their order.
pub fn drop_portcullis_set_cookies(headers: &mut HeaderMap) {
    if !headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| sets_portcullis_cookie(v.as_bytes()))
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !sets_portcullis_cookie(v.as_bytes()))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

/// Whether an `Authorization` value uses the bearer scheme (any case), as Portcullis reads it.
fn is_bearer(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let scheme = bytes.split(|b| *b == b' ').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"bearer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn all(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn credentials_are_removed_and_everything_else_stays() {
        // (request headers, what reaches the backend under authorization, cookie, x-api-key)
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
            &'static [&'static str],
            bool,
        );
        let table: &[Case] = &[
            (&[("x-api-key", "pcl_secret")], &[], &[], false),
            (&[("authorization", "Bearer pcl_secret")], &[], &[], false),
            (&[("authorization", "bearer eyJa.b.c")], &[], &[], false),
            (&[("authorization", "BEARER x")], &[], &[], false),
            // Another scheme is the backend's business.
            (
                &[("authorization", "Basic YWxpY2U6cHc=")],
                &["Basic YWxpY2U6cHc="],
                &[],
                false,
            ),
            (
                &[("authorization", "Bearerish x")],
                &["Bearerish x"],
                &[],
                false,
            ),
            (&[("cookie", "sid=eyJa.b.c")], &[], &[], false),
            (
                &[("cookie", "theme=dark; sid=eyJa.b.c; lang=en")],
                &[],
                &["theme=dark; lang=en"],
                false,
            ),
            (
                &[
                    ("cookie", "sid=1"),
                    ("cookie", "theme=dark"),
                    ("cookie", " sid =2;a=b"),
                ],
                &[],
                &["theme=dark; a=b"],
                false,
            ),
            // Every Portcullis cookie goes: the refresh token mints sessions, the CSRF
            // token guards Portcullis's own forms.
            (
                &[(
                    "cookie",
                    "refresh_token=r; theme=dark; pcl_csrf=c; sid=s; lang=en",
                )],
                &[],
                &["theme=dark; lang=en"],
                false,
            ),
            // Names are exact: other cookies that merely look alike stay untouched.
            (
                &[("cookie", "sidebar=open; SID=x; xsid=y")],
                &[],
                &["sidebar=open; SID=x; xsid=y"],
                false,
            ),
            (
                &[
                    ("x-api-key", "pcl_a"),
                    ("authorization", "Bearer pcl_b"),
                    ("cookie", "sid=c"),
                    ("accept", "*/*"),
                ],
                &[],
                &[],
                true,
            ),
        ];
        for (request, authorization, cookie, accept) in table {
            let mut h = map(request);
            strip(&mut h);
            assert!(!h.contains_key("x-api-key"), "{request:?}");
            assert_eq!(all(&h, "authorization"), *authorization, "{request:?}");
            assert_eq!(all(&h, "cookie"), *cookie, "{request:?}");
            assert_eq!(h.contains_key("accept"), *accept, "{request:?}");
        }
    }

    #[test]
    fn a_backend_cannot_set_portcullis_cookies() {
        let mut h = map(&[
            ("set-cookie", "theme=dark; Path=/"),
            ("set-cookie", "sid=chosen-by-the-backend; Path=/; HttpOnly"),
            ("set-cookie", " pcl_csrf =x"),
            ("set-cookie", "refresh_token=y; Path=/oauth"),
            ("set-cookie", "sidebar=open"),
            ("set-cookie", "SID=other-case"),
            // Nameless cookies come back as their value alone (`sid=fixed`).
            ("set-cookie", "=sid=fixed; Path=/app"),
            ("set-cookie", " = refresh_token=z"),
            ("set-cookie", "=sidebar=closed"),
            ("set-cookie", "=plain"),
            ("content-type", "text/html"),
        ]);
        drop_portcullis_set_cookies(&mut h);
        assert_eq!(
            all(&h, "set-cookie"),
            [
                "theme=dark; Path=/",
                "sidebar=open",
                "SID=other-case",
                "=sidebar=closed",
                "=plain"
            ]
        );
        assert!(h.contains_key("content-type"));
        let mut none = map(&[("set-cookie", "a=1"), ("set-cookie", "b=2")]);
        drop_portcullis_set_cookies(&mut none);
        assert_eq!(all(&none, "set-cookie"), ["a=1", "b=2"]);
    }

    #[test]
    fn a_cookie_that_is_not_text_keeps_its_other_pairs_byte_for_byte() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_bytes(b"sid=x; data=\xe2\x9c\x93").unwrap(),
        );
        strip(&mut h);
        assert_eq!(h["cookie"].as_bytes(), b"data=\xe2\x9c\x93");
    }
}
