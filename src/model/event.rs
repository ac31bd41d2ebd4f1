//! What happened to a task, as a value: a numbered event with the task as it then was, which
//! tasks a watcher cares about, and how long events are kept.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use serde_json::json;
use time::OffsetDateTime;

use super::task::{Task, TaskId};

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The task's status (or attempt) changed; `Event::task` is its new state.
    Status,
    /// An intermediate result while an attempt runs.
    Progress { attempt: u32, text: Arc<str> },
}

/// One numbered event, with the task as it was when the event happened.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub kind: EventKind,
    pub task: Arc<Task>,
    /// The event's data on `/api/events`, serialised once for every stream that sends it (a
    /// thousand watchers of one task would otherwise serialise it a thousand times).
    pub json: std::sync::OnceLock<Arc<str>>,
}

impl Event {
    pub fn task_id(&self) -> TaskId {
        self.task.id
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            EventKind::Status => "status",
            EventKind::Progress { .. } => "progress",
        }
    }

    /// The event's data on `/api/events` (and in a webhook's `data`), as the contract gives it.
    pub fn data(&self) -> serde_json::Value {
        let task = &self.task;
        let (attempt, output) = match &self.kind {
            EventKind::Status => (task.attempt, task.output.clone()),
            EventKind::Progress { attempt, text } => (*attempt, Some(text.clone())),
        };
        let mut data = json!({
            "seq": self.seq,
            "task_id": task.id,
            "status": task.status,
            "attempt": attempt,
            "output": output,
            "final_result": task.final_result,
            "error": task.error,
            "at": self.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        });
        if self.kind == EventKind::Status {
            let fields = data.as_object_mut().expect("an object");
            // The decision this event recorded, if it recorded one.
            if let Some(decided) = task.attempts.iter().rev().find(|a| a.seq == self.seq) {
                fields.insert("decision".into(), json!(decided.decision));
                fields.insert("comment".into(), json!(decided.comment));
                fields.insert("decided_by".into(), json!(decided.decided_by));
            }
            if task.status.is_terminal() {
                fields.insert("outcome".into(), json!(task.outcome));
            }
        }
        data
    }
}

/// Which tasks a watcher cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Task(TaskId),
}

impl Scope {
    pub fn includes(self, id: TaskId) -> bool {
        match self {
            Scope::All => true,
            Scope::Task(task) => task == id,
        }
    }
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
