//! The machinery both kinds of event stream share: a stream is a sequence of [`Frame`]s,
//! starting where the client is (the current state, or exactly the events after its
//! `Last-Event-ID`, or a `resync`), then following the log until shutdown; [`sse`] sends it
//! with keep-alive comments. `stream` renders frames for `/api/events` and `/stream`,
//! `inbox_stream` for the home page's list.

use std::{convert::Infallible, time::Duration};

use axum::{
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use std::sync::Arc;

use super::{error::Problem, protect::Opener};
use crate::{
    events::{Event, EventLog, Scope, Since},
    service::Hitl,
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
    pub(super) view: Option<String>,
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

/// The frames for one client: where it starts, then everything after, until shutdown.
pub fn frames(
    hitl: &Hitl,
    scope: Scope,
    last_event_id: Option<u64>,
    fresh: Fresh,
    opener: Opener,
) -> Result<impl Stream<Item = Frame> + use<>, Problem> {
    let pass = opener.admit()?;
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

pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pub fn sse(stream: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
    let stream = stream.map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
