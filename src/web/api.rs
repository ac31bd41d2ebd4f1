//! The JSON API, as the contract gives it.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody, Problem},
    extract::{JsonBody, parse_id},
};
use crate::{
    auth::Actor,
    input::{DecisionFields, DecisionRequest, attempt_number, extension},
    model::task::{Decision, Task, TaskId},
    service::Hitl,
};

pub mod claims;
pub mod deliveries;
pub mod list;
pub mod outside;
pub mod submit;

/// A task's audit trail
///
/// JSON Lines, oldest first: one `AuditEntry` a line, each holding the hash of the one before.
#[utoipa::path(
    get,
    path = "/tasks/{id}/history",
    tag = "tasks",
    operation_id = "task_history",
    params(("id" = TaskId, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The audit trail: one `AuditEntry` (see the schemas) \
            a line.", content_type = "application/jsonl", body = String),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl))]
pub async fn history(
    State(hitl): State<Hitl>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let id = parse_id(&id)?;
    let task = hitl
        .settled(id)
        .await
        .ok_or_else(|| ApiError(Problem::not_found()))?;
    let mut body = String::with_capacity(task.history.len() * 256);
    for entry in &task.history {
        body.push_str(&entry.to_line());
        body.push('\n');
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/jsonl; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// More time for the open review.
#[derive(Deserialize, ToSchema)]
pub struct DeadlineBody {
    /// The attempt under review (default: the one under review now).
    #[schema(minimum = 1)]
    attempt: Option<i64>,
    /// Seconds to add, up to a year.
    #[schema(required = true, nullable = false, minimum = 1, maximum = 31_536_000)]
    extend_secs: Option<i64>,
}

/// Extend a review's deadline
///
/// Gives the open review `extend_secs` more (reviewers only).
#[utoipa::path(
    post,
    path = "/tasks/{id}/deadline",
    tag = "tasks",
    operation_id = "extend_deadline",
    params(("id" = TaskId, Path, description = "The task's id")),
    request_body = DeadlineBody,
    responses(
        (status = 200, description = "The task, with its later `review_deadline`.", body = Task),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 403, description = "`forbidden`: only reviewers extend deadlines.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 409, description = "`conflict`: no review with a deadline is open for that \
            attempt, or the extension would pass a year.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a missing or out-of-range field.",
            body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl, body), fields(task_id = %id))]
pub async fn extend_deadline(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DeadlineBody>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let id = parse_id(&id)?;
    let attempt = attempt_number(body.attempt)?;
    let secs = extension("extend_secs", body.extend_secs, 1)?;
    Ok(Json(hitl.extend_deadline(id, attempt, secs, &actor).await?))
}

/// A reviewer's decision on the attempt under review.
#[derive(Deserialize, ToSchema)]
pub struct FeedbackBody {
    #[schema(value_type = Decision)]
    decision: String,
    /// The attempt decided on (default: the one under review now); another is 409.
    #[schema(minimum = 1)]
    attempt: Option<i64>,
    /// Required to request changes (`rejected`): the next attempt receives it. Kept as a note
    /// on an approval.
    comment: Option<String>,
    /// An approval's edit of the output: it becomes the `final_result`.
    output: Option<String>,
    /// The SHA-256 (64 hex digits) of the output the reviewer saw: the approval is refused
    /// (409) if the output under review is not that text.
    output_sha256: Option<String>,
}

/// Decide on a task
///
/// Approve, request changes (`rejected`, with a comment) or reject for good
/// (`rejected_final`). Accepted only while the task is `waiting_for_review`, for the attempt
/// under review; of two racing decisions exactly one wins.
#[utoipa::path(
    post,
    path = "/tasks/{id}/feedback",
    tag = "tasks",
    operation_id = "decide",
    params(("id" = TaskId, Path, description = "The task's id")),
    request_body = FeedbackBody,
    responses(
        (status = 200, description = "The task, after the decision took effect.", body = Task),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 403, description = "`forbidden`: only reviewers decide, and not on a task \
            they submitted (unless `--allow-self-review`).", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 409, description = "`conflict`: the task is not waiting for review of that \
            attempt, or its output is not the one reviewed; nothing changed.", body = ErrorBody),
        (status = 413, description = "`too_large`: the comment or edit is over the limit.",
            body = ErrorBody),
        (status = 422, description = "`invalid_field`: an unknown decision, a request for \
            changes without a comment, an edit without approval, a bad attempt or hash.",
            body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl, body), fields(task_id = %id))]
pub async fn feedback(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FeedbackBody>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let id = parse_id(&id)?;
    let request = DecisionRequest::parse(DecisionFields {
        decision: Some(&body.decision),
        attempt: body.attempt,
        comment: body.comment.as_deref(),
        output: body.output.as_deref(),
        output_sha256: body.output_sha256.as_deref(),
    })?
    .within(hitl.max_text())?;
    Ok(Json(hitl.decide(id, request, &actor).await?))
}

/// Cancel a task
///
/// Any task that has not ended; a submitter only their own.
#[utoipa::path(
    post,
    path = "/tasks/{id}/cancel",
    tag = "tasks",
    operation_id = "cancel_task",
    params(("id" = TaskId, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, cancelled.", body = Task),
        (status = 403, description = "`forbidden`: submitters cancel only their own tasks.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 409, description = "`conflict`: the task has already ended.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl), fields(task_id = %id))]
pub async fn cancel(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(hitl.cancel(id, &actor).await?))
}

/// `GET /healthz`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    status: &'static str,
    /// How many tasks this instance holds in memory.
    tasks: usize,
}

/// Liveness
///
/// 200 while the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Health))
)]
pub async fn healthz(State(hitl): State<Hitl>) -> Json<Health> {
    Json(Health {
        status: "ok",
        tasks: hitl.registry.len(),
    })
}

/// `GET /readyz`'s answer while ready.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    status: &'static str,
}

/// Readiness
///
/// 200 while the service can accept changes: the store answers and its last write succeeded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, description = "`store_unavailable`: not ready, and why.",
            body = ErrorBody),
    )
)]
pub async fn readyz(State(hitl): State<Hitl>) -> axum::response::Response {
    match hitl.ready().await {
        Ok(()) => Json(Ready { status: "ready" }).into_response(),
        Err(message) => ApiError(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("Not ready: {message}."),
        ))
        .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(hitl): State<Hitl>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(hitl.registry.count_by_status()),
    )
}

pub async fn not_found() -> ApiError {
    ApiError(Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such API route; see the README for the routes.",
    ))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take that method; see the README for the routes.",
    ))
}
