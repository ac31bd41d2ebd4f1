//! The two event streams: `/api/events` (JSON) and `/stream` (HTML fragments for htmx).
//!
//! Both are one sequence of [`Frame`]s rendered two ways. A stream starts with the current state
//! of every task in scope, or, given `Last-Event-ID`, with exactly the events after it (or a
//! `resync` and the current state, when those are no longer kept); then it follows the log.

use std::{convert::Infallible, net::IpAddr, time::Duration};

use axum::{
    Extension,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt};
use maud::html;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use super::{
    api::parse_id,
    error::{ApiError, Problem},
    protect::ClientIp,
};
use crate::{
    events::{Event, EventKind, EventLog, Scope, Since},
    inbox::Inbox,
    service::Hitl,
    views::fragments,
};

/// Idle connections get a comment this often (the contract asks for at least every 15 s).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// One thing to send.
pub enum Frame {
    Event(Arc<Event>),
    /// The client's `Last-Event-ID` cannot be replayed; the current state follows.
    Resync {
        id: u64,
    },
}

#[derive(Deserialize)]
pub struct StreamQuery {
    pub(super) task: Option<String>,
    /// `inbox`: the home page's stream (see `inbox_stream.rs`).
    view: Option<String>,
    /// The event a page reflects: where its stream starts when the browser sends no
    /// `Last-Event-ID`.
    pub(super) since: Option<String>,
    pub(super) status: Option<String>,
    pub(super) q: Option<String>,
    pub(super) page: Option<String>,
}

/// How a stream starts when it cannot replay from an event: with every task's current state
/// (what the contract's streams do), or with nothing but a `resync` (a page of the inbox, which
/// cannot take 100,000 rows).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    Snapshot,
    ResyncOnly,
}

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

/// The frames for one client: where it starts, then everything after, until shutdown.
pub fn frames(
    hitl: &Hitl,
    scope: Scope,
    last_event_id: Option<u64>,
    fresh: Fresh,
    client: Option<IpAddr>,
) -> Result<impl Stream<Item = Frame> + use<>, Problem> {
    let pass = hitl.streams.admit(client)?;
    // Watch before reading the log, so nothing that becomes visible in between is missed. Every
    // stream wakes on the log's durable head: a task's own change signal fires before its event
    // is durable, and so before the log will hand it out.
    let mut wake = hitl.registry.events.watch_head();
    let log = hitl.registry.events.clone();
    let stream = async_stream::stream! {
        let _pass = pass;
        let start = match last_event_id {
            Some(n) => Some((n, log.replay(n, scope).await)),
            None => None,
        };
        let (first, mut last) = match start {
            Some((n, Since::Events { events, head })) => {
                (events.into_iter().map(Frame::Event).collect(), head.max(n))
            }
            Some((_, Since::Gone)) => restart(&log, scope, true, fresh),
            None => restart(&log, scope, false, fresh),
        };
        for frame in first {
            yield frame;
        }
        while wake.changed().await.is_ok() {
            let (frames, head) = match log.replay(last, scope).await {
                Since::Events { events, head } => (events.into_iter().map(Frame::Event).collect(), head),
                Since::Gone => restart(&log, scope, true, fresh),
            };
            last = head;
            for frame in frames {
                yield frame;
            }
        }
    };
    Ok(stream.take_until(hitl.shutdown.clone().cancelled_owned()))
}

/// The current state as frames (after a `resync` when asked), and the head it reflects.
fn restart(log: &EventLog, scope: Scope, resync: bool, fresh: Fresh) -> (Vec<Frame>, u64) {
    if fresh == Fresh::ResyncOnly {
        let head = log.head();
        let frames = resync.then_some(Frame::Resync { id: head });
        return (frames.into_iter().collect(), head);
    }
    let snapshot = log.snapshot(scope);
    let mut frames = Vec::with_capacity(snapshot.events.len() + 1);
    if resync {
        // An id below every snapshot event, so the ids a client sees keep growing.
        let first = snapshot.events.first().map_or(snapshot.head, |e| e.seq - 1);
        frames.push(Frame::Resync { id: first });
    }
    frames.extend(snapshot.events.into_iter().map(Frame::Event));
    (frames, snapshot.head)
}

pub(super) fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn scope(query: &StreamQuery) -> Result<Scope, Problem> {
    match query.task.as_deref() {
        None | Some("") => Ok(Scope::All),
        Some(id) => parse_id(id).map(Scope::Task),
    }
}

pub(super) fn sse(stream: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
    let stream = stream.map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// `GET /api/events`: JSON events.
pub async fn json_events(
    State(hitl): State<Hitl>,
    ClientIp(client): ClientIp,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let start = last_event_id(&headers);
    let scope = scope(&query)?;
    hitl.reach(scope, start).await;
    known(&hitl, scope).await?;
    let frames = frames(&hitl, scope, start, Fresh::Snapshot, client)?;
    Ok(sse(frames.map(json_frame)))
}

fn json_frame(frame: Frame) -> SseEvent {
    match frame {
        Frame::Resync { id } => SseEvent::default()
            .id(id.to_string())
            .event("resync")
            .data(json!({ "seq": id }).to_string()),
        Frame::Event(event) => {
            let data = event.json.get_or_init(|| event_json(&event).into());
            SseEvent::default()
                .id(event.seq.to_string())
                .event(event.name())
                .data(&**data)
        }
    }
}

/// An event's data on `/api/events`, as the contract gives it.
fn event_json(event: &Event) -> String {
    let task = &event.task;
    let (attempt, output) = match &event.kind {
        EventKind::Status => (task.attempt, task.output.clone()),
        EventKind::Progress { attempt, text } => (*attempt, Some(text.clone())),
    };
    json!({
        "seq": event.seq,
        "task_id": task.id,
        "status": task.status,
        "attempt": attempt,
        "output": output,
        "final_result": task.final_result,
        "error": task.error,
        "at": event.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
    .to_string()
}

/// `GET /stream`: HTML fragments, swapped out of band by the page's one SSE sink.
pub async fn html_events(
    State(hitl): State<Hitl>,
    Extension(inbox): Extension<Arc<Inbox>>,
    ClientIp(client): ClientIp,
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
                task_events(&hitl, scope, &headers, client)
            }
            .await
        }
        Some("inbox") => super::inbox_stream::events(&hitl, &inbox, &query, &headers, client),
        Some(_) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "The only view with its own stream is view=inbox.",
        )),
    };
    // An EventSource acts on the status (and `Retry-After`); a person who opens the URL reads
    // the page.
    result.unwrap_or_else(|problem| super::html::refused(false, problem))
}

/// Every task's fragments (or one task's, with `task`), as the contract describes.
fn task_events(
    hitl: &Hitl,
    scope: Scope,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Response, Problem> {
    let frames = frames(hitl, scope, last_event_id(headers), Fresh::Snapshot, client)?;
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
