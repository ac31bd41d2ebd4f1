//! Extractors that turn bodies and headers into what handlers want, with our own errors.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::{ApiError, Problem};
use crate::model::task::TaskId;

/// Was this request made by htmx? Then the answer is a fragment, not a page or a redirect.
#[derive(Clone, Copy, Debug)]
pub struct Htmx(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Htmx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts.headers.get("hx-request").is_some_and(|v| v == "true"),
        ))
    }
}

/// A JSON body, read whatever its `Content-Type` says (curl's `-d` sends a form type), with
/// syntax errors as 400, wrong fields as 422 and an oversized body as 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_problem(rejection.status()))?;
        parse_json(&bytes).map(Self)
    }
}

/// A JSON body that may be left out (empty): then every field takes its default.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_problem(rejection.status()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(Self)
    }
}

/// JSON into `T`, with syntax errors as 400 and wrong, missing or unknown fields as 422.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from a JSON array too (its fields in order); every body here is an
    // object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "The body must be a JSON object, such as {\"input\": \"...\"}, not an array.",
        )));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        ApiError(match error.classify() {
            Category::Data if error.to_string().starts_with("unknown field") => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("The body has a field this route does not take: {error}."),
            ),
            Category::Data => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("A field is missing or has the wrong type: {error}."),
            ),
            _ => Problem::malformed(format!("The body is not valid JSON: {error}.")),
        })
    })
}

/// The problem for a body that could not even be read.
pub fn body_problem(status: StatusCode) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::body_too_large()
    } else {
        Problem::malformed("The request body could not be read.")
    }
}

/// A task id from the path; one that is not even a UUID names no task.
pub fn parse_id(id: &str) -> Result<TaskId, Problem> {
    id.parse().map_err(|_| Problem::not_found())
}
