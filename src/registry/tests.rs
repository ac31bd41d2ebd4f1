//! Tests of the registry: finished tasks leaving memory.

use std::time::Duration;

use super::*;
use crate::model::event::Retention;

fn finished(hours_ago: i64) -> Arc<Task> {
    let at = now() - time::Duration::hours(hours_ago);
    let mut task = Task::new(TaskId::new(), "text".into(), 3, at);
    task.status = TaskStatus::Completed;
    task.updated_at = at;
    Arc::new(task)
}

#[test]
fn finished_tasks_older_than_the_age_kept_leave_and_live_ones_stay() {
    let shutdown = CancellationToken::new();
    let registry = Registry::new(EventLog::new(10))
        .keep_finished(Some(Retention::Age(Duration::from_secs(3600))));
    let (old, young) = (finished(3), finished(0));
    let mut waiting = Task::new(TaskId::new(), "text".into(), 3, now());
    waiting.status = TaskStatus::WaitingForReview;
    let waiting = Arc::new(waiting);
    for task in [&old, &young, &waiting] {
        registry.restore(task.clone(), &shutdown);
    }
    registry.evict_finished();
    assert!(registry.get(old.id).is_none());
    assert!(registry.get(young.id).is_some());
    assert!(registry.get(waiting.id).is_some());
    let counts = registry.count_by_status();
    let completed = TaskStatus::ALL
        .iter()
        .position(|s| *s == TaskStatus::Completed);
    assert_eq!(counts[completed.unwrap()], 1);
}

#[test]
fn without_a_limit_every_finished_task_stays() {
    let shutdown = CancellationToken::new();
    let registry = Registry::new(EventLog::new(10));
    let old = finished(24 * 365);
    registry.restore(old.clone(), &shutdown);
    registry.evict_finished();
    assert!(registry.get(old.id).is_some());
}
