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
    store::{Recovered, Retention, Store, journal::JournalSender},
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
    store: Option<Arc<dyn Store>>,
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
    pub fn replicated(retention: Retention, store: Arc<dyn Store>, recovered: &Recovered) -> Self {
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
            let read = tokio::task::spawn_blocking(move || store.events_between(from, upto, scope));
            match read.await {
                Ok(Ok(Some(mut events))) => {
                    older.append(&mut events);
                    from = upto;
                }
                Ok(Ok(None)) => return Since::Gone,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot read old events back; the client resyncs");
                    return Since::Gone;
                }
                Err(error) => {
                    tracing::warn!(%error, "reading old events back stopped");
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
mod tests {
    use super::*;

    fn task() -> Arc<Task> {
        Arc::new(Task::new(
            TaskId::new(),
            "x".into(),
            3,
            crate::model::task::now(),
        ))
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

    fn durable_log(
        dir: &std::path::Path,
        retention: Retention,
    ) -> (EventLog, crate::store::journal::Journal) {
        use crate::store::{journal, sqlite::SqliteStore};
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir).unwrap());
        let recovered = store.load(10).unwrap();
        let (sender, receiver) = journal::channel();
        let log = EventLog::durable(retention, store.clone(), sender.clone(), &recovered);
        let durable = log.clone();
        let on_durable = Box::new(move |seq| durable.mark_durable(seq));
        let journal =
            journal::Journal::spawn(store, on_durable, &sender, receiver, retention).unwrap();
        (log, journal)
    }

    #[tokio::test]
    async fn a_durable_log_shows_an_event_only_once_the_journal_committed_it() {
        use crate::store::{journal, sqlite::SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let recovered = store.load(10).unwrap();
        // No writer runs: nothing becomes durable until this test says so.
        let (sender, _receiver) = journal::channel();
        let log = EventLog::durable(Retention::Count(10), store, sender, &recovered);
        let t = task();
        publish_for(&log, &t);
        assert_eq!(seqs(log.since(0, Scope::All)), Some(vec![]));
        assert!(log.snapshot(Scope::All).events.is_empty());
        assert_eq!(log.head(), 0);
        assert!(!log.wait_durable(1, std::time::Duration::ZERO).await);

        log.mark_durable(1);
        assert_eq!(seqs(log.since(0, Scope::All)), Some(vec![1]));
        assert_eq!(log.snapshot(Scope::All).events.len(), 1);
        assert!(log.wait_durable(1, std::time::Duration::ZERO).await);
    }

    #[tokio::test]
    async fn replay_reads_what_memory_no_longer_holds_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (log, journal) = durable_log(dir.path(), Retention::Count(2));
        let (a, b) = (task(), task());
        for t in [&a, &b, &a, &b, &a] {
            publish_for(&log, t);
        }
        assert!(
            log.wait_durable(5, std::time::Duration::from_secs(10))
                .await
        );
        assert_eq!(seqs(log.since(0, Scope::All)), None, "memory keeps two");
        let replayed = |since| seqs(since).expect("the store has them");
        assert_eq!(
            replayed(log.replay(0, Scope::All).await),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(replayed(log.replay(1, Scope::Task(a.id)).await), vec![3, 5]);
        assert_eq!(seqs(log.replay(6, Scope::All).await), None, "never issued");
        journal.close().await;
        drop(log);

        // After a restart the numbering carries on and the old events are still there.
        let (log, journal) = durable_log(dir.path(), Retention::Count(2));
        assert_eq!(log.head(), 5);
        assert_eq!(publish_for(&log, &b), 6);
        assert!(
            log.wait_durable(6, std::time::Duration::from_secs(10))
                .await
        );
        assert_eq!(replayed(log.replay(3, Scope::All).await), vec![4, 5, 6]);
        let snapshot: Vec<_> = log
            .snapshot(Scope::All)
            .events
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(snapshot, vec![5, 6]);
        journal.close().await;
    }
}
