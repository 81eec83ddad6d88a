//! Request heads that hyper's server would refuse with a bare status line. The lane hands every
//! head it does not serve itself to hyper; for a head hyper cannot accept, hyper answers a 400,
//! 414 or 431 with an empty body and no request id, and the client learns nothing of what was
//! wrong. So before a handoff the lane reads the head as hyper would (the same parser, the same
//! header count, the same framing rules) and refuses itself, with a JSON answer that says what
//! is wrong. A head hyper accepts is handed over unchanged: these checks are hyper's own, never
//! stricter, with one exception: a head over the configured limit is refused to the byte, as on
//! the lane's own path (hyper only refuses one still incomplete when its buffer is full).

use axum::http::{Method, Uri};

use crate::ApiError;

/// Most header fields hyper's server reads in a request head (its default).
pub(super) const HYPER_MAX_HEADERS: usize = 100;
/// The longest request target hyper (and `Uri`) holds.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// What to do with a head the lane does not serve itself.
pub(super) enum Verdict {
    /// Hyper would refuse it: answer this instead.
    Refuse(ApiError),
    /// Not a whole head yet, and nothing wrong so far: read on.
    Incomplete,
    /// Hyper serves it.
    Hyper,
}

/// Reads `buf` (the bytes of a connection from the start of a request) as hyper's server does,
/// whose read buffer holds a head of at most `max_head` bytes.
pub(super) fn judge(buf: &[u8], max_head: usize) -> Verdict {
    let mut slots = [httparse::EMPTY_HEADER; HYPER_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > max_head => {
            return Verdict::Refuse(super::head_too_large(max_head));
        }
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Verdict::Incomplete,
        Err(e) => return Verdict::Refuse(unparsable(e, req.method.is_none())),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Verdict::Hyper;
    };
    if target.len() > MAX_TARGET {
        return Verdict::Refuse(ApiError::UriTooLong(format!(
            "the request target is longer than {MAX_TARGET} bytes"
        )));
    }
    if Method::from_bytes(method.as_bytes()).is_err() {
        return bad("the request method is not valid");
    }
    if Uri::try_from(target).is_err() {
        return bad("the request target is not a valid URI");
    }
    // hyper keeps a header name's place in 16 bits.
    if req
        .headers
        .iter()
        .any(|h| h.name.len() > usize::from(u16::MAX))
    {
        return Verdict::Refuse(ApiError::HeadTooLarge(
            "a header name is longer than 65535 bytes".into(),
        ));
    }
    framing(req.headers, version == 1)
}

/// Hyper's reading of a request's body framing (RFC 9112 section 6): which `Transfer-Encoding`
/// and `Content-Length` fields it refuses. Order matters as it does to hyper: a length after a
/// transfer coding is ignored, one before it is read.
fn framing(headers: &[httparse::Header<'_>], http_1_1: bool) -> Verdict {
    let mut length = None;
    let mut coded = false;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http_1_1 {
                return bad("an HTTP/1.0 request cannot carry Transfer-Encoding");
            }
            coded = true;
            chunked = ends_with_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") && !coded {
            let Some(n) = content_length(h.value) else {
                return bad("Content-Length must be a non-negative whole number of bytes");
            };
            // Beyond the largest length hyper counts (its answer is a 431).
            if n > u64::MAX - 2 {
                return Verdict::Refuse(ApiError::HeadTooLarge(
                    "Content-Length is larger than any body this server reads".into(),
                ));
            }
            if length.is_some_and(|earlier| earlier != n) {
                return bad("the request carries two different Content-Length values");
            }
            length = Some(n);
        }
    }
    if coded && !chunked {
        return bad("Transfer-Encoding must end with chunked in a request");
    }
    Verdict::Hyper
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked` (a value with bytes outside
/// visible ASCII is not, as to hyper).
fn ends_with_chunked(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// A `Content-Length` value hyper reads: digits only (no sign, no list) that fit 64 bits.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse::<u64>().ok()
}

/// What is wrong with a head the parser stopped reading.
fn unparsable(e: httparse::Error, in_method: bool) -> ApiError {
    let message = match e {
        httparse::Error::TooManyHeaders => {
            return ApiError::HeadTooLarge(format!(
                "the request head has more than {HYPER_MAX_HEADERS} header fields"
            ));
        }
        httparse::Error::Token if in_method => "the request method is not a valid token",
        httparse::Error::Token => {
            "the request target has a character that is not allowed (spaces and control characters must be percent-encoded)"
        }
        httparse::Error::Version => {
            "the request line must be a method, a target and HTTP/1.1 or HTTP/1.0, one space apart (a space in the target must be percent-encoded)"
        }
        httparse::Error::HeaderName => "a header name has a character that is not allowed",
        httparse::Error::HeaderValue => "a header value has a character that is not allowed",
        httparse::Error::NewLine => "a line of the request head does not end with CRLF",
        httparse::Error::Status => "the request line is not valid",
    };
    ApiError::BadRequest(message.into())
}

fn bad(message: &str) -> Verdict {
    Verdict::Refuse(ApiError::BadRequest(message.into()))
}

/// Each of `seeds` mutated `per_seed` times over (one to three bytes replaced, inserted or
/// removed, from the bytes that matter to HTTP/1.1's grammar), the same on every run.
#[cfg(test)]
pub(super) fn mutated_heads(seeds: &[&str], per_seed: usize) -> Vec<Vec<u8>> {
    let alphabet = b" \t\r\n:,;/?#%0aZ\x00\x7f\x80\xff-";
    // xorshift: reproducible without a dependency.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % bound as u64).unwrap_or(0)
    };
    let mut heads = Vec::with_capacity(seeds.len() * per_seed);
    for seed in seeds {
        for _ in 0..per_seed {
            let mut head = seed.as_bytes().to_vec();
            for _ in 0..=next(3) {
                let at = next(head.len());
                let byte = alphabet[next(alphabet.len())];
                match next(3) {
                    0 => head[at] = byte,
                    1 => head.insert(at, byte),
                    _ => {
                        head.remove(at);
                    }
                }
            }
            heads.push(head);
        }
    }
    heads
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head limit no head here reaches (hyper's read buffer in these tests).
    const ANY_HEAD: usize = 256 * 1024;

    /// What `judge` makes of a head: the status it refuses with and words of its message, or
    /// what else it does.
    fn verdict(head: &str) -> String {
        match judge(head.as_bytes(), ANY_HEAD) {
            Verdict::Hyper => "hyper".into(),
            Verdict::Incomplete => "incomplete".into(),
            Verdict::Refuse(e) => {
                let message = e.to_string();
                let status = axum::response::IntoResponse::into_response(e).status();
                format!("{}: {message}", status.as_u16())
            }
        }
    }

    /// Heads and what the lane does with them: `hyper`, `incomplete`, or the status of its
    /// refusal and words of its message.
    fn table() -> Vec<(String, &'static str)> {
        let many = |n: usize| {
            let fields: String = (0..n).map(|i| format!("x-f{i}: v\r\n")).collect();
            format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n")
        };
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(65_534));
        vec![
            // Heads hyper serves (the lane hands them over).
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n".into(), "hyper"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n".into(), "hyper"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), "hyper"),
            // A length after a transfer coding is not read (the coding frames the body).
            ("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n".into(), "hyper"),
            ("GET / HTTP/1.0\r\n\r\n".into(), "hyper"),
            ("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n".into(), "hyper"),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n".into(), "hyper"),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".into(), "hyper"),
            (many(HYPER_MAX_HEADERS - 1), "hyper"),
            // Not whole yet.
            ("GET / HTTP/1.1\r\nHost: a\r\n".into(), "incomplete"),
            (many(80)[..600].to_owned(), "incomplete"),
            // Refused, with what is wrong.
            ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n".into(), "400: one space apart"),
            ("GET /a\u{1} HTTP/1.1\r\nHost: a\r\n\r\n".into(), "400: the request target has a character"),
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n".into(), "400: the request method is not a valid token"),
            ("GET / HTTP/3.1\r\nHost: a\r\n\r\n".into(), "400: HTTP/1.1 or HTTP/1.0"),
            ("GET / HTTP/1.1\r\nHost: a\r\nbad name: v\r\n\r\n".into(), "400: a header name"),
            ("GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n".into(), "400: a header name"),
            ("GET / HTTP/1.1\r\nHost: a\r\nx: \u{7f}\r\n\r\n".into(), "400: a header value"),
            ("GET / HTTP/1.1\r\nHost: a\rx: y\r\n\r\n".into(), "400: a header value"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n".into(), "400: Content-Length must be"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n".into(), "400: Content-Length must be"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n".into(), "400: Content-Length must be"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n".into(), "400: Content-Length must be"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(), "400: two different Content-Length"),
            // A length before a transfer coding is read, and must be valid.
            ("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n".into(), "400: Content-Length must be"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".into(), "400: Transfer-Encoding must end with chunked"),
            ("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(), "400: Transfer-Encoding must end with chunked"),
            // The last field decides, as to hyper.
            ("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n".into(), "400: Transfer-Encoding must end with chunked"),
            ("POST /up HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(), "400: an HTTP/1.0 request cannot carry Transfer-Encoding"),
            (many(HYPER_MAX_HEADERS), "431: the request head has more than 100 header fields"),
            (long_target, "414: the request target is longer than 65534 bytes"),
            (
                format!("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", u64::MAX - 1),
                "431: Content-Length is larger than any body",
            ),
            (
                format!("GET / HTTP/1.1\r\nHost: a\r\n{}: v\r\n\r\n", "n".repeat(65_535)),
                "hyper",
            ),
            (
                format!("GET / HTTP/1.1\r\nHost: a\r\n{}: v\r\n\r\n", "n".repeat(65_536)),
                "431: a header name is longer than 65535 bytes",
            ),
        ]
    }

    #[test]
    fn heads_are_refused_where_hyper_refuses_them_and_only_there() {
        for (head, expected) in table() {
            let got = verdict(&head);
            let matches = match expected.split_once(": ") {
                Some((status, words)) => got.starts_with(status) && got.contains(words),
                None => got == expected,
            };
            assert!(
                matches,
                "{:?}: expected {expected:?}, got {got:?}",
                head.get(..120).unwrap_or(&head)
            );
        }
    }

    /// What hyper's own server answers to `head`: `hyper` where it hands the request to its
    /// service, otherwise the status it refuses with.
    async fn hyper_answer(head: impl AsRef<[u8]>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
        let serving = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .max_buf_size(ANY_HEAD)
                .serve_connection(hyper_util::rt::TokioIo::new(server), service),
        );
        client.write_all(head.as_ref()).await.unwrap();
        let mut answer = vec![0; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut answer))
            .await
            .expect("hyper answers")
            .unwrap();
        serving.abort();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        match answer.get(9..12) {
            Some("200") => "hyper".into(),
            Some(status) => status.into(),
            None => answer,
        }
    }

    /// The table above is hyper's behaviour, not a guess at it: every head the lane would refuse
    /// hyper refuses (bare), and every head the lane hands over hyper serves.
    #[tokio::test]
    async fn the_table_is_what_hyper_itself_does() {
        for (head, expected) in table() {
            if expected == "incomplete" {
                continue;
            }
            let hyper = hyper_answer(&head).await;
            let lane = expected
                .split_once(": ")
                .map_or(expected, |(status, _)| status);
            assert_eq!(hyper, lane, "{:?}", head.get(..120).unwrap_or(&head));
        }
    }

    /// Beyond the table: heads of every kind, mutated, read by the lane and by hyper's server.
    /// Where the lane decides (refuse, or hand over), hyper decides the same.
    #[tokio::test]
    async fn mutated_heads_are_judged_as_hyper_judges_them() {
        let seeds = [
            "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a?b HTTP/1.0\r\nContent-Length: 10\r\nx: y\r\n\r\n",
            "PUT http://a/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ];
        let (mut refused, mut served) = (0, 0);
        for head in mutated_heads(&seeds, 1_000) {
            let lane = match judge(&head, ANY_HEAD) {
                Verdict::Incomplete => continue,
                Verdict::Hyper => {
                    served += 1;
                    "hyper".to_owned()
                }
                Verdict::Refuse(e) => {
                    refused += 1;
                    axum::response::IntoResponse::into_response(e)
                        .status()
                        .as_str()
                        .to_owned()
                }
            };
            let hyper = hyper_answer(&head).await;
            assert_eq!(hyper, lane, "{:?}", String::from_utf8_lossy(&head));
        }
        // Both outcomes must be common, or this proves little.
        assert!(
            refused > 300 && served > 300,
            "{refused} refused, {served} served"
        );
    }
}
