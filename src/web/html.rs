//! Browser routes. Each action is a plain form post answered with 303 (so it works without
//! JavaScript) or, for htmx, with out-of-band fragments; a refusal answers with its status and
//! either the page again, with the message above the task's state now, or an alert fragment.

use std::sync::Arc;

mod deliveries;
pub use deliveries::redeliver;

use axum::{
    Extension, Form,
    extract::{Path, Query, State, rejection::FormRejection},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    error::{HtmlError, Problem, Refuse, refused},
    extract::{Htmx, parse_id},
};
use crate::{
    auth::Actor,
    inbox::{Inbox, InboxFields, InboxQuery, PER_PAGE},
    input::{
        DecisionFields, DecisionRequest, InvalidField, NewTask, attempt_number, extension,
        parse_number,
    },
    model::task::{Decision, Task, TaskId, same_text},
    service::Hitl,
    submissions::SubmitKey,
    views::{
        fragments::{self, FlashKind},
        pages::{self, SubmitForm},
        task_url,
    },
};

/// The home page's query string: the inbox's filter, search and page.
#[derive(Deserialize)]
pub struct HomeQuery {
    status: Option<String>,
    q: Option<String>,
    page: Option<String>,
}

/// `GET /`: the submit form and a page of the inbox. A bad filter, search or page number is 422
/// with the reason; a page past the end is 404 with a link to the last one.
pub async fn home(
    State(hitl): State<Hitl>,
    Extension(inbox): Extension<Arc<Inbox>>,
    Query(params): Query<HomeQuery>,
) -> Response {
    let fields = InboxFields {
        status: params.status.as_deref(),
        q: params.q.as_deref(),
        page: params.page.as_deref(),
        per_page: None,
    };
    let query = match InboxQuery::parse(fields, PER_PAGE) {
        Ok(query) => query,
        Err(invalid) => return refused(false, invalid.into()),
    };
    hitl.settle(None).await;
    render_home(&hitl, &inbox, &query, SubmitForm::default())
}

fn render_home(hitl: &Hitl, inbox: &Inbox, query: &InboxQuery, form: SubmitForm) -> Response {
    let head = hitl.registry.events.head();
    let page = inbox.query(&hitl.registry, query);
    let status = if page.past_end() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let markup = pages::home(
        &page,
        head,
        hitl.default_max_attempts,
        hitl.max_text(),
        form,
        hitl.backing.keeps_nothing(),
    );
    (status, markup).into_response()
}

pub async fn about(State(hitl): State<Hitl>) -> Markup {
    pages::about(&hitl.flow.to_mermaid())
}

#[derive(Deserialize)]
pub struct SubmitFields {
    input: Option<String>,
    max_attempts: Option<String>,
    review_timeout_minutes: Option<String>,
    review_timeout_policy: Option<String>,
    /// The form's own key: the same form sent twice makes one task.
    submit_key: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn submit(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Extension(inbox): Extension<Arc<Inbox>>,
    Htmx(htmx): Htmx,
    form: Result<Form<SubmitFields>, FormRejection>,
) -> Result<Response, HtmlError> {
    let Form(fields) = form
        .map_err(|rejection| super::extract::body_problem(rejection.status()))
        .refuse(htmx)?;
    let parsed = parse_number("max_attempts", fields.max_attempts.as_deref())
        .and_then(|max| NewTask::parse(fields.input.as_deref(), max))
        .and_then(|new| {
            let field = "review_timeout_minutes";
            let minutes = parse_number(field, fields.review_timeout_minutes.as_deref())?;
            let secs = minutes.map(|m| m.checked_mul(60).unwrap_or(i64::MAX));
            new.with_deadline(field, secs, fields.review_timeout_policy.as_deref())
        })
        .and_then(|new| new.within(hitl.max_text()));
    let key = match fields.submit_key.as_deref().filter(|key| !key.is_empty()) {
        Some(key) => SubmitKey::check(key).map(Some).map_err(|why| {
            InvalidField::invalid("submit_key", format!("The form's submit_key {why}."))
        }),
        None => Ok(None),
    };
    match key.and_then(|key| parsed.map(|new| (new, key))) {
        Ok((new, key)) => {
            let (task, _) = hitl
                .submit_once(new, &actor, key.map(|key| SubmitKey::Form(key.into())))
                .await
                .refuse(htmx)?;
            if !htmx {
                return Ok(Redirect::to(&task_url(task.id)).into_response());
            }
            let message = html! {
                "Task submitted. " a href=(task_url(task.id)) { "Open it" } " to review it when it is ready."
            };
            // The form stays on the page for the next task, which needs a key of its own.
            Ok(html! {
                (fragments::flash(FlashKind::Success, message, true))
                (fragments::submit_key(true))
            }
            .into_response())
        }
        Err(invalid) => {
            let problem = Problem::from(invalid);
            if htmx {
                return Err(HtmlError {
                    htmx: true,
                    problem,
                });
            }
            let form = SubmitForm {
                input: fields.input.as_deref().unwrap_or_default(),
                max_attempts: fields.max_attempts.as_deref(),
                review_timeout_minutes: fields.review_timeout_minutes.as_deref(),
                review_timeout_policy: fields.review_timeout_policy.as_deref(),
                error: Some(problem.message),
            };
            let mut page = render_home(&hitl, &inbox, &InboxQuery::default(), form);
            *page.status_mut() = problem.status;
            Ok(page)
        }
    }
}

pub async fn task_page(
    State(hitl): State<Hitl>,
    Path(id): Path<String>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id).refuse(false)?;
    // Only what is durable: the page's sequence numbers must be ones a crash cannot reuse.
    let task = hitl
        .settled(id)
        .await
        .ok_or_else(Problem::not_found)
        .refuse(false)?;
    // The deliveries are shown as far as they can be read; the page never fails for them.
    let deliveries = hitl.deliveries(id).await.unwrap_or_default();
    Ok(pages::task(&task, None, &deliveries).into_response())
}

#[derive(Deserialize)]
pub struct NextQuery {
    after: Option<String>,
}

/// `GET /next?after={id}`: the task a reviewer should take next (the oldest one waiting for
/// review, other than `after`), or the inbox's waiting list when none is.
pub async fn next(State(hitl): State<Hitl>, Query(query): Query<NextQuery>) -> Redirect {
    let after = query
        .after
        .and_then(|id| id.parse().ok())
        .unwrap_or(TaskId(uuid::Uuid::nil()));
    match crate::inbox::next_waiting(&hitl.registry, after) {
        Some(task) => Redirect::to(&task_url(task.id)),
        None => Redirect::to("/?status=waiting_for_review"),
    }
}

#[derive(Deserialize)]
pub struct FeedbackFields {
    decision: Option<String>,
    attempt: Option<String>,
    comment: Option<String>,
    output: Option<String>,
    output_sha256: Option<String>,
}

#[tracing::instrument(level = "debug", skip(hitl, form), fields(task_id = %id))]
pub async fn feedback(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    form: Result<Form<FeedbackFields>, FormRejection>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id).refuse(htmx)?;
    let Form(mut fields) = form
        .map_err(|r| super::extract::body_problem(r.status()))
        .refuse(htmx)?;
    // Browsers send a textarea's newlines as CRLF; the output came out with LF.
    fields.output = fields.output.map(|edit| edit.replace("\r\n", "\n"));
    // The review form sends the output's edit box with every decision: left as it was, it is
    // no edit, and a request for changes or a rejection does not carry it.
    if fields.decision.as_deref() != Some("approved")
        && let Some(edit) = &fields.output
        && let Some(task) = hitl.find(id).await
        && task
            .output
            .as_deref()
            .is_some_and(|output| same_text(output, edit))
    {
        fields.output = None;
    }
    let request = parse_number("attempt", fields.attempt.as_deref())
        .and_then(|attempt| {
            DecisionRequest::parse(DecisionFields {
                decision: fields.decision.as_deref(),
                attempt,
                comment: fields.comment.as_deref(),
                output: fields.output.as_deref(),
                output_sha256: fields.output_sha256.as_deref(),
            })
        })
        .and_then(|request| request.within(hitl.max_text()))
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?;
    let decision = request.decision;
    let task = hitl
        .decide(id, request, &actor)
        .await
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?;
    Ok(done(htmx, &task, decided(decision)))
}

#[tracing::instrument(level = "debug", skip(hitl), fields(task_id = %id))]
pub async fn cancel(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id).refuse(htmx)?;
    let task = hitl
        .cancel(id, &actor)
        .await
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?;
    Ok(done(htmx, &task, "The task is cancelled."))
}

/// `POST /tasks/{id}/retry`: a reviewer starts again a task whose processing failed.
#[tracing::instrument(level = "debug", skip(hitl), fields(task_id = %id))]
pub async fn retry(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id).refuse(htmx)?;
    let task = hitl
        .retry(id, &actor)
        .await
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?;
    Ok(done(htmx, &task, "The task starts its attempt again."))
}

#[derive(Deserialize)]
pub struct DeadlineFields {
    attempt: Option<String>,
    extend_minutes: Option<String>,
}

/// `POST /tasks/{id}/deadline`: a reviewer gives the open review more time.
#[tracing::instrument(level = "debug", skip(hitl, form), fields(task_id = %id))]
pub async fn extend_deadline(
    State(hitl): State<Hitl>,
    Extension(actor): Extension<Actor>,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    form: Result<Form<DeadlineFields>, FormRejection>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id).refuse(htmx)?;
    let Form(fields) = form
        .map_err(|r| super::extract::body_problem(r.status()))
        .refuse(htmx)?;
    let (attempt, minutes) = parse_number("attempt", fields.attempt.as_deref())
        .and_then(|attempt| {
            let minutes = parse_number("extend_minutes", fields.extend_minutes.as_deref())?;
            Ok((
                attempt_number(attempt)?,
                extension("extend_minutes", minutes, 60)?,
            ))
        })
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?;
    let task = hitl
        .extend_deadline(id, attempt, minutes, &actor)
        .await
        .map_err(|e| with_task(&hitl, id, e.into()))
        .refuse(htmx)?;
    Ok(done(htmx, &task, "The deadline is extended."))
}

/// `GET /tasks`: the list lives on the home page.
pub async fn to_home() -> Redirect {
    Redirect::to("/")
}

pub async fn method_not_allowed() -> Response {
    refused(
        false,
        Problem::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This address does not take that kind of request.",
        ),
    )
}

pub async fn not_found() -> Response {
    refused(
        false,
        Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "There is no page at this address.",
        ),
    )
}

/// Attaches the task's state now to a problem that did not carry it.
fn with_task(hitl: &Hitl, id: TaskId, problem: Problem) -> Problem {
    match hitl.registry.get(id) {
        Some(task) => Problem {
            task: Some(task),
            ..problem
        },
        None => Problem::not_found(),
    }
}

fn decided(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "Approved.",
        Decision::Rejected => "Changes requested: the next attempt has your comment.",
        Decision::RejectedFinal => "Rejected.",
    }
}

/// A successful action: back to the task page, or its regions updated in place.
fn done(htmx: bool, task: &Task, message: &str) -> Response {
    if !htmx {
        return Redirect::to(&task_url(task.id)).into_response();
    }
    html! {
        (fragments::flash(FlashKind::Success, html! { (message) }, true))
        (fragments::task_regions(task))
    }
    .into_response()
}
