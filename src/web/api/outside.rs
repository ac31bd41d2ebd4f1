//! The JSON routes of work done outside hitl: attempts handed in, claims, retries and the
//! bounded wait on a task (`CONTRACT.md`, "Work done outside hitl", "Waiting for a change").

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::{
    error::{ApiError, Problem},
    extract::{JsonBody, OptionalJson, parse_id},
    park::Parked,
};
use crate::{
    auth::Actor,
    input::{AttemptPost, InvalidField, MAX_WAIT_SECS, seconds, statuses, worker_text},
    model::task::{Decision, Task},
    service::{Claimed, Hitl},
};

/// `POST /api/tasks/{id}/attempts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptBody {
    attempt: Option<i64>,
    output: Option<String>,
    claim: Option<String>,
}

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

/// `POST /api/claims`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    wait_secs: Option<i64>,
    lease_secs: Option<i64>,
}

/// One earlier attempt, as a worker is given it.
#[derive(Serialize)]
pub struct Prior {
    attempt: u32,
    output: Arc<str>,
    comment: Option<Arc<str>>,
}

/// A claim, as `POST /api/claims` answers it.
#[derive(Serialize)]
pub struct ClaimAnswer {
    claim: String,
    #[serde(with = "time::serde::rfc3339")]
    lease_expires_at: time::OffsetDateTime,
    task: Arc<Task>,
    attempt: u32,
    history: Vec<Prior>,
}

impl From<Claimed> for ClaimAnswer {
    fn from(claimed: Claimed) -> Self {
        let task = claimed.task;
        let history = task
            .attempts
            .iter()
            .filter(|a| a.decision == Some(Decision::Rejected))
            .map(|a| Prior {
                attempt: a.attempt,
                output: a.output.clone(),
                comment: a.comment.clone(),
            })
            .collect();
        let lease_expires_at = task
            .claim
            .as_ref()
            .map_or_else(crate::model::task::now, |c| c.lease_expires_at);
        Self {
            claim: claimed.token,
            lease_expires_at,
            attempt: task.attempt,
            history,
            task,
        }
    }
}

/// A lease's length, 5 s to an hour (60 s if not given).
fn lease(secs: Option<i64>) -> Result<Duration, InvalidField> {
    seconds("lease_secs", secs, 60, 5..=3600).map(Duration::from_secs)
}

/// `POST /api/claims`: the oldest outside attempt nobody holds, waiting up to `wait_secs` for
/// one; 204 when none came.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn claim(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    OptionalJson(body): OptionalJson<ClaimBody>,
) -> Result<Response, ApiError> {
    let wait = seconds("wait_secs", body.wait_secs, 30, 0..=MAX_WAIT_SECS)?;
    let lease = lease(body.lease_secs)?;
    match hitl
        .claim_work(Duration::from_secs(wait), lease, &actor)
        .await?
    {
        Some(claimed) => Ok(Json(ClaimAnswer::from(claimed)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /api/claims/{token}/renew`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    lease_secs: Option<i64>,
}

pub async fn renew(
    State(hitl): State<Hitl>,
    Path(token): Path<String>,
    OptionalJson(body): OptionalJson<RenewBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lease = lease(body.lease_secs)?;
    let task = hitl.renew_claim(&token, lease).await?;
    let expires = task.claim.as_ref().map(|c| c.lease_expires_at);
    Ok(Json(json!({
        "claim": token,
        "lease_expires_at": expires.map(rfc3339),
        "task": task,
    })))
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `POST /api/claims/{token}/progress`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    text: Option<String>,
}

pub async fn progress(
    State(hitl): State<Hitl>,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<ProgressBody>,
) -> Result<StatusCode, ApiError> {
    let text = worker_text("text", body.text.as_deref(), hitl.max_text())?;
    hitl.claim_progress(&token, text).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /api/claims/{token}/fail`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    error: Option<String>,
    retry: Option<bool>,
}

pub async fn fail(
    State(hitl): State<Hitl>,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<FailBody>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let error = worker_text("error", body.error.as_deref(), hitl.max_text())?;
    let retry = body.retry.unwrap_or(false);
    Ok(Json(hitl.give_up(&token, error, retry).await?))
}

/// `POST /api/tasks/{id}/retry`.
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
#[derive(Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
    #[serde(rename = "while")]
    during: Option<String>,
}

/// `GET /api/tasks/{id}`, and with `?wait=SECONDS&while=STATUS,...` a bounded wait for its
/// status to leave `while` (`Hitl-Wait: changed` or `timeout` says which). A plain read is
/// bounded by the request timeout like every other route; a wait by its own `wait`.
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
    let (task, changed, parked) = match hitl
        .begin_wait(id, Duration::from_secs(wait), during)
        .await?
    {
        Ok((task, changed)) => (task, changed, None),
        // Waited out at the connection, not here (see `web::park`).
        Err(waiting) => (waiting.task.clone(), false, Some(Parked(waiting))),
    };
    let mut answer = Json(task).into_response();
    answer.headers_mut().insert(
        "hitl-wait",
        HeaderValue::from_static(if changed { "changed" } else { "timeout" }),
    );
    if let Some(parked) = parked {
        answer.extensions_mut().insert(parked);
    }
    Ok(answer)
}
