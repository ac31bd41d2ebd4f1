//! Workers that claim work (`CONTRACT.md`, "Work done outside hitl"): a claim on the oldest
//! outside attempt nobody holds, its lease renewed, progress reported, and the attempt given up.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::{
    error::{ApiError, ErrorBody},
    extract::{JsonBody, OptionalJson},
};
use crate::{
    auth::Actor,
    input::{InvalidField, MAX_WAIT_SECS, seconds, worker_text},
    model::task::Task,
    service::{Claimed, Hitl},
};

/// What a worker asks for when it claims work (the body may be left out).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// How long to wait for work when there is none now, 0 to 120 seconds (default 30).
    #[schema(minimum = 0, maximum = 120)]
    wait_secs: Option<i64>,
    /// How long the claim holds without renewal, 5 to 3600 seconds (default 60).
    #[schema(minimum = 5, maximum = 3600)]
    lease_secs: Option<i64>,
}

/// One earlier attempt, as a worker is given it.
#[derive(Serialize, ToSchema)]
pub struct Prior {
    attempt: u32,
    output: Arc<str>,
    /// The changes the reviewer asked for.
    #[schema(required = true)]
    comment: Option<Arc<str>>,
}

/// A claim, as `POST /api/claims` answers it.
#[derive(Serialize, ToSchema)]
pub struct ClaimAnswer {
    /// The claim's token: renew, report progress, give up or hand in the attempt with it.
    claim: String,
    /// When the claim lapses unless renewed.
    #[serde(with = "time::serde::rfc3339")]
    lease_expires_at: time::OffsetDateTime,
    /// The task, now `running`.
    task: Arc<Task>,
    /// The attempt to make.
    attempt: u32,
    /// Every earlier attempt that was sent back, with the reviewer's comment.
    history: Vec<Prior>,
}

impl From<Claimed> for ClaimAnswer {
    fn from(claimed: Claimed) -> Self {
        let task = claimed.task;
        let history = crate::review::prior_attempts(&task)
            .into_iter()
            .map(|a| Prior {
                attempt: a.attempt,
                output: a.output,
                comment: a.comment,
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

/// Claim work
///
/// The oldest outside attempt nobody holds, waiting up to `wait_secs` for one; the task becomes
/// `running` under the claim until its lease runs out.
#[utoipa::path(
    post,
    path = "/claims",
    tag = "workers",
    operation_id = "claim_work",
    request_body(content = ClaimBody,
        description = "May be left out (or empty): then every field takes its default."),
    responses(
        (status = 200, description = "A claim on an attempt.", body = ClaimAnswer),
        (status = 204, description = "No work came within `wait_secs`."),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a value out of range, or an unknown \
            field.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the claim could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
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

/// A new lease for a claim (the body may be left out).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// How long the renewed claim holds, 5 to 3600 seconds from now (default 60).
    #[schema(minimum = 5, maximum = 3600)]
    lease_secs: Option<i64>,
}

/// A renewed claim.
#[derive(Serialize, ToSchema)]
pub struct Renewed {
    /// The claim's token, as sent.
    claim: String,
    /// When the claim now lapses unless renewed again.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    lease_expires_at: Option<time::OffsetDateTime>,
    task: Arc<Task>,
}

/// Renew a claim
#[utoipa::path(
    post,
    path = "/claims/{token}/renew",
    tag = "workers",
    operation_id = "renew_claim",
    params(("token" = String, Path, description = "The claim's token")),
    request_body(content = RenewBody,
        description = "May be left out (or empty): then the lease is 60 seconds."),
    responses(
        (status = 200, description = "The claim, with its new lease.", body = Renewed),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no claim with that token.",
            body = ErrorBody),
        (status = 409, description = "`claim_lost`: the lease ran out or the task moved on.",
            body = ErrorBody),
        (status = 422, description = "`invalid_field`: a value out of range, or an unknown \
            field.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn renew(
    State(hitl): State<Hitl>,
    Path(token): Path<String>,
    OptionalJson(body): OptionalJson<RenewBody>,
) -> Result<Json<Renewed>, ApiError> {
    let lease = lease(body.lease_secs)?;
    let task = hitl.renew_claim(&token, lease).await?;
    Ok(Json(Renewed {
        lease_expires_at: task.claim.as_ref().map(|c| c.lease_expires_at),
        claim: token,
        task,
    }))
}

/// A worker's report of how its attempt is going.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// The partial output or a note, 1 byte to 64 KiB, not blank: sent as a `progress` event.
    #[schema(required = true, nullable = false, pattern = r"\S")]
    text: Option<String>,
}

/// Report progress
///
/// The text becomes a `progress` event of the claimed attempt.
#[utoipa::path(
    post,
    path = "/claims/{token}/progress",
    tag = "workers",
    operation_id = "claim_progress",
    params(("token" = String, Path, description = "The claim's token")),
    request_body = ProgressBody,
    responses(
        (status = 202, description = "Sent to the attempt's watchers."),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no claim with that token.",
            body = ErrorBody),
        (status = 409, description = "`claim_lost`: the lease ran out or the task moved on.",
            body = ErrorBody),
        (status = 413, description = "`too_large`: the text is over the limit.",
            body = ErrorBody),
        (status = 422, description = "`invalid_field`: a missing, empty or unknown field.",
            body = ErrorBody),
    )
)]
pub async fn progress(
    State(hitl): State<Hitl>,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<ProgressBody>,
) -> Result<StatusCode, ApiError> {
    let text = worker_text("text", body.text.as_deref(), hitl.max_text())?;
    hitl.claim_progress(&token, text).await?;
    Ok(StatusCode::ACCEPTED)
}

/// A worker giving up on its attempt.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    /// What went wrong, 1 byte to 64 KiB, not blank.
    #[schema(required = true, nullable = false, pattern = r"\S")]
    error: Option<String>,
    /// `true`: the attempt goes back to `pending` for another worker (up to `--max-retries`);
    /// otherwise (the default) the task ends `failed`.
    retry: Option<bool>,
}

/// Give up on a claim
#[utoipa::path(
    post,
    path = "/claims/{token}/fail",
    tag = "workers",
    operation_id = "give_up",
    params(("token" = String, Path, description = "The claim's token")),
    request_body = FailBody,
    responses(
        (status = 200, description = "The task: `pending` again, or `failed`.", body = Task),
        (status = 400, description = "`malformed_body`: the body is not JSON.", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no claim with that token.",
            body = ErrorBody),
        (status = 409, description = "`claim_lost`: the lease ran out or the task moved on.",
            body = ErrorBody),
        (status = 413, description = "`too_large`: the error is over the limit.",
            body = ErrorBody),
        (status = 422, description = "`invalid_field`: a missing, empty or unknown field.",
            body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `database_unavailable`, \
            `shutting_down`: the change could not be made or saved now.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn fail(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<FailBody>,
) -> Result<Json<Arc<Task>>, ApiError> {
    let error = worker_text("error", body.error.as_deref(), hitl.max_text())?;
    let retry = body.retry.unwrap_or(false);
    Ok(Json(hitl.give_up(&token, error, retry, &actor).await?))
}
