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
pub mod postgres;
pub mod sqlite;

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use time::OffsetDateTime;

use crate::{
    events::{Event, EventKind, Scope},
    submissions::StoredKey,
    task::{Task, TaskId},
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

/// How long events are kept for clients that reconnect with `Last-Event-ID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// The newest N events.
    Count(u64),
    /// Events younger than this.
    Age(Duration),
}

impl Retention {
    /// Events the in-memory log keeps for replay when nothing older can be read back from a
    /// store. An age bound alone could grow without limit, so memory also stops at this count.
    pub const MEMORY_CAP: usize = 100_000;
    /// With a store behind it the in-memory log only needs the recent tail: older events are
    /// read back from the store.
    pub const DURABLE_MEMORY_CAP: usize = 10_000;
}

impl Default for Retention {
    fn default() -> Self {
        Self::Count(100_000)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Age(age) => write!(f, "{}s", age.as_secs()),
        }
    }
}

impl FromStr for Retention {
    type Err = String;

    /// `100000` keeps that many events; `90s`, `30m`, `24h` or `7d` keeps events that young.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let unit = match s.chars().last() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => {
                return match s.parse::<u64>() {
                    Ok(0) | Err(_) => Err(format!(
                        "{s:?} is neither a count of events (1 or more) nor an age such as 90s, 30m, 24h or 7d"
                    )),
                    Ok(n) => Ok(Self::Count(n)),
                };
            }
        };
        const CENTURY: u64 = 100 * 365 * 86_400;
        match s[..s.len() - 1].trim().parse::<u64>() {
            Ok(n) if n > 0 && n.saturating_mul(unit) <= CENTURY => {
                Ok(Self::Age(Duration::from_secs(n * unit)))
            }
            _ => Err(format!(
                "{s:?} is not an age such as 90s, 30m, 24h or 7d (a whole number, more than 0, up to a century)"
            )),
        }
    }
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

/// A place that keeps tasks and their events durably. Calls block: the journal thread makes the
/// writes and the service calls the rest through `spawn_blocking`.
pub trait Store: Send + Sync + 'static {
    /// Everything needed to carry on after a restart, with at most `recent` of the newest events.
    fn load(&self, recent: usize) -> Result<Recovered, StoreError>;

    /// Appends `events` (in sequence order, none skipped) and the task states they leave, in one
    /// transaction that is on disk when this returns.
    fn append(&self, events: &[Arc<Event>]) -> Result<(), StoreError>;

    /// The events in scope with `after < seq <= upto`, oldest first; `None` if some of them are
    /// no longer kept.
    fn events_between(
        &self,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> Result<Option<Vec<Arc<Event>>>, StoreError>;

    /// One task as last stored, with its audit trail; `None` if the store never had it. Serves
    /// finished tasks that have left memory (`--keep-finished`).
    fn task(&self, id: TaskId) -> Result<Option<Arc<Task>>, StoreError>;

    /// Drops the events `retention` no longer keeps (and submission keys older than
    /// [`crate::submissions::KEEP`]); returns how many events.
    fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// The task a submission key made and that submission's digest, if the key was stored
    /// within [`crate::submissions::KEEP`].
    fn submit_key(&self, _key: &StoredKey) -> Result<Option<(TaskId, Box<str>)>, StoreError> {
        Ok(None)
    }

    /// Is the store there and answering?
    fn check(&self) -> Result<(), StoreError>;

    /// Gives the store up after the last write: another instance may open it now (a restart
    /// within one process, as tests and embedders do).
    fn release(&self) {}
}

/// The oldest time, in [`unix_ms`], of a submission key still honoured.
pub(crate) fn oldest_key_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc() - crate::submissions::KEEP)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_a_count_or_an_age() {
        assert_eq!("500".parse(), Ok(Retention::Count(500)));
        assert_eq!("90s".parse(), Ok(Retention::Age(Duration::from_secs(90))));
        assert_eq!(
            "24h".parse(),
            Ok(Retention::Age(Duration::from_secs(86_400)))
        );
        assert_eq!(
            "7d".parse(),
            Ok(Retention::Age(Duration::from_secs(7 * 86_400)))
        );
        for bad in ["0", "0h", "-3", "h", "12x", "", "1.5h", "9999999d"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad:?} is refused");
        }
    }
}
