//! `GET /api/tasks`: the tasks, filtered, searched and in pages.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::error::{ApiError, ErrorBody};
use crate::{
    inbox::{Inbox, InboxFields, InboxQuery, PER_PAGE},
    model::task::{Task, TaskStatus},
    service::Hitl,
};

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
