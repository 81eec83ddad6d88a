//! A finished HTTP answer as the suites see it: status, headers, body text, and assertions on
//! them. Shared by the suites (each includes this file); not every suite uses every helper.
#![allow(dead_code)]

use reqwest::header::HeaderMap;
use serde_json::Value;

/// A finished response: status, headers and body text.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// Reads a response whole.
    pub async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("a readable body");
        Self {
            status,
            headers,
            text,
        }
    }

    /// The body as JSON (panics with the body when it is not JSON).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status, self.text
            )
        })
    }

    /// Asserts the status and returns the body as JSON.
    #[track_caller]
    pub fn json_with(&self, status: u16) -> Value {
        self.expect(status);
        self.json()
    }

    /// Asserts the status (showing the headers and body when it differs).
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "expected status {status}, got {} with {:?} and body {}",
            self.status, self.headers, self.text
        );
        self
    }

    /// Asserts an error answer `{"error":{"code","message"}}` with this status and code, and
    /// returns the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        let body = self.json_with(status);
        assert_eq!(
            body["error"]["code"], code,
            "error code of a {status} answer: {body}"
        );
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("an error message in {body}"))
            .to_owned();
        assert!(!message.is_empty(), "an empty error message in {body}");
        message
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
