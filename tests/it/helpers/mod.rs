//! What the integration tests share: a real server on a free port per test, a client for it, and
//! readers for what it answers. Every wait is bounded by [`WAIT`], so a broken server fails the
//! test instead of hanging it, and waiting for a state reads the task's event stream instead of
//! polling.
//!
//! - [`app`]: starting a server ([`spawn_app`] and the like) and [`TestApp`], a client with one
//!   method per route.
//! - [`answers`]: a task as the JSON API returns it ([`Task`]), bodies, headers and the
//!   contract's JSON error ([`assert_error`]).
//! - [`sse`]: an open event stream ([`Events`]), read event by event.
//! - [`page`]: elements of an HTML page, by CSS selector.
//! - [`raw`] and [`raw_sse`]: an HTTP/1.1 client and an event-stream parser that see the bytes
//!   exactly, for requests a URL library would not send as written and for stream fields a
//!   lenient reader would hide (`hostile.rs`).
//!
//! Everything but `raw` and `raw_sse` is re-exported here, so tests `use crate::helpers::{...}`. The PostgreSQL tests
//! (`tests/pg`) include this folder too, by path, and use only some of it.

use std::{future::Future, time::Duration};

mod answers;
mod app;
mod page;
pub mod raw;
pub mod raw_sse;
pub mod receiver;
mod sse;

pub use answers::{Task, assert_error, content_type, json_body, location, text_body, unknown_id};
pub use app::{
    TestApp, slow_config, spawn_app, spawn_app_and_service, spawn_app_with, test_config,
};
pub use page::{attr_of, select, text_of};
pub use sse::{EventData, Events, SseEvent};

/// The longest any single step of a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}
