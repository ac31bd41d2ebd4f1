//! Where tasks and their events are kept so that nothing is lost when the process stops.
//!
//! The live tasks stay in the registry's `DashMap` (the fast path); a [`Store`] is what they are
//! rebuilt from at start-up and what replays events older than the in-memory log holds. Writes
//! reach it only through the [`journal`]: one writer thread that commits whatever has queued up in
//! one transaction (group commit), so under load many events share one fsync, and nobody is
//! answered before the transaction holding their change is on disk.
//!
//! - [`sqlite`]: the embedded store, one SQLite file in WAL mode (the default).
//! - [`journal`]: the group-commit writer and its handle.
//! - [`postgres`]: the shared store several instances use at once (`--store postgres`); it
//!   decides every change itself, so it writes through transactions of its own, not the journal.

pub mod journal;
pub mod outbox;
pub mod postgres;
pub mod sqlite;

use std::{path::PathBuf, sync::Arc};

use futures_util::future::BoxFuture;

use time::OffsetDateTime;

pub use crate::model::event::Retention;
use crate::{
    model::delivery::{NewDelivery, OutboxWrite},
    model::event::{Event, EventKind, Scope},
    model::task::{StoredKey, Task, TaskId},
};

/// Why the store could not do what was asked, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another hitl{holder} is already using the data directory {path}; stop it, or give this one another --data-dir"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "the database {path} is not a hitl database or is damaged ({cause}); move it aside to start afresh, or restore a backup"
    )]
    Corrupt { path: PathBuf, cause: String },
    /// A file of the data directory is not what SQLite needs to read back what was committed;
    /// starting would serve an empty store and write over what is left.
    #[error(
        "{path} is damaged: {found}. hitl has changed nothing; move the data directory aside (keep a copy: what is in it may still be recovered) and start on an empty one, or restore a backup"
    )]
    Damaged { path: PathBuf, found: String },
    #[error(
        "the database {path} was written by a newer hitl (schema version {found}, this one knows up to {known}); run that version"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database failed: {0}")]
    Postgres(String),
    #[error("a stored record could not be read: {0}")]
    Decode(String),
    /// The configuration does not let the service start (it is reported the same way).
    #[error("{0}")]
    Config(String),
}

/// What a store holds, read back at start-up.
pub struct Recovered {
    /// Every task, each with `seq` set to its latest status event.
    pub tasks: Vec<Arc<Task>>,
    /// The newest events (at most as many as asked for), oldest first.
    pub recent: Vec<Arc<Event>>,
    /// The newest sequence number ever issued.
    pub head: u64,
}

/// What is read back from a store while the service runs: replays older than memory holds,
/// and tasks that have left memory. Asynchronous, so the shared database answers without a
/// blocking bridge; a [`Store`] reads on a blocking thread ([`blocking`]).
pub trait History: Send + Sync + 'static {
    /// The events in scope with `after < seq <= upto`, oldest first; `None` if some of them are
    /// no longer kept.
    fn events_between(
        self: Arc<Self>,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> BoxFuture<'static, Result<Option<Vec<Arc<Event>>>, StoreError>>;

    /// One task as last stored, with its audit trail; `None` if the store never had it. Serves
    /// finished tasks that have left memory (`--keep-finished`).
    fn task(
        self: Arc<Self>,
        id: TaskId,
    ) -> BoxFuture<'static, Result<Option<Arc<Task>>, StoreError>>;
}

/// A store one process keeps its tasks in and journals every event to (SQLite). Calls block:
/// the journal thread makes the writes, and the service calls the rest through
/// `spawn_blocking`. (The shared database is no `Store`: it decides and writes its changes in
/// transactions of its own, see [`postgres`].)
pub trait Store: History {
    /// Everything needed to carry on after a restart, with at most `recent` of the newest events.
    fn load(&self, recent: usize) -> Result<Recovered, StoreError>;

    /// Appends `events` (in sequence order, none skipped), the task states they leave and the
    /// `deliveries` they make, and applies the outbox's `writes`, in one transaction that is on
    /// disk when this returns.
    fn append(
        &self,
        events: &[Arc<Event>],
        deliveries: &[NewDelivery],
        writes: &[OutboxWrite],
    ) -> Result<(), StoreError>;

    /// [`History::events_between`], blocking.
    fn read_events(
        &self,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> Result<Option<Vec<Arc<Event>>>, StoreError>;

    /// [`History::task`], blocking.
    fn read_task(&self, id: TaskId) -> Result<Option<Arc<Task>>, StoreError>;

    /// Drops the events `retention` no longer keeps (and submission keys older than
    /// [`StoredKey::KEEP`]); returns how many events.
    fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// The task a submission key made and that submission's digest, if the key was stored
    /// within [`StoredKey::KEEP`].
    fn submit_key(&self, _key: &StoredKey) -> Result<Option<(TaskId, Box<str>)>, StoreError> {
        Ok(None)
    }

    /// Is the store there and answering?
    fn check(&self) -> Result<(), StoreError>;

    /// Gives the store up after the last write: another instance may open it now (a restart
    /// within one process, as tests and embedders do).
    fn release(&self) {}
}

/// Runs a blocking store call on a blocking thread: how a [`Store`] answers [`History`].
pub async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read).await.unwrap_or_else(|e| {
        Err(StoreError::Decode(format!(
            "a read of the store stopped: {e}"
        )))
    })
}

/// Every [`Store`] answers [`History`] by reading on a blocking thread.
impl<S: Store> History for S {
    fn events_between(
        self: Arc<Self>,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> BoxFuture<'static, Result<Option<Vec<Arc<Event>>>, StoreError>> {
        Box::pin(blocking(move || self.read_events(after, upto, scope)))
    }

    fn task(
        self: Arc<Self>,
        id: TaskId,
    ) -> BoxFuture<'static, Result<Option<Arc<Task>>, StoreError>> {
        Box::pin(blocking(move || self.read_task(id)))
    }
}

/// The oldest time, in [`unix_ms`], of a submission key still honoured.
pub(crate) fn oldest_key_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc() - StoredKey::KEEP)
}

/// What both stores write for an event's time: milliseconds since the Unix epoch.
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// An event's time read back from [`unix_ms`].
pub(crate) fn from_unix_ms(seq: u64, ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Decode(format!("event {seq}'s time: {e}")))
}

/// A stored task's JSON, with the sequence number of the event that left it so.
pub(crate) fn decode_task(seq: u64, body: &str) -> Result<Task, StoreError> {
    let mut task: Task =
        serde_json::from_str(body).map_err(|e| StoreError::Decode(format!("a task: {e}")))?;
    task.seq = seq;
    Ok(task)
}

/// An event's kind from its stored columns: `status`, or `progress` with its attempt and text.
pub(crate) fn event_kind(
    seq: u64,
    kind: &str,
    attempt: Option<u32>,
    text: Option<&str>,
) -> Result<EventKind, StoreError> {
    match (kind, attempt, text) {
        ("status", _, _) => Ok(EventKind::Status),
        ("progress", Some(attempt), Some(text)) => Ok(EventKind::Progress {
            attempt,
            text: text.into(),
        }),
        _ => Err(StoreError::Decode(format!("event {seq}'s kind {kind:?}"))),
    }
}
