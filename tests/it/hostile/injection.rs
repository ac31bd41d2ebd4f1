//! What the injection test reads the service with: event streams opened raw and checked event by
//! event for forged fields ([`Watched`]), and pages checked for an unescaped script.

use reqwest::StatusCode;
use serde_json::Value;

use super::rows::{STREAM, get};
use crate::helpers::{
    TestApp,
    raw::{Conn, open},
    raw_sse::{RawEvent, SseParser},
    within,
};

/// An open event stream, checked event by event.
pub(super) struct Watched {
    pub(super) path: String,
    json: bool,
    conn: Conn,
    parser: SseParser,
    last_id: u64,
    pub(super) events: Vec<RawEvent>,
}

impl Watched {
    pub(super) async fn open(app: &TestApp, path: String, last_event_id: Option<&str>) -> Self {
        let mut row = get(STREAM, path.clone());
        if let Some(id) = last_event_id {
            row = row.last_event_id(id);
        }
        let conn = within("a stream", open(app, &row.request()))
            .await
            .expect("the stream opens");
        assert_eq!(conn.status, 200, "GET {path}");
        assert_eq!(conn.content_type(), "text/event-stream", "GET {path}");
        Self {
            json: path.starts_with("/api/"),
            path,
            conn,
            parser: SseParser::default(),
            last_id: 0,
            events: Vec::new(),
        }
    }

    /// Reads events, checking each, until one has an id of at least `seq`.
    pub(super) async fn read_through(&mut self, seq: u64) {
        while self.last_id < seq {
            let what = format!("an event on {}", self.path);
            let event = within(&what, self.conn.next_event(&mut self.parser))
                .await
                .expect("the stream reads")
                .unwrap_or_else(|| panic!("{} ended", self.path));
            self.check(&event);
            self.events.push(event);
        }
    }

    fn check(&mut self, event: &RawEvent) {
        let path = &self.path;
        let id = event
            .well_formed(&["status", "progress", "resync"])
            .unwrap_or_else(|wrong| panic!("{path}: a forged or broken event: {wrong}"));
        assert!(
            id > self.last_id || self.last_id == 0,
            "{path}: ids must grow: {id} after {}",
            self.last_id
        );
        self.last_id = id;
        let data = event.data();
        if self.json {
            let value: Value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("{path}: data is not one JSON value ({e}): {data:?}"));
            assert_eq!(
                value["seq"], id,
                "{path}: the id is the event's seq: {data}"
            );
        } else {
            assert!(
                !data.contains("<script>alert"),
                "{path}: an unescaped script in a fragment: {data}"
            );
        }
    }

    /// The JSON data of every status event for `task`.
    pub(super) fn statuses_of(&self, task: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.names == ["status"])
            .map(|e| serde_json::from_str::<Value>(&e.data()).expect("JSON data"))
            .filter(|v| v["task_id"] == task)
            .collect()
    }

    pub(super) fn saw(&self, text: &str) -> bool {
        self.events.iter().any(|e| e.data().contains(text))
    }
}

/// Follows `/api/events?task=` until a status event matches; returns its id.
pub(super) async fn status_seq(
    stream: &mut Watched,
    task: &str,
    status: &str,
    attempt: u32,
) -> u64 {
    loop {
        let target = stream.last_id + 1;
        stream.read_through(target).await;
        let event = stream.events.last().expect("an event");
        if event.names != ["status"] {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data()).expect("JSON data");
        if data["task_id"] == task && data["status"] == status && data["attempt"] == attempt {
            return stream.last_id;
        }
    }
}

pub(super) async fn page_text(app: &TestApp, path: &str) -> String {
    let (status, body) = app.get_page(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}");
    body
}

pub(super) fn assert_no_script(what: &str, html: &str) {
    assert!(
        !html.contains("<script>alert"),
        "{what} holds an unescaped script:\n{html}"
    );
}
