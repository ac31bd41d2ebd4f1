use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::*;
use crate::{events::EventLog, model::task::now};

fn id(n: u128) -> TaskId {
    TaskId(Uuid::from_u128(n))
}

/// A registry with tasks 1..=n, task k in status `status_of(k)` with input "task k".
fn filled(n: u128, status_of: impl Fn(u128) -> TaskStatus) -> Registry {
    let registry = Registry::new(EventLog::new(16));
    let shutdown = CancellationToken::new();
    for k in 1..=n {
        let mut task = Task::new(id(k), format!("task {k}").into(), 3, now());
        task.status = status_of(k);
        registry.restore(Arc::new(task), &shutdown);
    }
    registry
}

fn ids(page: &InboxPage) -> Vec<u128> {
    page.tasks.iter().map(|t| t.id.0.as_u128()).collect()
}

fn ask(page: usize, per_page: usize) -> InboxQuery {
    InboxQuery {
        page,
        per_page,
        ..InboxQuery::default()
    }
}

#[test]
fn pages_are_newest_first_without_gap_or_overlap() {
    let registry = filled(23, |_| TaskStatus::Completed);
    let pages: Vec<_> = (1..=3)
        .map(|p| Inbox::default().query(&registry, &ask(p, 10)))
        .collect();
    assert_eq!(ids(&pages[0]), (14..=23).rev().collect::<Vec<_>>());
    assert_eq!(ids(&pages[1]), (4..=13).rev().collect::<Vec<_>>());
    assert_eq!(ids(&pages[2]), [3, 2, 1], "the last page is short");
    assert!(pages.iter().all(|p| p.total == 23 && p.last_page() == 3));
    assert!(pages[2].has_previous() && !pages[2].has_next());
    let beyond = Inbox::default().query(&registry, &ask(4, 10));
    assert!(beyond.tasks.is_empty() && beyond.past_end());
    assert_eq!(
        Inbox::default()
            .query(&registry, &ask(1, usize::MAX))
            .tasks
            .len(),
        23
    );
    let huge = Inbox::default().query(&registry, &ask(usize::MAX, MAX_PER_PAGE));
    assert!(huge.tasks.is_empty(), "no overflow");
}

#[test]
fn status_filter_and_counts() {
    let status_of = |k: u128| TaskStatus::ALL[(k % 6) as usize];
    let registry = filled(600, status_of);
    let counts = Counts::of(&registry);
    assert!(counts.iter().all(|(_, n)| n == 100), "{counts:?}");
    assert_eq!(counts.total(), 600);
    let waiting = InboxQuery {
        status: Some(TaskStatus::WaitingForReview),
        ..ask(2, 30)
    };
    let page = Inbox::default().query(&registry, &waiting);
    assert_eq!(page.total, 100);
    assert!(
        page.tasks
            .iter()
            .all(|t| t.status == TaskStatus::WaitingForReview)
    );
    assert_eq!(
        ids(&page)[0],
        600 - 30 * 6 - 4,
        "page 2 starts after 30 waiting tasks"
    );
}

#[test]
fn counts_follow_every_change() {
    let registry = filled(3, |_| TaskStatus::Running);
    let shutdown = CancellationToken::new();
    let mut task = (*registry.get(id(2)).unwrap()).clone();
    task.status = TaskStatus::Completed;
    registry.restore(Arc::new(task), &shutdown);
    let counts = Counts::of(&registry);
    assert_eq!(
        counts.get(TaskStatus::Running),
        2,
        "a replaced task is not counted twice"
    );
    assert_eq!(counts.get(TaskStatus::Completed), 1);
    registry
        .finish_attempt(id(1), 1, "done".into())
        .expect("running -> waiting");
    let counts = Counts::of(&registry);
    assert_eq!(counts.get(TaskStatus::Running), 1);
    assert_eq!(counts.get(TaskStatus::WaitingForReview), 1);
    assert_eq!(counts.total(), 3);
}

#[test]
fn search_counts_every_match() {
    let registry = filled(120, |_| TaskStatus::Pending);
    // "task 1" is in tasks 1, 10..=19 and 100..=120.
    let search = InboxQuery {
        q: Some("TASK 1".into()),
        ..ask(1, 25)
    };
    let page = Inbox::default().query(&registry, &search);
    assert_eq!(page.total, 1 + 10 + 21);
    assert_eq!(ids(&page)[..3], [120, 119, 118]);
}

#[test]
fn the_next_waiting_task_is_the_oldest_other_one() {
    let waiting = |k| {
        if k % 2 == 0 {
            TaskStatus::WaitingForReview
        } else {
            TaskStatus::Running
        }
    };
    let registry = filled(10, waiting);
    assert_eq!(next_waiting(&registry, id(99)).unwrap().id, id(2));
    assert_eq!(next_waiting(&registry, id(2)).unwrap().id, id(4));
    let finished = filled(3, |_| TaskStatus::Completed);
    assert!(next_waiting(&finished, id(1)).is_none());
}

#[test]
fn bad_fields_are_refused_in_words() {
    let parse = |fields| InboxQuery::parse(fields, PER_PAGE);
    let fields = |status, q, page, per_page| InboxFields {
        status,
        q,
        page,
        per_page,
    };
    let ok = parse(fields(Some("failed"), Some("  a b "), Some("3"), None)).unwrap();
    assert_eq!(ok.status, Some(TaskStatus::Failed));
    assert_eq!(ok.q.as_deref(), Some("a b"), "trimmed");
    assert_eq!((ok.page, ok.per_page), (3, PER_PAGE));
    let blank = parse(fields(Some(""), Some("   "), Some(""), Some(""))).unwrap();
    assert_eq!(blank, InboxQuery::default());
    let long = "x".repeat(MAX_SEARCH_BYTES + 1);
    for (bad, field) in [
        (fields(Some("done"), None, None, None), "status"),
        (fields(None, Some(&long), None, None), "q"),
        (fields(None, None, Some("0"), None), "page"),
        (fields(None, None, Some("-1"), None), "page"),
        (fields(None, None, Some("two"), None), "page"),
        (fields(None, None, None, Some("0")), "per_page"),
        (fields(None, None, None, Some("501")), "per_page"),
    ] {
        assert_eq!(parse(bad).unwrap_err().field(), field);
    }
    let far = parse(fields(None, None, Some("99999999999999999999999"), None)).unwrap();
    assert_eq!(
        far.page,
        usize::MAX,
        "a number too big is past the end, not a mistake"
    );
    let too_many = fields(None, None, None, Some("99999999999999999999999"));
    assert_eq!(parse(too_many).unwrap_err().field(), "per_page");
    let exact = "x".repeat(MAX_SEARCH_BYTES);
    assert!(parse(fields(None, Some(&exact), None, None)).is_ok());
}

#[test]
fn the_text_index_follows_every_change_and_stays_compact() {
    let registry = filled(50, |_| TaskStatus::Running);
    let inbox = Inbox::default();
    let total = |q: &str, status| {
        let query = InboxQuery {
            q: Some(q.into()),
            status,
            ..ask(1, 100)
        };
        inbox.query(&registry, &query).total
    };
    let dead = || inbox.texts.lock().unwrap().dead_fraction();
    assert_eq!(total("TASK 4", None), 11, "task 4 and 40..=49");
    for k in 1..=50 {
        let output = if k == 4 { "A needle here" } else { "x" };
        registry.finish_attempt(id(k), 1, output.into()).unwrap();
    }
    assert_eq!(total("needle", None), 1);
    assert_eq!(total("needle", Some(TaskStatus::WaitingForReview)), 1);
    assert_eq!(total("needle", Some(TaskStatus::Running)), 0);
    assert!(dead() > 0.0, "the first versions are dead");
    for k in 1..=50 {
        registry.fail(id(k), "stopped".into()).unwrap();
    }
    assert_eq!(total("needle", Some(TaskStatus::Failed)), 1);
    assert_eq!(dead(), 0.0, "more than half was dead, so it was rebuilt");
    assert_eq!(total("task 4", None), 11);
    // A task put back from the store publishes nothing, but is found all the same.
    let mut restored = Task::new(id(99), "Restored needle".into(), 3, now());
    restored.status = TaskStatus::Completed;
    registry.restore(Arc::new(restored), &CancellationToken::new());
    assert_eq!(total("needle", None), 2);
}
