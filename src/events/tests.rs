//! Tests of the event log: publish, replay, retention, durability.

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
    let journal = journal::Journal::spawn(
        store,
        on_durable,
        &sender,
        receiver,
        retention,
        journal::Outgoing::none(),
    )
    .unwrap();
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
