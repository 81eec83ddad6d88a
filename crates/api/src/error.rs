//! The one place where errors of every crate become HTTP answers:
//! `{"error":{"code":"…","message":"…"}}` with the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_authn::AuthnError;
use portcullis_gateway::GatewayError;
use portcullis_model::ModelError;
use portcullis_store::StoreError;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a wrong type, a missing or unknown field, a bad query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed input that breaks a rule (a name pattern, a bound).
    #[error(transparent)]
    Invalid(#[from] ModelError),
    /// No credential, or one that is not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there (or nothing the caller may know of).
    #[error("{0}")]
    NotFound(String),
    /// Duplicate or structurally impossible change.
    #[error("{0}")]
    Conflict(String),
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A request head (request line and headers) over the configured limit.
    #[error("{0}")]
    HeadTooLarge(String),
    /// A request target longer than a URI may be here.
    #[error("{0}")]
    UriTooLong(String),
    /// The method is not served on this path.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The client stopped sending its request.
    #[error("{0}")]
    RequestTimeout(String),
    /// An `Expect` other than `100-continue`, which no hop here can meet.
    #[error("{0}")]
    ExpectationFailed(String),
    /// A transfer coding other than chunked, which would reach a backend decoded wrongly.
    #[error("{0}")]
    NotImplemented(String),
    /// A login step refused; `code` tells API clients which (e.g. `invalid_credentials`).
    #[error("{message}")]
    LoginRefused {
        /// Stable code.
        code: &'static str,
        /// What the user is told.
        message: String,
    },
    /// The session must complete a step first (`password_change_required`,
    /// `mfa_enrollment_required`).
    #[error("{message}")]
    StepRequired {
        /// Stable code.
        code: &'static str,
        /// What to do.
        message: String,
    },
    /// Well-formed input the rules refuse, with its own message (a weak password).
    #[error("{0}")]
    Unprocessable(String),
    /// Too many attempts from this client; try again after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        /// What happened.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The backend could not be reached (gateway).
    #[error("{0}")]
    BadGateway(String),
    /// The backend did not answer in time (gateway).
    #[error("{0}")]
    GatewayTimeout(String),
    /// A dependency (the database) is not available.
    #[error("{0}")]
    Unavailable(String),
    /// The server holds as much as its limits allow; the client may try again in a second.
    #[error("{0}")]
    Overloaded(String),
    /// A bug or an unexpected failure; details go to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::LoginRefused { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::StepRequired { code, .. } => (StatusCode::FORBIDDEN, code),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::HeadTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_fields_too_large",
            ),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::ExpectationFailed(_) => (StatusCode::EXPECTATION_FAILED, "expectation_failed"),
            Self::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Self::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::Conflict(m) => Self::Conflict(m),
            other if other.is_reference_gone() => Self::Conflict(
                "the change names something another change removed at the same time; reload and try again"
                    .into(),
            ),
            other if other.is_unavailable() => {
                Self::Unavailable("the database is not reachable; try again".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AuthnError> for ApiError {
    fn from(e: AuthnError) -> Self {
        match e {
            AuthnError::Store(s) => s.into(),
            AuthnError::KeyTooShort(_) => Self::BadRequest(e.to_string()),
            AuthnError::WeakPassword(m) => Self::Unprocessable(m),
            AuthnError::Randomness(_)
            | AuthnError::SecretKey(_)
            | AuthnError::Totp(_)
            | AuthnError::Mail(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::TooLarge { .. } => Self::PayloadTooLarge(e.to_string()),
            // The client's own doing: no backend is to blame, and nothing is worth a warning.
            GatewayError::BadRequestBody(_) => Self::BadRequest(e.to_string()),
            GatewayError::BodyStalled { .. } => Self::RequestTimeout(e.to_string()),
            GatewayError::Timeout { .. } | GatewayError::NotTaking { .. } => {
                Self::GatewayTimeout(e.to_string())
            }
            GatewayError::Unreachable { ref detail, .. } => {
                tracing::warn!(error = %detail, "backend unreachable");
                Self::BadGateway(e.to_string())
            }
            GatewayError::UnknownBackend(_) | GatewayError::BadBackend { .. } => {
                Self::BadGateway(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; the server log has the details".to_owned()
            }
            Self::Invalid(e) => format!("{}: {}", e.field, e.message),
            other => other.to_string(),
        };
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        let mut response = (status, Json(body)).into_response();
        if let Self::TooManyRequests { retry_after, .. } = &self {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(*retry_after),
            );
        }
        if let Self::Overloaded(_) = &self {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
        }
        response
    }
}

/// The error name the Backstage backend uses for a status.
fn backstage_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 415 | 422 => "InputError",
        401 => "AuthenticationError",
        403 => "NotAllowedError",
        404 => "NotFoundError",
        409 => "ConflictError",
        413 => "PayloadTooLargeError",
        503 => "ServiceUnavailableError",
        _ => "Error",
    }
}

/// Rewrites error answers of the Backstage-compatible routes (`/api/permission/…`,
/// `/api/licensed-users-info/…`) into the reference's shape:
/// `{"error":{"name","message"},"request":{"method","url"},"response":{"statusCode"}}`.
pub async fn backstage_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if !(path.starts_with("/api/permission") || path.starts_with("/api/licensed-users-info")) {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let url = req.uri().to_string();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
        Err(_) => String::new(),
    };
    let body = serde_json::json!({
        "error": { "name": backstage_name(status), "message": message },
        "request": { "method": method, "url": url },
        "response": { "statusCode": status.as_u16() },
    });
    let mut out = (status, Json(body)).into_response();
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}
