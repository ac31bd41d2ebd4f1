//! Tests of the SQLite store.

use std::time::Duration;

use super::*;
use crate::model::{
    event::EventKind,
    task::{TaskId, TaskStatus, now},
};

fn status_event(seq: u64, task: &Task, status: TaskStatus, at: OffsetDateTime) -> Arc<Event> {
    Arc::new(Event {
        seq,
        at,
        kind: EventKind::Status,
        task: Arc::new(Task {
            seq,
            status,
            updated_at: at,
            ..task.clone()
        }),
        json: Default::default(),
    })
}

fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Five events: a's pending, running, a progress report, waiting; then b's pending.
fn journal(store: &SqliteStore) -> (Task, Task) {
    let a = Task::new(TaskId::new(), "first".into(), 3, now());
    let b = Task::new(TaskId::new(), "second".into(), 3, now());
    let running = status_event(2, &a, TaskStatus::Running, now());
    let progress = Arc::new(Event {
        seq: 3,
        at: now(),
        kind: EventKind::Progress {
            attempt: 1,
            text: "half way".into(),
        },
        task: running.task.clone(),
        json: Default::default(),
    });
    store
        .append(
            &[
                status_event(1, &a, TaskStatus::Pending, now()),
                running,
                progress,
            ],
            &[],
            &[],
        )
        .unwrap();
    store
        .append(
            &[
                status_event(4, &a, TaskStatus::WaitingForReview, now()),
                status_event(5, &b, TaskStatus::Pending, now()),
            ],
            &[],
            &[],
        )
        .unwrap();
    (a, b)
}

#[test]
fn an_empty_directory_gets_the_current_schema_and_no_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("new")).unwrap();
    let version: i64 = store
        .reader()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let recovered = store.load(100).unwrap();
    assert!(recovered.tasks.is_empty() && recovered.recent.is_empty());
    assert_eq!(recovered.head, 0);
}

#[test]
fn what_was_appended_is_rebuilt_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = journal(&SqliteStore::open(dir.path()).unwrap());

    let store = SqliteStore::open(dir.path()).unwrap();
    let recovered = store.load(100).unwrap();
    assert_eq!(recovered.head, 5);
    assert_eq!(seqs(&recovered.recent), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        recovered.recent[2].kind,
        EventKind::Progress {
            attempt: 1,
            text: "half way".into()
        }
    );
    assert_eq!(
        recovered.recent[2].task.seq, 2,
        "progress keeps its task's state"
    );
    let mut tasks: Vec<_> = recovered
        .tasks
        .iter()
        .map(|t| (t.id, t.status, t.seq, t.input.to_string()))
        .collect();
    tasks.sort_by_key(|t| t.2);
    assert_eq!(
        tasks,
        vec![
            (a.id, TaskStatus::WaitingForReview, 4, "first".into()),
            (b.id, TaskStatus::Pending, 5, "second".into()),
        ]
    );
    assert_eq!(seqs(&store.load(2).unwrap().recent), vec![4, 5]);
}

#[test]
fn count_retention_keeps_the_newest_and_reads_know_what_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let (a, _) = journal(&store);
    assert_eq!(store.prune(Retention::Count(2)).unwrap(), 3);

    let kept = store.read_events(3, 5, Scope::All).unwrap();
    assert_eq!(kept.as_deref().map(seqs), Some(vec![4, 5]));
    let only_a = store.read_events(3, 5, Scope::Task(a.id)).unwrap();
    assert_eq!(only_a.as_deref().map(seqs), Some(vec![4]));
    assert!(
        store.read_events(2, 5, Scope::All).unwrap().is_none(),
        "3 is gone"
    );
    assert_eq!(
        store.load(100).unwrap().tasks.len(),
        2,
        "tasks are never pruned"
    );
    assert_eq!(store.load(100).unwrap().head, 5);
}

#[test]
fn age_retention_drops_events_older_than_the_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let task = Task::new(TaskId::new(), "old".into(), 3, now());
    let long_ago = now() - Duration::from_secs(7200);
    store
        .append(
            &[
                status_event(1, &task, TaskStatus::Pending, long_ago),
                status_event(2, &task, TaskStatus::Running, long_ago),
                status_event(3, &task, TaskStatus::WaitingForReview, now()),
            ],
            &[],
            &[],
        )
        .unwrap();
    let hour = Retention::Age(Duration::from_secs(3600));
    assert_eq!(store.prune(hour).unwrap(), 2);
    assert_eq!(seqs(&store.load(100).unwrap().recent), vec![3]);
    assert_eq!(store.prune(hour).unwrap(), 0);
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(dir.path()).unwrap();
    let error = SqliteStore::open(dir.path()).err().expect("refused");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Locked { .. }), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    drop(first);
    SqliteStore::open(dir.path()).expect("free again once the first is gone");
}

#[test]
fn a_file_that_is_not_a_database_is_reported_not_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = "this is not a database, it is a shopping list\n".repeat(200);
    std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
    let error = SqliteStore::open(dir.path()).err().expect("refused");
    assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
    assert!(
        error.to_string().contains("move the data directory aside"),
        "{error}"
    );
    let after = std::fs::read_to_string(dir.path().join(DB_FILE)).unwrap();
    assert_eq!(after, garbage, "the file is left as it was");
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = SqliteStore::open(dir.path()).err().expect("refused");
    assert!(
        matches!(error, StoreError::TooNew { found: 99, .. }),
        "{error}"
    );
}

#[test]
fn a_directory_gets_a_marker_naming_its_database_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let marker = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
    assert!(marker.contains("\nstore "), "{marker}");
    // A directory from before markers (or a crash before its marker was written) gets one
    // at its next start, naming the same database.
    std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let again = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
    assert_eq!(again, marker, "the same store id");
}

#[test]
fn another_stores_database_or_one_without_tables_is_refused_with_the_marker_named() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = SqliteStore::open(ours.path()).unwrap();
    journal(&store);
    drop(store);
    drop(SqliteStore::open(theirs.path()).unwrap());
    std::fs::copy(theirs.path().join(DB_FILE), ours.path().join(DB_FILE)).unwrap();
    for beside in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(ours.path().join(format!("{DB_FILE}{beside}")));
    }
    let error = SqliteStore::open(ours.path()).err().expect("refused");
    assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("not the database this directory was created with"),
        "{error}"
    );
    for beside in ["-wal", "-shm"] {
        let path = ours.path().join(format!("{DB_FILE}{beside}"));
        assert!(!path.exists(), "the refusal made no {beside} file");
    }

    // A database SQLite reads as new (every change lost) while the marker says data was
    // here: refused, and no schema is migrated into it.
    let fresh = Connection::open(ours.path().join(DB_FILE).with_extension("new")).unwrap();
    fresh.pragma_update(None, "journal_mode", "WAL").unwrap();
    drop(fresh);
    std::fs::rename(
        ours.path().join(DB_FILE).with_extension("new"),
        ours.path().join(DB_FILE),
    )
    .unwrap();
    let error = SqliteStore::open(ours.path()).err().expect("refused");
    assert!(
        error.to_string().contains("holds no hitl tables"),
        "{error}"
    );
    let version: i64 = Connection::open(ours.path().join(DB_FILE))
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 0, "nothing migrated");
}
