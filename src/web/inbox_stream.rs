//! The home page's event stream: `GET /stream?view=inbox&since=N&status=&q=&page=`.
//!
//! A page of the inbox shows 50 of perhaps 100,000 tasks, so unlike the contract's streams this
//! one never starts with every task's state. It replays from the page's own event (`since`, or
//! the browser's `Last-Event-ID` when it reconnects) and pushes, for each change, the counts, the
//! row where [`Screen`] places it, and a line for the live region. When it cannot replay, it
//! sends a `resync` whose fragments ask the reader to reload.

use super::protect::Opener;

use axum::{
    http::{HeaderMap, StatusCode},
    response::{Response, sse::Event as SseEvent},
};
use futures_util::StreamExt;

use super::{
    error::Problem,
    sse::{Frame, Fresh, StreamQuery, frames, last_event_id, sse},
};
use crate::{
    events::{EventKind, Scope},
    inbox::{Counts, Inbox, InboxFields, InboxQuery, PER_PAGE, Screen},
    input::InvalidField,
    registry::Registry,
    service::Hitl,
    views::inbox as views,
};

/// The stream for one page of the inbox, or why it cannot start.
pub fn events(
    hitl: &Hitl,
    inbox: &Inbox,
    query: &StreamQuery,
    headers: &HeaderMap,
    opener: Opener,
) -> Result<Response, Problem> {
    if query.task.is_some() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "The inbox's stream follows a page of the list, not one task: leave out task.",
        ));
    }
    let fields = InboxFields {
        status: query.status.as_deref(),
        q: query.q.as_deref(),
        page: query.page.as_deref(),
        per_page: None,
    };
    let view = InboxQuery::parse(fields, PER_PAGE)?;
    let start = last_event_id(headers)
        .or(since(query)?)
        .unwrap_or_else(|| hitl.registry.events.head());
    // The rows the page shows, as the query answers now: tasks submitted since the page was
    // rendered may be among them, which `Screen::place` allows for.
    let mut screen = Screen::new(&inbox.query(&hitl.registry, &view));
    let registry = hitl.registry.clone();
    let frames = frames(hitl, Scope::All, Some(start), Fresh::ResyncOnly, opener)?;
    Ok(sse(frames.filter_map(move |frame| {
        std::future::ready(push(&registry, &mut screen, frame))
    })))
}

/// The event a page reflects, from `since`: any u64 (an id from the future just resyncs), so
/// not `input::parse_number`, which stops at i64.
fn since(query: &StreamQuery) -> Result<Option<u64>, Problem> {
    match query.since.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| {
            InvalidField::invalid(
                "since",
                format!("since must be an event number (0 or more), not {n:?}."),
            )
            .into()
        }),
    }
}

/// One frame as fragments for the page: a change placed on its screen, or a resync.
fn push(registry: &Registry, screen: &mut Screen, frame: Frame) -> Option<SseEvent> {
    let (id, name, body) = match frame {
        Frame::Resync { id } => (
            id,
            "resync",
            views::resync(screen, &Counts::of(registry), id),
        ),
        Frame::Event(event) if event.kind == EventKind::Status => {
            let placement = screen.place(&event.task);
            let counts = Counts::of(registry);
            let body = views::live_update(&event.task, event.seq, placement, screen, &counts);
            (event.seq, "status", body)
        }
        Frame::Event(_) => return None,
    };
    Some(
        SseEvent::default()
            .id(id.to_string())
            .event(name)
            .data(body.into_string()),
    )
}
