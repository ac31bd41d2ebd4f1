//! A task's webhook deliveries, and Redeliver.

use axum::{
    Extension, Json,
    extract::{Path, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::super::{
    error::{ApiError, ErrorBody, Problem},
    extract::parse_id,
};
use crate::{
    auth::Actor,
    model::{delivery::Delivery, task::TaskId},
    service::Hitl,
};

/// A task's deliveries, oldest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// A task's deliveries
///
/// Every webhook, callback and notification its events made: to whom, how many tries, the
/// last status code or error, and when the next try comes (`pending`).
#[utoipa::path(
    get,
    path = "/tasks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "task_deliveries",
    params(("id" = TaskId, Path, description = "The task's id")),
    responses(
        (status = 200, description = "Its deliveries, oldest first.", body = DeliveryList),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 503, description = "`database_unavailable`: the outbox cannot be read now.",
            body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl))]
pub async fn list(
    State(hitl): State<Hitl>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(DeliveryList {
        deliveries: hitl.deliveries(id).await?,
    }))
}

/// Send a delivery again
///
/// Tries the delivery again now, with the same `webhook-id` (reviewers only under
/// `--auth token`).
#[utoipa::path(
    post,
    path = "/deliveries/{id}/redeliver",
    tag = "webhooks",
    operation_id = "redeliver",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery, pending again.", body = Delivery),
        (status = 403, description = "`forbidden`: only reviewers redeliver.", body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such delivery.", body = ErrorBody),
        (status = 503, description = "`database_unavailable`: try again shortly.",
            body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip(hitl, actor))]
pub async fn redeliver(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    let missing = || {
        ApiError(Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "There is no delivery with that id; GET /api/tasks/{id}/deliveries lists a task's.",
        ))
    };
    let id: uuid::Uuid = id.trim().parse().map_err(|_| missing())?;
    hitl.redeliver(id, &actor)
        .await?
        .map(Json)
        .ok_or_else(missing)
}
