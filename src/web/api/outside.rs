//! The JSON routes of work done outside hitl: attempts handed in, retries and the bounded
//! wait on a task (claims are in `claims`) (`CONTRACT.md`, "Work done outside hitl", "Waiting for a change").

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::super::{
    error::{ApiError, ErrorBody, Problem},
    extract::{JsonBody, parse_id},
    park::Parked,
};
use crate::{
    auth::Actor,
    input::{AttemptPost, MAX_WAIT_SECS, seconds, statuses},
    model::task::{Task, TaskId, TaskStatus},
    service::Hitl,
};

/// An attempt made outside hitl, handed in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptBody {
    /// The attempt this is: the one the task waits for.
    #[schema(required = true, nullable = false, minimum = 1)]
    attempt: Option<i64>,
    /// Its output, 1 byte to 64 KiB, not blank.
    #[schema(required = true, nullable = false, pattern = r"\S")]
    output: Option<String>,
    /// The claim's token, for a worker holding one.
    claim: Option<String>,
}

/// Hand in an attempt
///
/// For an outside task waiting for exactly this attempt (`pending`, or `running` under the
/// claim given): the task then waits for review of it.
#[utoipa::path(
    post,
    path = "/tasks/{id}/attempts",
    tag = "workers",
    operation_id = "post_attempt",
    params(("id" = TaskId, Path, description = "The task's id")),
    request_body = AttemptBody,
    responses(
        (status = 200, description = "The task, waiting for review of the attempt.",
            body = Task),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 403, description = "`forbidden`: only the task's submitter, or the worker \
            holding its claim, hands in its attempts.", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 409, description = "`conflict`: the task is not outside, or does not wait for \
            this attempt, or another worker holds it; `claim_lost`: the claim's lease ran out \
            or the task moved on.", body = ErrorBody),
        (status = 413, description = "`too_large`: the output is over the limit.",
            body = ErrorBody),
        (status = 422, description = "`invalid_field`: a missing, invalid or unknown field.",
            body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl, body), fields(task_id = %id))]
pub async fn post_attempt(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AttemptBody>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let id = parse_id(&id)?;
    let post = AttemptPost::parse(
        body.attempt,
        body.output.as_deref(),
        body.claim.as_deref(),
        hitl.max_text(),
    )?;
    Ok(Json(hitl.post_attempt(id, post, &actor).await?))
}

/// Retry a failed task
///
/// A task that `failed` because processing failed starts its attempt again (reviewers only
/// under `--auth token`).
#[utoipa::path(
    post,
    path = "/tasks/{id}/retry",
    tag = "tasks",
    operation_id = "retry_task",
    params(("id" = TaskId, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, its attempt started again.", body = Task),
        (status = 403, description = "`forbidden`: only reviewers retry tasks.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 409, description = "`conflict`: the task did not fail in processing.",
            body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl), fields(task_id = %id))]
pub async fn retry(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(hitl.retry(id, &actor).await?))
}

/// `GET /api/tasks/{id}`'s query: a bounded wait.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait up to this many seconds, 0 to 120, for the status to leave `while`.
    #[param(value_type = u64, required = false, minimum = 0, maximum = 120)]
    wait: Option<String>,
    /// The statuses to wait through, comma-separated (default: the status it has now).
    #[serde(rename = "while")]
    #[param(value_type = Vec<TaskStatus>, required = false, style = Form, explode = false)]
    during: Option<String>,
}

/// Read a task, or wait for it to change
///
/// With `?wait=SECONDS&while=STATUS,...` the answer comes as soon as the task's status is not
/// one of `while`, or when `wait` seconds have passed; `Hitl-Wait` says which. A plain read is
/// bounded by the request timeout like every other route; a wait by its own `wait`.
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    tag = "tasks",
    operation_id = "get_task",
    params(("id" = TaskId, Path, description = "The task's id"), WaitQuery),
    responses(
        (status = 200, description = "The task.", body = Task,
            headers(("Hitl-Wait" = String, description = "With `wait`: `changed` when the \
                status left `while`, `timeout` when the wait ran out."))),
        (status = 400, description = "`malformed_body`: `wait` is not a number; \
            `bad_request`: the query string cannot be read.", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `wait` out of range, or an unknown \
            status in `while`.", body = ErrorBody),
        (status = 503, description = "`timeout`: the task could not be read in time.",
            body = ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl, query))]
pub async fn get(
    State(hitl): State<Hitl>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let Query(query) = query.map_err(|e| ApiError(Problem::malformed(e.body_text())))?;
    let during = query
        .during
        .as_deref()
        .map(statuses)
        .transpose()?
        .filter(|list| !list.is_empty());
    let Some(wait) = query
        .wait
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
    else {
        let patience = Duration::from_secs(hitl.limits.request_timeout_secs);
        let task = tokio::time::timeout(patience, Box::pin(hitl.settled(id)))
            .await
            .map_err(|_| {
                ApiError(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The task could not be read in time; try again.",
                ))
            })?
            .ok_or_else(|| ApiError(Problem::not_found()))?;
        return Ok(Json(task).into_response());
    };
    // A whole number too large for any integer is out of range (422), not unreadable (400).
    let digits = wait.strip_prefix('-').unwrap_or(wait);
    let wait: i64 = match wait.parse() {
        Ok(wait) => wait,
        Err(_) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => i64::MAX,
        Err(_) => {
            return Err(ApiError(Problem::malformed(format!(
                "The wait {wait:?} is not a number of seconds (0 to {MAX_WAIT_SECS})."
            ))));
        }
    };
    let wait = seconds("wait", Some(wait), 0, 0..=MAX_WAIT_SECS)?;
    let (task, changed) = match hitl
        .begin_wait(id, Duration::from_secs(wait), during)
        .await?
    {
        Ok(done) => done,
        Err(waiting) => {
            // Waited out by the outermost layer, not here (see `web::park`): the body is put
            // in there, so none is held meanwhile.
            let mut answer = Response::new(axum::body::Body::empty());
            answer.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            answer.extensions_mut().insert(Parked(waiting));
            return Ok(answer);
        }
    };
    let mut answer = Json(task).into_response();
    answer.headers_mut().insert(
        "hitl-wait",
        HeaderValue::from_static(if changed { "changed" } else { "timeout" }),
    );
    Ok(answer)
}
