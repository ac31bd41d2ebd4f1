//! The JSON API, as the contract gives it.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    error::{ApiError, Problem},
    extract::{JsonBody, parse_id},
};
use crate::{
    auth::Actor,
    inbox::{Inbox, InboxFields, InboxQuery, PER_PAGE},
    input::{DecisionFields, DecisionRequest, InvalidField, NewTask, attempt_number, extension},
    model::task::{Task, excerpt},
    service::Hitl,
    submissions::SubmitKey,
};

mod outside;
pub use outside::{claim, fail, get, post_attempt, progress, renew, retry};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    input: Option<String>,
    max_attempts: Option<i64>,
    review_timeout_secs: Option<i64>,
    review_timeout_policy: Option<String>,
    /// Attempt 1's output, made outside hitl.
    output: Option<String>,
    /// `"external"`: the task's attempts are made outside hitl.
    processor: Option<String>,
    metadata: Option<serde_json::Value>,
}

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

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

/// The page size of `GET /api/tasks` when it names none (pages of [`PER_PAGE`] when it names a
/// page but no size, as before 0.5).
const API_PER_PAGE: usize = 100;

/// `GET /api/tasks`: newest first, filtered by `status` and searched by `q`, 100 at a time
/// unless `page` or `per_page` say otherwise; `next` links the next page while there is one. A
/// page past the end is empty (with the true `total`).
pub async fn list(
    State(hitl): State<Hitl>,
    Extension(inbox): Extension<Arc<Inbox>>,
    Query(params): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let counts: serde_json::Map<String, serde_json::Value> = page
        .counts
        .iter()
        .map(|(status, n)| (status.as_str().to_owned(), n.into()))
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
    Ok(Json(json!({
        "tasks": page.tasks,
        "total": page.total,
        "counts": counts,
        "next": next,
    })))
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

/// `GET /api/tasks/{id}/history`: the task's audit trail as JSON Lines, oldest first, each
/// entry holding the hash of the one before.
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

#[derive(Deserialize)]
pub struct DeadlineBody {
    attempt: Option<i64>,
    extend_secs: Option<i64>,
}

/// `POST /api/tasks/{id}/deadline`: gives the open review `extend_secs` more.
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

#[derive(Deserialize)]
pub struct FeedbackBody {
    decision: String,
    attempt: Option<i64>,
    comment: Option<String>,
    output: Option<String>,
    output_sha256: Option<String>,
}

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

#[tracing::instrument(level = "debug", skip(hitl), fields(task_id = %id))]
pub async fn cancel(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(hitl.cancel(id, &actor).await?))
}

pub async fn healthz(State(hitl): State<Hitl>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "tasks": hitl.registry.len() }))
}

/// `GET /readyz`: 200 while the service can accept changes, 503 with the reason when not.
pub async fn readyz(State(hitl): State<Hitl>) -> axum::response::Response {
    match hitl.ready().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
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
