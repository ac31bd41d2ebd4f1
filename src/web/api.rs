//! The JSON API, as the contract gives it.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    error::{ApiError, ErrorBody, Problem},
    extract::{JsonBody, parse_id},
};
use crate::{
    auth::Actor,
    inbox::{Inbox, InboxFields, InboxQuery, PER_PAGE},
    input::{DecisionFields, DecisionRequest, InvalidField, NewTask, attempt_number, extension},
    model::task::{Decision, Maker, Task, TaskId, TaskStatus, TimeoutPolicy, excerpt},
    service::Hitl,
    submissions::SubmitKey,
};

pub mod outside;

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
    metadata: Option<serde_json::Value>,
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
        .within(hitl.max_text())?;
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the tasks in this status.
    #[param(value_type = TaskStatus, required = false)]
    status: Option<String>,
    /// Only the tasks whose input, output, final result, or any attempt's output, edit or
    /// comment contains this (A to Z in either case; at most 1 KiB).
    q: Option<String>,
    /// The page, from 1 (pages past the end are empty).
    #[param(value_type = u64, required = false, minimum = 1)]
    page: Option<String>,
    /// Tasks per page, 1 to 500 (100 when neither `page` nor `per_page` is given, else 50).
    #[param(value_type = u64, required = false, minimum = 1, maximum = 500)]
    per_page: Option<String>,
}

/// One page of `GET /api/tasks`.
// The fields in the order the answer has always had them.
#[derive(Serialize, ToSchema)]
pub struct TaskPage {
    /// Every status with its number of tasks, neither filtered nor searched.
    #[schema(schema_with = status_counts)]
    counts: BTreeMap<&'static str, usize>,
    /// The next page, while there is one.
    #[schema(required = true)]
    next: Option<String>,
    /// The page's tasks, newest first.
    tasks: Vec<Arc<Task>>,
    /// How many tasks match, on every page.
    total: usize,
}

/// An object with every status as a property, each a count.
fn status_counts() -> utoipa::openapi::Object {
    let count = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .build();
    TaskStatus::ALL
        .into_iter()
        .fold(utoipa::openapi::ObjectBuilder::new(), |object, status| {
            object
                .property(status.as_str(), count.clone())
                .required(status.as_str())
        })
        .build()
}

/// The page size of `GET /api/tasks` when it names none (pages of [`PER_PAGE`] when it names a
/// page but no size, as before 0.5).
const API_PER_PAGE: usize = 100;

/// List tasks
///
/// Newest first, filtered by `status` and searched by `q`, 100 at a time unless `page` or
/// `per_page` say otherwise; `next` links the next page while there is one. A page past the
/// end is empty (with the true `total`).
#[utoipa::path(
    get,
    path = "/tasks",
    tag = "tasks",
    operation_id = "list_tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks.", body = TaskPage),
        (status = 400, description = "`bad_request`: the query string cannot be read.",
            body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad `status`, `page` or `per_page`, \
            or a search over 1 KiB.", body = ErrorBody),
    )
)]
pub async fn list(
    State(hitl): State<Hitl>,
    Extension(inbox): Extension<Arc<Inbox>>,
    Query(params): Query<ListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let given = |field: &Option<String>| field.as_deref().is_some_and(|v| !v.trim().is_empty());
    let per_page = if given(&params.page) || given(&params.per_page) {
        PER_PAGE
    } else {
        API_PER_PAGE
    };
    let fields = InboxFields {
        status: params.status.as_deref(),
        q: params.q.as_deref(),
        page: params.page.as_deref(),
        per_page: params.per_page.as_deref(),
    };
    let query = InboxQuery::parse(fields, per_page)?;
    hitl.settle(None).await;
    let page = inbox.query(&hitl.registry, &query);
    let counts = page
        .counts
        .iter()
        .map(|(status, n)| (status.as_str(), n))
        .collect();
    let more = page.query.page.saturating_mul(page.query.per_page) < page.total;
    let next = more.then(|| {
        let mut link = form_urlencoded_pairs(&[
            ("status", params.status.as_deref()),
            ("q", params.q.as_deref()),
        ]);
        link.push_str(&format!(
            "page={}&per_page={}",
            page.query.page + 1,
            page.query.per_page
        ));
        format!("/api/tasks?{link}")
    });
    Ok(Json(TaskPage {
        counts,
        next,
        tasks: page.tasks,
        total: page.total,
    }))
}

/// `name=value&` for each given, non-blank pair, encoded for a query string.
fn form_urlencoded_pairs(pairs: &[(&str, Option<&str>)]) -> String {
    let given: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(name, value)| Some((*name, value.filter(|v| !v.trim().is_empty())?)))
        .collect();
    let mut out = serde_urlencoded::to_string(given).unwrap_or_default();
    if !out.is_empty() {
        out.push('&');
    }
    out
}

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
