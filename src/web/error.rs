//! What went wrong, once, and how each side shows it: JSON for the API, a page or an alert
//! fragment for browsers (see `html.rs`).

use std::sync::Arc;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use maud::html;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    input::InvalidField,
    model::{
        changes::Refused,
        task::{Task, TaskStatus},
    },
    registry::{Denied, TransitionError},
    views::{
        fragments::{self, FlashKind},
        pages,
    },
};

/// A refused request: its status, a stable code, a message for a person, and the task's state
/// now when there is one.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub task: Option<Arc<Task>>,
    /// For refusals under load: seconds to wait, sent as `Retry-After`.
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            task: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no task with that id. It may have been mistyped.",
        )
    }

    /// `body` answered with this problem's status, and `Retry-After` when it says when to come
    /// back: the one place either side's error response is made.
    pub fn respond(&self, body: impl IntoResponse) -> Response {
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_body", message)
    }

    /// A body over the server's size limit, whatever the field.
    pub fn body_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "The request is too large. Inputs, comments and edits are limited to 64 KiB each.",
        )
    }
}

impl From<TransitionError> for Problem {
    fn from(error: TransitionError) -> Self {
        match error {
            TransitionError::NotFound(_) => Self::not_found(),
            TransitionError::Conflict { refused, task } => Self {
                task: Some(task),
                ..Self::new(
                    StatusCode::CONFLICT,
                    match refused {
                        Refused::ClaimLost => "claim_lost",
                        _ => "conflict",
                    },
                    refused_words(&refused),
                )
            },
            TransitionError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "The server is shutting down; your submission may not have been made. \
                 Look for it before you retry, once the server is back.",
            ),
            TransitionError::Full { max } => Self {
                retry_after: Some(30),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_tasks",
                    format!(
                        "The service already has {max} unfinished tasks, as many as it takes. \
                         Nothing was submitted; try again once some are reviewed."
                    ),
                )
            },
            TransitionError::KeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different submission. \
                 Use a new key for a new task.",
            ),
            TransitionError::Forbidden(denied) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", denied_words(denied))
            }
            TransitionError::NotSaved => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The change could not be saved: the store is not answering. \
                 It may be lost if the server stops; try again shortly.",
            ),
            TransitionError::Unavailable => Self {
                retry_after: Some(5),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database is not answering, so nothing was changed. \
                     Try again shortly; this page keeps showing the latest it knows.",
                )
            },
            // `SubmitKeys::once` turns it into the task the key made; it never reaches a client.
            TransitionError::KeyBound(..) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "This submission was already made; look for its task before you retry.",
            ),
            TransitionError::NoSuchClaim => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is no claim with that token. Use the token POST /api/claims gave you.",
            ),
            // Only a workflow's own changes are refused this way; a request never is.
            TransitionError::NotClaimed => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "Another instance is working on this task; reload it to see its state.",
            ),
        }
    }
}

/// Why a rule refused a change, in words that say what to do instead.
fn refused_words(refused: &Refused) -> String {
    let label = |status: TaskStatus| status.label().to_lowercase();
    match refused {
        // A workflow's own steps out of turn: no person asked for them, so they read as in
        // the logs.
        Refused::OutOfTurn { .. } | Refused::NotRunning { .. } => refused.to_string(),
        Refused::NotUnderReview { status } => format!(
            "This task is {}, not waiting for review, so it takes no decision now.",
            label(*status)
        ),
        Refused::WrongAttempt {
            decided,
            under_review,
        } => format!(
            "Your decision was for attempt {decided}, but attempt {under_review} is the one under review."
        ),
        Refused::NotWhatWasSeen { attempt } => format!(
            "The output of attempt {attempt} is not the text you reviewed (its SHA-256 differs), so your decision was not applied. Reload the task and review it again."
        ),
        Refused::NoOpenReview { attempt } => {
            format!("Attempt {attempt} is not under review, so it has no deadline to extend.")
        }
        Refused::NoDeadline => "This review has no deadline to extend.".into(),
        Refused::DeadlineMoved => "The deadline was moved before it passed.".into(),
        Refused::BeyondAYear => {
            "A review deadline can be at most a year away; this extension would pass that.".into()
        }
        Refused::Ended { status } => format!(
            "This task is already {}, so it cannot be changed.",
            label(*status)
        ),
        Refused::NotWhatWasReviewed { attempt } => format!(
            "The output of attempt {attempt} is not the text that was reviewed; it was not finalised."
        ),
        Refused::NotTheResult => {
            "The result to record is neither the output nor the reviewer's edit.".into()
        }
        Refused::NoLongerChanges { status } => {
            format!("The task is {}: it no longer changes.", status.as_str())
        }
        Refused::NotOutside => "This task's attempts are made by hitl's own processor, so it takes no attempt from outside and has nothing to claim.".into(),
        Refused::NotAwaitingAttempt {
            attempt,
            status,
            current,
        } => format!(
            "This task is {} at attempt {current}, so it does not take attempt {attempt}. \
             It takes the attempt it waits for, while it is pending (or running under your claim).",
            label(*status)
        ),
        Refused::ClaimLost => "This claim is no longer yours: its lease ran out or the task moved on. \
             Nothing was changed; claim work again."
            .into(),
        Refused::NotTheClaim => "The claim given is not one this task was given. Give the token your claim returned, or leave the claim out if you submitted the task.".into(),
        Refused::ClaimHeld { attempt } => format!(
            "Attempt {attempt} is claimed by a worker; only that worker, with its claim, can hand it in."
        ),
        Refused::NotRetryable { status } => format!(
            "This task is {}, and only a task whose processing failed can be retried.",
            label(*status)
        ),
    }
}

/// Why someone may not do what they asked, in words that say what they may do.
fn denied_words(denied: Denied) -> &'static str {
    match denied {
        Denied::DecideAsSubmitter => {
            "Only reviewers can decide on tasks, and you are signed in as a submitter."
        }
        Denied::OwnTask => {
            "You submitted this task yourself, so another reviewer must decide on it."
        }
        Denied::ExtendAsSubmitter => {
            "Only reviewers can extend a review's deadline, and you are signed in as a submitter."
        }
        Denied::CancelOthers => "Submitters can cancel only the tasks they submitted.",
        Denied::ReviseOthers => {
            "Only the task's submitter, or the worker holding its claim (give the claim), can hand in its attempts."
        }
        Denied::RetryAsSubmitter => {
            "Only reviewers can start a failed task again, and you are signed in as a submitter."
        }
        Denied::RedeliverAsSubmitter => {
            "Only reviewers can send a delivery again, and you are signed in as a submitter."
        }
    }
}

impl From<InvalidField> for Problem {
    fn from(error: InvalidField) -> Self {
        let (status, code) = match error {
            InvalidField::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            InvalidField::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        };
        Self::new(status, code, error.to_string())
    }
}

/// A [`Problem`] answered as the contract's JSON error.
#[derive(Debug)]
pub struct ApiError(pub Problem);

/// Every refusal on the API: `{"error": {"code", "message"}}`, with the status.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// What was refused, and why.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// A stable code to act on, such as `not_found`, `conflict`, `claim_lost` or
    /// `invalid_field`.
    pub code: &'a str,
    /// What went wrong and what to do instead, for a person.
    pub message: &'a str,
}

impl<E: Into<Problem>> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = &self.0;
        let body = ErrorBody {
            error: ErrorDetail {
                code: problem.code,
                message: &problem.message,
            },
        };
        problem.respond(Json(body))
    }
}

/// A refused action: its status with the page again (or an alert fragment for htmx), saying what
/// went wrong and, when there is a task, what its state is now.
pub fn refused(htmx: bool, problem: Problem) -> Response {
    let message = &problem.message;
    let body = match (htmx, &problem.task) {
        (true, task) => html! {
            (fragments::flash(FlashKind::Error, html! { (message) }, true))
            @if let Some(task) = task { (fragments::task_regions(task)) }
        },
        (false, Some(task)) => pages::task(task, Some(message), &[]),
        (false, None) => pages::error(
            problem.status.canonical_reason().unwrap_or("Error"),
            message,
        ),
    };
    problem.respond(body)
}

/// A refusal in the browser: where it renders (the whole page, or an alert fragment for htmx)
/// as well as what it says. HTML handlers return it with `?`.
pub struct HtmlError {
    pub htmx: bool,
    pub problem: Problem,
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        refused(self.htmx, self.problem)
    }
}

/// `?` in an HTML handler: any error that is a [`Problem`] becomes an [`HtmlError`] for the
/// request's kind (`htmx` or a plain form).
pub trait Refuse<T> {
    fn refuse(self, htmx: bool) -> Result<T, HtmlError>;
}

impl<T, E: Into<Problem>> Refuse<T> for Result<T, E> {
    fn refuse(self, htmx: bool) -> Result<T, HtmlError> {
        self.map_err(|error| HtmlError {
            htmx,
            problem: error.into(),
        })
    }
}
