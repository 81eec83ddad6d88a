//! Extractors that turn bad input into clear 400s naming the field, instead of axum's defaults.

use axum::extract::rejection::{BytesRejection, FormRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::ApiError;
use portcullis_gateway::BodyStalled;

mod object_only;
use object_only::ObjectOnly;

/// Path parameters of type `T`: a segment that is not valid UTF-8 or not of the type is a JSON
/// 400 naming it, as every other bad input is (axum's own answer is plain text).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "invalid path: {}",
                strip_axum_prefix(&rejection.body_text())
            ))),
        }
    }
}

/// A JSON request body of type `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<ObjectOnly<T>>::from_request(req, state).await {
            Ok(axum::Json(ObjectOnly(value))) => Ok(Self(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// A JSON body that may be left out: none without a `Content-Type`; a body that is sent must be
/// good, with the same clear 400s as [`Body`].
impl<S: Send + Sync, T: DeserializeOwned> axum::extract::OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(format!(
            "invalid request body: {}",
            without_type_names(strip_axum_prefix(&e.body_text()))
        )),
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
            "malformed JSON: {}",
            strip_axum_prefix(&e.body_text())
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        ),
        JsonRejection::BytesRejection(e) => bytes_error(&e),
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// A body read whole as bytes, for a handler that reads it itself: a body that cannot be read
/// is as clear an error as [`Body`]'s.
pub struct RawBody(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        bytes::Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|e| bytes_error(&e))
    }
}

/// Why a body could not be read: too large, stalled (a 408, as the gateway answers), or cut
/// short or badly framed.
fn bytes_error(rejection: &BytesRejection) -> ApiError {
    if let Some(stalled) = portcullis_gateway::proxy::cause::<BodyStalled>(rejection) {
        return ApiError::RequestTimeout(stalled.to_string());
    }
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge("the request body is too large".into());
    }
    ApiError::BadRequest(format!(
        "the request body could not be read: {}",
        std::error::Error::source(rejection)
            .map_or_else(|| rejection.body_text(), |e| e.to_string())
    ))
}

/// A form body (`application/x-www-form-urlencoded`) of type `T`, as the sign-in pages post it:
/// a field missing, repeated or not of its type is a 400 naming it, as a bad JSON body is (axum's
/// own answer is a plain-text 422).
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Self(value)),
            Err(rejection) => Err(form_error(rejection)),
        }
    }
}

fn form_error(rejection: FormRejection) -> ApiError {
    match &rejection {
        FormRejection::FailedToDeserializeForm(_)
        | FormRejection::FailedToDeserializeFormBody(_) => ApiError::BadRequest(format!(
            "invalid form: {}",
            strip_axum_prefix(&rejection.body_text())
        )),
        FormRejection::InvalidFormContentType(_) => ApiError::UnsupportedMediaType(
            "send the form with Content-Type: application/x-www-form-urlencoded".into(),
        ),
        FormRejection::BytesRejection(e) => bytes_error(e),
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// serde names the Rust type it expected (`expected struct CreateOrg`, `... with 2 elements`);
/// a client knows it as a JSON object.
fn without_type_names(message: &str) -> String {
    const EXPECTED: &str = "expected struct ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(EXPECTED) {
        out.push_str(&rest[..at]);
        out.push_str("expected a JSON object");
        rest = rest[at + EXPECTED.len()..]
            .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
        if let Some(after) = rest.strip_prefix(" with ")
            && let Some(end) = after.find(" element")
        {
            rest = after[end + " element".len()..].trim_start_matches('s');
        }
    }
    out.push_str(rest);
    out
}

/// axum prefixes its messages with a sentence about deserializing; the field path that
/// follows it is what a user needs.
fn strip_axum_prefix(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}

/// Query parameters of type `T`.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::BadRequest(format!(
                    "invalid query parameter: {}",
                    strip_axum_prefix(&e.body_text())
                )))
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_json_types_not_rust_ones() {
        for (serde, client) in [
            (
                "invalid type: sequence, expected struct CreateOrg at line 1 column 1",
                "invalid type: sequence, expected a JSON object at line 1 column 1",
            ),
            (
                "settings: invalid length 0, expected struct Lockout with 2 elements",
                "settings: invalid length 0, expected a JSON object",
            ),
            ("missing field `slug`", "missing field `slug`"),
        ] {
            assert_eq!(without_type_names(serde), client);
        }
    }
}
