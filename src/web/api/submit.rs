//! `POST /api/tasks`: a submission, made once under its key.

use axum::{
    Extension, Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;
use utoipa::ToSchema;

use super::super::{
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};
use crate::{
    auth::Actor,
    input::{InvalidField, NewTask},
    model::task::{Maker, Task, TimeoutPolicy, excerpt},
    service::Hitl,
    submissions::SubmitKey,
};

/// A new task. `input` is required unless `output` is given.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// What the task works on: 1 byte to 64 KiB, not blank. Left out with an `output`, the
    /// output's first line names the task.
    #[schema(pattern = r"\S")]
    input: Option<String>,
    /// How many attempts it may take (default `--max-attempts`).
    #[schema(minimum = 1, maximum = 20)]
    max_attempts: Option<i64>,
    /// Seconds each review may stay open: 0 (no deadline) to a year (default
    /// `--review-timeout`).
    #[schema(minimum = 0, maximum = 31_536_000)]
    review_timeout_secs: Option<i64>,
    /// What happens when a review's deadline passes (default `--review-timeout-policy`).
    #[schema(value_type = Option<TimeoutPolicy>)]
    review_timeout_policy: Option<String>,
    /// Attempt 1's output, made outside hitl (1 byte to 64 KiB, not blank): the task waits
    /// for review of it once the answer is sent.
    #[schema(pattern = r"\S")]
    output: Option<String>,
    #[schema(schema_with = external_only)]
    processor: Option<String>,
    /// Any JSON object, at most 16 KiB as JSON, kept and shown as given.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<serde_json::value::RawValue>>,
    /// An http(s) URL this task's status events are also POSTed to, signed like every webhook;
    /// its host:port must be one `--callback-allow` lists.
    callback_url: Option<String>,
}

/// The only processor a submission may choose, or `null` (hitl's own, as left out).
fn external_only() -> utoipa::openapi::Object {
    use utoipa::openapi::{Type, schema::SchemaType};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "`external`: the task's attempts are made outside hitl (by the agent or workers).",
        ))
        .enum_values(Some([
            serde_json::Value::from(Maker::External.as_str()),
            serde_json::Value::Null,
        ]))
        .build()
}

/// Submit a task
///
/// A task for hitl's own processor, or, with `output` or `"processor": "external"`, one whose
/// attempts are made outside. With `Idempotency-Key`, a retry makes no second task.
#[utoipa::path(
    post,
    path = "/tasks",
    tag = "tasks",
    operation_id = "submit_task",
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
            description = "1 to 255 visible ASCII characters (a UUID, say): a repeat under the \
                same key, by the same person within a day, makes no second task."),
    ),
    request_body = SubmitBody,
    responses(
        (status = 201, description = "The task made (or, repeated under the same \
            `Idempotency-Key`, the one the first request made, as it is now).", body = Task,
            headers(
                ("Location" = String, description = "`/api/tasks/{id}`"),
                ("Idempotent-Replayed" = String,
                    description = "`true` when an earlier request under the same key made it"),
            )),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 413, description = "`too_large`: the input or output is over the limit \
            (64 KiB or `--max-text-bytes`).", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a field is missing, invalid or unknown; \
            `idempotency_key_reused`: the key was used for another submission.", body = ErrorBody),
        (status = 503, description = "`too_many_tasks` (with `Retry-After`): as many unfinished \
            tasks as the service takes; `shutting_down`: the submission was cut short and may \
            have been made; `store_unavailable`, `database_unavailable`: try again shortly.",
            body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn submit(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<impl IntoResponse, ApiError> {
    let key = idempotency_key(&headers)?;
    // An outside task handed in with its output may leave the input out: the output's first
    // line names it then.
    let input = match (&body.input, &body.output) {
        (None, Some(output)) if !output.trim().is_empty() => Some(excerpt(output, 120)),
        (input, _) => input.clone(),
    };
    let new = NewTask::parse(input.as_deref(), body.max_attempts)?
        .with_deadline(
            "review_timeout_secs",
            body.review_timeout_secs,
            body.review_timeout_policy.as_deref(),
        )?
        .outside(
            body.output.as_deref(),
            body.processor.as_deref(),
            body.metadata,
        )?
        .within(hitl.max_text())?
        .calling_back(
            body.callback_url
                .as_deref()
                .map(|url| hitl.webhooks.check_callback(url))
                .transpose()
                .map_err(|why| InvalidField::invalid("callback_url", why))?,
        );
    let (task, repeated) = hitl
        .submit_once(new, &actor, key.map(|key| SubmitKey::Header(key.into())))
        .await?;
    let location = format!("/api/tasks/{}", task.id);
    let mut answer = HeaderMap::new();
    answer.insert(header::LOCATION, location.parse().expect("a path"));
    if repeated {
        answer.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((StatusCode::CREATED, answer, Json(task)))
}

/// The request's `Idempotency-Key`, if it sends one: a retry under the same key gets the task
/// the first request made.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, InvalidField> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let why = match value.to_str() {
        Ok(key) => match SubmitKey::check(key) {
            Ok(key) => return Ok(Some(key)),
            Err(why) => why,
        },
        Err(_) => "must be visible ASCII",
    };
    Err(InvalidField::invalid(
        "Idempotency-Key",
        format!("The Idempotency-Key header {why}."),
    ))
}
