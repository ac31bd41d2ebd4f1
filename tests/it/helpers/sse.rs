//! An open event stream ([`Events`]), read event by event through `eventsource-stream`, as a
//! well-behaved client reads it; every read is bounded by [`WAIT`](super::WAIT).

use std::pin::Pin;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use hitl::task::TaskStatus;
use reqwest::Response;
use serde::Deserialize;
use time::OffsetDateTime;

use super::within;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: u64,
    pub name: String,
    pub data: String,
}

/// The JSON data of a `status` or `progress` event on `/api/events`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventData {
    pub seq: u64,
    pub task_id: String,
    pub status: TaskStatus,
    pub attempt: u32,
    pub output: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl SseEvent {
    pub fn data(&self) -> EventData {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data {:?}: {e}", self.data))
    }
}

type RawEvents =
    dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>> + Send;

/// An open event stream.
pub struct Events {
    inner: Pin<Box<RawEvents>>,
}

impl Events {
    /// Reads the events of a `text/event-stream` answer.
    pub(super) fn read(response: Response) -> Self {
        Self {
            inner: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// The next event, or `None` once the server ends the stream.
    pub async fn try_next(&mut self) -> Option<SseEvent> {
        let event = within("the next event", self.inner.next()).await?;
        let event = event.expect("a well-formed event");
        let id = event
            .id
            .parse()
            .unwrap_or_else(|_| panic!("a numeric id: {event:?}"));
        Some(SseEvent {
            id,
            name: event.event,
            data: event.data,
        })
    }

    pub async fn next(&mut self) -> SseEvent {
        self.try_next().await.expect("the stream is still open")
    }

    /// The next `status` event's id and data, skipping progress reports; any other event (such
    /// as a `resync`) fails the test.
    pub async fn next_status(&mut self) -> (u64, EventData) {
        loop {
            let event = self.next().await;
            match event.name.as_str() {
                "status" => return (event.id, event.data()),
                "progress" => continue,
                _ => panic!("expected a status event, got {event:?}"),
            }
        }
    }

    /// Status events up to and including the first that matches.
    pub async fn statuses_until(
        &mut self,
        matches: impl Fn(&EventData) -> bool,
    ) -> Vec<(u64, EventData)> {
        let mut seen = Vec::new();
        loop {
            let (id, data) = self.next_status().await;
            let done = matches(&data);
            seen.push((id, data));
            if done {
                return seen;
            }
        }
    }

    /// Every event, of any kind, until `done` holds for those read.
    pub async fn read_until(&mut self, mut done: impl FnMut(&[SseEvent]) -> bool) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        while !done(&seen) {
            seen.push(self.next().await);
        }
        seen
    }

    /// Asserts the server ends the stream (after any events still in flight).
    pub async fn assert_ends(&mut self) {
        while self.try_next().await.is_some() {}
    }
}
