//! The two event streams: `/api/events` (JSON) and `/stream` (HTML fragments for htmx).
//!
//! Both are one sequence of [`Frame`]s rendered two ways. A stream starts with the current state
//! of every task in scope, or, given `Last-Event-ID`, with exactly the events after it (or a
//! `resync` and the current state, when those are no longer kept); then it follows the log.

use axum::{
    Extension,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{Response, sse::Event as SseEvent},
};
use futures_util::StreamExt;
use maud::html;
use serde_json::json;
use std::sync::Arc;

use super::{
    error::{ApiError, ErrorBody, Problem},
    extract::parse_id,
    protect::Opener,
    sse::{Frame, Fresh, StreamQuery, frames, last_event_id, sse},
};
use crate::{
    events::{EventKind, Scope},
    inbox::Inbox,
    model::task::TaskId,
    service::Hitl,
    views::fragments,
};

/// Is there such a task: live, or finished and read back from the store? A stream of a task
/// that has left memory starts with nothing (its page already shows how it ended) and stays
/// open like any other.
async fn known(hitl: &Hitl, scope: Scope) -> Result<(), Problem> {
    match scope {
        Scope::Task(id) if hitl.registry.get(id).is_none() && hitl.settled(id).await.is_none() => {
            Err(Problem::not_found())
        }
        _ => Ok(()),
    }
}

fn scope(query: &StreamQuery) -> Result<Scope, Problem> {
    match query.task.as_deref() {
        None | Some("") => Ok(Scope::All),
        Some(id) => parse_id(id).map(Scope::Task),
    }
}

/// Follow events
///
/// Server-Sent Events, each with an `id:` (a sequence number that only grows, across all tasks)
/// and one JSON `data:` line:
///
/// - `event: status` on every change of status or attempt: `{"seq", "task_id", "status",
///   "attempt", "output", "final_result", "error", "at"}`, and, for a decision, `"decision"`,
///   `"comment"`, `"decided_by"`; for an ending, `"outcome"`.
/// - `event: progress` while an attempt runs, the partial output in `output`.
/// - `event: resync` (`{"seq"}`) when the events after `Last-Event-ID` are no longer kept: the
///   current state follows.
///
/// Without `Last-Event-ID` the stream starts with the current state of every task in scope;
/// with it, with exactly the events after it. `:` comments keep an idle stream open.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    operation_id = "events",
    params(
        ("task" = Option<TaskId>, Query, description = "Only this task's events."),
        ("Last-Event-ID" = Option<u64>, Header,
            description = "Resume after this event (EventSource sends it on reconnect)."),
    ),
    responses(
        (status = 200, description = "The event stream; it ends only when the server stops.",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "`bad_request`: the query string cannot be read.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: there is no such task.", body = ErrorBody),
        (status = 429, description = "`too_many_streams`: this client has as many streams \
            open as one may.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 503, description = "`too_many_streams`: the server has as many streams open \
            as it allows.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn json_events(
    State(hitl): State<Hitl>,
    opener: Opener,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let start = last_event_id(&headers);
    let scope = scope(&query)?;
    hitl.reach(scope, start).await;
    known(&hitl, scope).await?;
    let frames = frames(&hitl, scope, start, Fresh::Snapshot, opener)?;
    Ok(sse(frames.map(json_frame)))
}

fn json_frame(frame: Frame) -> SseEvent {
    match frame {
        Frame::Resync { id } => SseEvent::default()
            .id(id.to_string())
            .event("resync")
            .data(json!({ "seq": id }).to_string()),
        Frame::Event(event) => {
            let data = event.json.get_or_init(|| event.data().to_string().into());
            SseEvent::default()
                .id(event.seq.to_string())
                .event(event.name())
                .data(&**data)
        }
    }
}

/// `GET /stream`: HTML fragments, swapped out of band by the page's one SSE sink.
pub async fn html_events(
    State(hitl): State<Hitl>,
    Extension(inbox): Extension<Arc<Inbox>>,
    opener: Opener,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    if let Ok(scope) = scope(&query) {
        hitl.reach(scope, last_event_id(&headers)).await;
    }
    let result = match query.view.as_deref() {
        None | Some("") => {
            async {
                let scope = scope(&query)?;
                known(&hitl, scope).await?;
                task_events(&hitl, scope, &headers, opener)
            }
            .await
        }
        Some("inbox") => super::inbox_stream::events(&hitl, &inbox, &query, &headers, opener),
        Some(_) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "The only view with its own stream is view=inbox.",
        )),
    };
    // An EventSource acts on the status (and `Retry-After`); a person who opens the URL reads
    // the page.
    result.unwrap_or_else(|problem| super::error::refused(false, problem))
}

/// Every task's fragments (or one task's, with `task`), as the contract describes.
fn task_events(
    hitl: &Hitl,
    scope: Scope,
    headers: &HeaderMap,
    opener: Opener,
) -> Result<Response, Problem> {
    let frames = frames(hitl, scope, last_event_id(headers), Fresh::Snapshot, opener)?;
    // Fragments are rendered for this connection's viewer: a submitter is not sent forms only
    // reviewers may use.
    let viewer = crate::views::VIEWER.try_with(Clone::clone).ok().flatten();
    Ok(sse(frames.filter_map(move |frame| {
        let event = crate::views::VIEWER.sync_scope(viewer.clone(), || html_frame(scope, frame));
        std::future::ready(event)
    })))
}

fn html_frame(scope: Scope, frame: Frame) -> Option<SseEvent> {
    let (id, name, body) = match (frame, scope) {
        // A data line, or browsers would not dispatch the event at all.
        (Frame::Resync { id }, _) => (id, "resync", html! { "resync" }),
        (Frame::Event(event), Scope::All) => match event.kind {
            EventKind::Status => (event.seq, "status", fragments::row_update(&event.task)),
            // The list shows statuses only.
            EventKind::Progress { .. } => return None,
        },
        (Frame::Event(event), Scope::Task(_)) => match &event.kind {
            EventKind::Status => (event.seq, "status", fragments::task_regions(&event.task)),
            EventKind::Progress { attempt, text } => (
                event.seq,
                "progress",
                fragments::progress(&event.task, event.seq, *attempt, text),
            ),
        },
    };
    Some(
        SseEvent::default()
            .id(id.to_string())
            .event(name)
            .data(body.into_string()),
    )
}
