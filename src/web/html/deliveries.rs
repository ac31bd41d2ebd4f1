//! The task page's Redeliver button.

use axum::{
    Extension,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};

use super::with_task;
use crate::{
    auth::Actor,
    service::Hitl,
    views::task_url,
    web::{
        error::{HtmlError, Problem, Refuse},
        extract::{Htmx, parse_id},
    },
};

/// `POST /tasks/{id}/deliveries/{delivery}/redeliver`: a reviewer sends a delivery again.
#[tracing::instrument(level = "debug", skip(hitl), fields(task_id = %id))]
pub async fn redeliver(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Htmx(htmx): Htmx,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id).refuse(htmx)?;
    let missing = || {
        Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "There is no such delivery; reload the page to see the task's deliveries.",
        )
    };
    let delivery: uuid::Uuid = delivery
        .trim()
        .parse()
        .map_err(|_| missing())
        .refuse(htmx)?;
    hitl.redeliver(delivery, &actor)
        .await
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?
        .filter(|found| found.task_id == id)
        .ok_or_else(missing)
        .refuse(htmx)?;
    Ok(Redirect::to(&format!("{}#deliveries", task_url(id))).into_response())
}
