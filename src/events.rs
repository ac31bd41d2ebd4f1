//! The event log: every change of every task, numbered, kept for replay, fanned out to watchers.
//!
//! One log serves every stream. Publishing assigns the next sequence number and appends the event
//! under one lock, so sequence order is publish order. Watchers never receive events pushed at
//! them: they wait on a `watch` of the head sequence number and then read what they have not seen
//! from the log. A slow watcher therefore never lags a channel and never blocks a publisher; if it
//! falls so far behind that its events were dropped from the log, it learns that and resyncs.
//!
//! With a store behind it, an event is published (numbered, kept) at once but becomes visible
//! (to streams, snapshots and [`EventLog::wait_durable`]) only when the journal has committed it,
//! so no client ever sees an event that a crash could take back and number again. Replays older
//! than the in-memory tail are read back from the store.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, RwLock},
    time::Duration,
};

use time::OffsetDateTime;
use tokio::sync::watch;

pub use crate::model::event::{Event, EventKind, Scope};
use crate::{
    model::task::{Task, TaskId},
    store::{History, Recovered, Retention, Store, journal::JournalSender},
};

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
    /// The sequence number of the newest durable event; watchers wait on it.
    head: watch::Sender<u64>,
    /// Where events go to be made durable; `None` in memory mode, where publishing is enough.
    journal: Option<JournalSender>,
    /// Where events older than the in-memory tail are read back from.
    store: Option<Arc<dyn History>>,
}

struct Inner {
    /// The newest sequence number issued.
    issued: u64,
    /// The newest sequence number that is durable: streams and snapshots go no further.
    durable: u64,
    /// The newest events, oldest first, with contiguous sequence numbers.
    recent: VecDeque<Arc<Event>>,
    /// How many events `recent` keeps, and for how long at most.
    retain: usize,
    max_age: Option<Duration>,
    /// The latest durable status event of every task: the state a new watcher starts from.
    latest: HashMap<TaskId, Arc<Event>>,
}

impl Inner {
    fn new(retention: Retention, cap: usize, head: u64) -> Self {
        let (retain, max_age) = match retention {
            Retention::Count(n) => (usize::try_from(n).unwrap_or(usize::MAX).min(cap), None),
            Retention::Age(age) => (cap, Some(age)),
        };
        Self {
            issued: head,
            durable: head,
            recent: VecDeque::with_capacity(retain.clamp(1, 4096)),
            retain: retain.max(1),
            max_age,
            latest: HashMap::new(),
        }
    }

    /// Marks every event up to `upto` durable, and the status events among them as the latest.
    fn advance(&mut self, upto: u64) {
        if let Some(first) = self.recent.front().map(|e| e.seq) {
            let from = usize::try_from((self.durable + 1).saturating_sub(first)).unwrap_or(0);
            for event in self.recent.iter().skip(from) {
                if event.seq > upto {
                    break;
                }
                if event.kind == EventKind::Status {
                    self.latest.insert(event.task_id(), event.clone());
                }
            }
        }
        self.durable = self.durable.max(upto);
    }

    /// Drops the oldest events past the count or age kept; never one that is not yet durable.
    fn trim(&mut self, now: OffsetDateTime) {
        let cutoff = self
            .max_age
            .and_then(|age| now.checked_sub(age.try_into().ok()?));
        while let Some(front) = self.recent.front() {
            let too_many = self.recent.len() > self.retain;
            let too_old = cutoff.is_some_and(|cutoff| front.at < cutoff);
            if !(too_many || too_old) || front.seq > self.durable {
                break;
            }
            self.recent.pop_front();
        }
    }
}

impl EventLog {
    /// A memory-only log that keeps the newest `retain` events for replay (at least one).
    pub fn new(retain: usize) -> Self {
        Self::in_memory(Retention::Count(retain as u64))
    }

    /// A memory-only log: an event is final once published.
    pub fn in_memory(retention: Retention) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner::new(retention, Retention::MEMORY_CAP, 0))),
            head: watch::Sender::new(0),
            journal: None,
            store: None,
        }
    }

    /// A log over a store: it carries on from what the store recovered, queues every event on
    /// `journal`, and shows an event to watchers only once the journal reports it durable.
    pub fn durable(
        retention: Retention,
        store: Arc<dyn Store>,
        journal: JournalSender,
        recovered: &Recovered,
    ) -> Self {
        let mut log = Self::durable_inner(retention, recovered);
        log.journal = Some(journal);
        log.store = Some(store);
        log
    }

    /// A replica of a shared journal (`--store postgres`): it starts where `recovered` ends and
    /// grows only by [`Self::replicate`], in the database's order; nothing is published here.
    pub fn replicated(
        retention: Retention,
        store: Arc<dyn History>,
        recovered: &Recovered,
    ) -> Self {
        let mut log = Self::durable_inner(retention, recovered);
        log.store = Some(store);
        log
    }

    fn durable_inner(retention: Retention, recovered: &Recovered) -> Self {
        let mut inner = Inner::new(retention, Retention::DURABLE_MEMORY_CAP, recovered.head);
        inner.recent.extend(recovered.recent.iter().cloned());
        for task in &recovered.tasks {
            let event = Arc::new(Event {
                seq: task.seq,
                at: task.updated_at,
                kind: EventKind::Status,
                task: task.clone(),
                json: Default::default(),
            });
            inner.latest.insert(task.id, event);
        }
        inner.trim(crate::model::task::now());
        Self {
            inner: Arc::new(RwLock::new(inner)),
            head: watch::Sender::new(recovered.head),
            journal: None,
            store: None,
        }
    }

    /// Appends an event numbered elsewhere (the shared journal), durable already. Only the next
    /// in sequence is taken: false for one already here or one that would leave a gap.
    pub fn replicate(&self, event: Arc<Event>) -> bool {
        let seq = event.seq;
        {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            if seq != inner.issued + 1 {
                return false;
            }
            inner.issued = seq;
            inner.recent.push_back(event);
            inner.advance(seq);
            inner.trim(crate::model::task::now());
        }
        metrics::counter!("hitl_events_replicated_total").increment(1);
        self.advance_head(seq);
        true
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event. `task` receives the sequence number before it is frozen into the event,
    /// so the task snapshot knows which event it belongs to.
    pub fn publish(&self, kind: EventKind, task: impl FnOnce(u64) -> Arc<Task>) -> Arc<Event> {
        let event = {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let seq = inner.issued + 1;
            let event = Arc::new(Event {
                seq,
                at: crate::model::task::now(),
                kind,
                task: task(seq),
                json: Default::default(),
            });
            inner.issued = seq;
            inner.recent.push_back(event.clone());
            // Queued under the lock, so the journal receives events in sequence order.
            match &self.journal {
                Some(journal) => {
                    if !journal.append(event.clone()) {
                        tracing::error!(seq, "the journal has stopped; this event is not saved");
                    }
                }
                None => inner.advance(seq),
            }
            inner.trim(event.at);
            event
        };
        metrics::counter!("hitl_events_published_total").increment(1);
        if self.journal.is_none() {
            self.advance_head(event.seq);
        }
        event
    }

    /// Called by the journal once every event up to `upto` is on disk.
    pub fn mark_durable(&self, upto: u64) {
        {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            inner.advance(upto);
            inner.trim(crate::model::task::now());
        }
        self.advance_head(upto);
    }

    /// Moves the watched head forward only: two publishers that leave the lock in one order may
    /// announce in the other, and the head must never go back.
    fn advance_head(&self, seq: u64) {
        self.head.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }

    /// Waits until the event `seq` is durable; false if that takes longer than `patience` (the
    /// store is failing).
    pub async fn wait_durable(&self, seq: u64, patience: Duration) -> bool {
        let mut head = self.head.subscribe();
        matches!(
            tokio::time::timeout(patience, head.wait_for(|head| *head >= seq)).await,
            Ok(Ok(_))
        )
    }

    /// Lets a task's latest state go (it left memory; see `Registry::evict_finished`).
    pub fn forget(&self, id: TaskId) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .latest
            .remove(&id);
    }

    /// The newest sequence number issued, durable or not.
    pub fn issued(&self) -> u64 {
        self.read().issued
    }

    /// The newest durable sequence number.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that changes whenever events become visible.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Every durable event in scope after `after` that memory still holds, or `Gone`.
    pub fn since(&self, after: u64, scope: Scope) -> Since {
        let inner = self.read();
        if after > inner.durable {
            return Since::Gone;
        }
        let first_kept = inner.recent.front().map_or(inner.durable + 1, |e| e.seq);
        if after + 1 < first_kept {
            return Since::Gone;
        }
        let skip = (after + 1 - first_kept) as usize;
        let events = inner
            .recent
            .iter()
            .skip(skip)
            .take_while(|e| e.seq <= inner.durable)
            .filter(|e| scope.includes(e.task_id()))
            .cloned()
            .collect();
        Since::Events {
            events,
            head: inner.durable,
        }
    }

    /// Every event in scope after `after`: from memory, and from the store for events memory no
    /// longer holds. `Gone` if the store does not keep them either.
    pub async fn replay(&self, after: u64, scope: Scope) -> Since {
        let mut older = Vec::new();
        let mut from = after;
        // Each round reads up to where memory begins; memory only moves forward, so a round or
        // two is enough unless the log is racing far ahead of this reader.
        for _ in 0..8 {
            if let Since::Events { mut events, head } = self.since(from, scope) {
                older.append(&mut events);
                return Since::Events {
                    events: older,
                    head,
                };
            }
            let Some(store) = self.store.clone() else {
                return Since::Gone;
            };
            let (first_kept, durable) = {
                let inner = self.read();
                (inner.recent.front().map(|e| e.seq), inner.durable)
            };
            if from >= durable {
                return Since::Gone;
            }
            let upto = first_kept.map_or(durable, |first| first - 1);
            match store.events_between(from, upto, scope).await {
                Ok(Some(mut events)) => {
                    older.append(&mut events);
                    from = upto;
                }
                Ok(None) => return Since::Gone,
                Err(error) => {
                    tracing::warn!(%error, "cannot read old events back; the client resyncs");
                    return Since::Gone;
                }
            }
        }
        Since::Gone
    }

    /// The latest durable status event of every task in scope.
    pub fn snapshot(&self, scope: Scope) -> Snapshot {
        let inner = self.read();
        let mut events: Vec<_> = match scope {
            Scope::All => inner.latest.values().cloned().collect(),
            Scope::Task(id) => inner.latest.get(&id).cloned().into_iter().collect(),
        };
        events.sort_unstable_by_key(|e| e.seq);
        Snapshot {
            events,
            head: inner.durable,
        }
    }
}

#[cfg(test)]
mod tests;
