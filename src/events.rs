//! The event log: every change of every task, numbered, kept for replay, fanned out to watchers.
//!
//! One log serves every stream. Publishing assigns the next sequence number and appends the event
//! under one lock, so sequence order is publish order. Watchers never receive events pushed at
//! them: they wait on a `watch` of the head sequence number and then read what they have not seen
//! from the log. A slow watcher therefore never lags a channel and never blocks a publisher; if it
//! falls so far behind that its events were dropped from the log, it learns that and resyncs.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, RwLock},
};

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::task::{Task, TaskId};

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

/// The answer to "what happened after N?".
#[derive(Debug)]
pub enum Since {
    /// Every event in scope after N, in order, and the head sequence number they run up to.
    Events { events: Vec<Arc<Event>>, head: u64 },
    /// Some events after N are no longer kept (or N was never issued): start again from a snapshot.
    Gone,
}

/// The current state of every task in scope, as its latest status event.
#[derive(Debug)]
pub struct Snapshot {
    /// Ordered by sequence number, so a stream can send them with growing ids.
    pub events: Vec<Arc<Event>>,
    pub head: u64,
}

/// Cheap-clone handle to the shared log.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<RwLock<Inner>>,
    /// The sequence number of the newest event; watchers wait on it.
    head: watch::Sender<u64>,
}

struct Inner {
    head: u64,
    /// The newest events, oldest first, with contiguous sequence numbers.
    recent: VecDeque<Arc<Event>>,
    retain: usize,
    /// The latest status event of every task: the state a new watcher starts from.
    latest: HashMap<TaskId, Arc<Event>>,
}

impl EventLog {
    /// A log that keeps the newest `retain` events for replay (at least one).
    pub fn new(retain: usize) -> Self {
        let retain = retain.max(1);
        Self {
            inner: Arc::new(RwLock::new(Inner {
                head: 0,
                recent: VecDeque::with_capacity(retain.min(4096)),
                retain,
                latest: HashMap::new(),
            })),
            head: watch::Sender::new(0),
        }
    }

    /// Appends an event. `task` receives the sequence number before it is frozen into the event,
    /// so the task snapshot knows which event it belongs to.
    pub fn publish(&self, kind: EventKind, task: impl FnOnce(u64) -> Arc<Task>) -> Arc<Event> {
        let event = {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let seq = inner.head + 1;
            let event = Arc::new(Event {
                seq,
                at: crate::task::now(),
                kind,
                task: task(seq),
            });
            inner.head = seq;
            if inner.recent.len() == inner.retain {
                inner.recent.pop_front();
            }
            inner.recent.push_back(event.clone());
            if event.kind == EventKind::Status {
                inner.latest.insert(event.task_id(), event.clone());
            }
            event
        };
        self.head.send_replace(event.seq);
        event
    }

    /// The newest sequence number issued.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that changes whenever an event is published.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Every event in scope after `after`, or `Gone` if some of them are no longer kept.
    pub fn since(&self, after: u64, scope: Scope) -> Since {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if after > inner.head {
            return Since::Gone;
        }
        let first_kept = inner.recent.front().map_or(inner.head + 1, |e| e.seq);
        if after + 1 < first_kept {
            return Since::Gone;
        }
        let skip = (after + 1 - first_kept) as usize;
        let events = inner
            .recent
            .iter()
            .skip(skip)
            .filter(|e| scope.includes(e.task_id()))
            .cloned()
            .collect();
        Since::Events {
            events,
            head: inner.head,
        }
    }

    /// The latest status event of every task in scope.
    pub fn snapshot(&self, scope: Scope) -> Snapshot {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut events: Vec<_> = match scope {
            Scope::All => inner.latest.values().cloned().collect(),
            Scope::Task(id) => inner.latest.get(&id).cloned().into_iter().collect(),
        };
        events.sort_unstable_by_key(|e| e.seq);
        Snapshot {
            events,
            head: inner.head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Arc<Task> {
        Arc::new(Task::new(TaskId::new(), "x".into(), 3, crate::task::now()))
    }

    fn publish_for(log: &EventLog, task: &Arc<Task>) -> u64 {
        let task = task.clone();
        log.publish(EventKind::Status, move |seq| {
            let mut t = (*task).clone();
            t.seq = seq;
            Arc::new(t)
        })
        .seq
    }

    fn seqs(since: Since) -> Option<Vec<u64>> {
        match since {
            Since::Events { events, .. } => Some(events.iter().map(|e| e.seq).collect()),
            Since::Gone => None,
        }
    }

    #[test]
    fn sequence_numbers_grow_and_replay_is_exact() {
        let log = EventLog::new(10);
        let (a, b) = (task(), task());
        let s: Vec<u64> = [&a, &b, &a, &b]
            .iter()
            .map(|t| publish_for(&log, t))
            .collect();
        assert_eq!(s, vec![1, 2, 3, 4]);
        assert_eq!(seqs(log.since(1, Scope::All)), Some(vec![2, 3, 4]));
        assert_eq!(seqs(log.since(0, Scope::Task(a.id))), Some(vec![1, 3]));
        assert_eq!(seqs(log.since(4, Scope::All)), Some(vec![]));
    }

    #[test]
    fn replay_past_retention_or_from_the_future_is_gone() {
        let log = EventLog::new(2);
        let t = task();
        for _ in 0..5 {
            publish_for(&log, &t);
        }
        assert_eq!(seqs(log.since(3, Scope::All)), Some(vec![4, 5]));
        assert_eq!(seqs(log.since(2, Scope::All)), None, "event 3 was dropped");
        assert_eq!(seqs(log.since(9, Scope::All)), None, "never issued");
    }

    #[test]
    fn snapshot_holds_the_latest_status_of_each_task_in_seq_order() {
        let log = EventLog::new(10);
        let (a, b) = (task(), task());
        publish_for(&log, &a);
        publish_for(&log, &b);
        publish_for(&log, &a);
        log.publish(
            EventKind::Progress {
                attempt: 1,
                text: "half".into(),
            },
            |_| b.clone(),
        );
        let snap = log.snapshot(Scope::All);
        let got: Vec<_> = snap.events.iter().map(|e| (e.task_id(), e.seq)).collect();
        assert_eq!(got, vec![(b.id, 2), (a.id, 3)]);
        assert_eq!(snap.head, 4);
        assert_eq!(log.snapshot(Scope::Task(a.id)).events.len(), 1);
    }
}
