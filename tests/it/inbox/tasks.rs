//! The inbox's 100,000 tasks, generated: each task is a pure function of its number, so the
//! tests compute every expectation (counts, filters, search hits, pages) from the same functions
//! rather than write it down.

use std::sync::Arc;

use hitl::{
    Hitl,
    task::{AttemptRecord, Decision, Task, TaskId, TaskStatus},
};
use time::macros::datetime;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_and_service, test_config};

pub(super) const TASKS: u128 = 100_000;

/// Task `k`'s id: ids sort as the numbers do, so task `TASKS - 1` is the newest.
fn id(k: u128) -> TaskId {
    TaskId(Uuid::from_u128(
        0x0192_0000_0000_7000_8000_0000_0000_0000 + k,
    ))
}

pub(super) fn status(k: u128) -> TaskStatus {
    match k % 100 {
        0..=4 => TaskStatus::WaitingForReview,
        5 => TaskStatus::Running,
        6 => TaskStatus::Pending,
        7..=16 => TaskStatus::Failed,
        17..=21 => TaskStatus::Cancelled,
        _ => TaskStatus::Completed,
    }
}

/// Every 701st task mentions the quarterly report in its input.
pub(super) fn in_input(k: u128) -> bool {
    k % 701 == 3
}

/// Every 503rd task that has an output mentions it there (in another case).
pub(super) fn in_output(k: u128) -> bool {
    k % 503 == 11 && has_output(k)
}

fn has_output(k: u128) -> bool {
    matches!(
        status(k),
        TaskStatus::WaitingForReview | TaskStatus::Completed
    )
}

fn task(k: u128) -> Task {
    let topic = if in_input(k) {
        "the Quarterly Report"
    } else {
        "an invoice batch"
    };
    let at = datetime!(2026-11-24 12:00:00 UTC);
    let mut task = Task::new(id(k), format!("Task {k:06}: check {topic}").into(), 3, at);
    task.status = status(k);
    if has_output(k) {
        let draft: Arc<str> = if in_output(k) {
            format!("Draft {k}: the QUARTERLY REPORT is attached").into()
        } else {
            format!("Draft {k}: done").into()
        };
        task.output = Some(draft.clone());
        if task.status == TaskStatus::Completed {
            task.final_result = Some(draft.clone());
            task.attempts.push(AttemptRecord {
                attempt: 1,
                output: draft,
                decision: Some(Decision::Approved),
                comment: None,
                edited_output: None,
                decided_at: Some(at),
                decided_by: None,
                timed_out: false,
                seq: 0,
            });
        }
    }
    task
}

/// A server whose registry holds the 100,000 generated tasks.
pub(super) async fn spawn_full_app() -> (TestApp, Hitl) {
    let (app, hitl) = spawn_app_and_service(test_config()).await;
    for k in 0..TASKS {
        hitl.registry.restore(Arc::new(task(k)), &hitl.shutdown);
    }
    (app, hitl)
}

/// The ids of the tasks `keep` accepts, newest first, as the API writes them.
pub(super) fn expected(keep: impl Fn(u128) -> bool) -> Vec<String> {
    (0..TASKS)
        .rev()
        .filter(|k| keep(*k))
        .map(|k| id(k).to_string())
        .collect()
}

pub(super) fn quarterly(k: u128) -> bool {
    in_input(k) || in_output(k)
}
