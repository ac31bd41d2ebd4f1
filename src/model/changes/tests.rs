//! Tests of the rules of every change.

use super::*;
use crate::model::task::{ReviewTimeout, TaskId};

/// A task waiting for review of `attempt` of 2, with an output.
fn waiting(attempt: u32) -> Task {
    let mut task = Task::new(TaskId::new(), "input".into(), 2, now());
    task.status = TaskStatus::WaitingForReview;
    task.attempt = attempt;
    task.output = Some("draft".into());
    task
}

fn feedback(attempt: u32, decision: Decision) -> Feedback {
    Feedback {
        attempt,
        decision,
        comment: Some("why".into()),
        output: None,
        at: now(),
        by: None,
        output_sha256: None,
        timed_out: false,
    }
}

#[test]
fn a_decision_in_one_step_leads_where_the_flow_would() {
    let mut approved = waiting(1);
    decide(&mut approved, &feedback(1, Decision::Approved)).unwrap();
    assert_eq!(approved.status, TaskStatus::Completed);
    assert_eq!(approved.final_result.as_deref(), Some("draft"));

    let mut again = waiting(1);
    let entries = decide(&mut again, &feedback(1, Decision::Rejected)).unwrap();
    assert_eq!((again.status, again.attempt), (TaskStatus::Running, 2));
    assert_eq!(again.output, None);
    assert_eq!(entries.len(), 2, "decided, and the next attempt started");

    let mut last = waiting(2);
    decide(&mut last, &feedback(2, Decision::Rejected)).unwrap();
    assert_eq!(last.status, TaskStatus::Failed);
    assert!(
        last.error
            .as_deref()
            .unwrap()
            .contains("last allowed attempt")
    );

    let mut final_ = waiting(1);
    decide(&mut final_, &feedback(1, Decision::RejectedFinal)).unwrap();
    assert_eq!(final_.status, TaskStatus::Failed);
    assert_eq!(
        final_.error.as_deref(),
        Some("Rejected by the reviewer: why")
    );
}

#[test]
fn a_decision_for_another_attempt_or_status_changes_nothing() {
    let mut task = waiting(2);
    let before = task.clone();
    assert!(decide(&mut task, &feedback(1, Decision::Approved)).is_err());
    task.status = TaskStatus::Running;
    assert!(decide(&mut task, &feedback(2, Decision::Approved)).is_err());
    task.status = TaskStatus::WaitingForReview;
    assert_eq!(task, before);
}

#[test]
fn a_deadline_applies_its_policy_once_and_not_after_it_moved() {
    let mut task = waiting(1);
    task.review_timeout = Some(ReviewTimeout {
        seconds: 60,
        policy: TimeoutPolicy::Fail,
    });
    let due = now();
    task.review_deadline = Some(due);
    let later = due + time::Duration::seconds(1);
    assert_eq!(
        time_out(&mut task.clone(), 1, later),
        Err(Refused::DeadlineMoved)
    );
    time_out(&mut task, 1, due).unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert!(task.attempts[0].timed_out);
    assert!(time_out(&mut task, 1, due).is_err(), "decided already");
}

#[test]
fn starting_an_attempt_already_running_records_nothing() {
    let mut task = waiting(1);
    task.status = TaskStatus::Running;
    assert_eq!(start_attempt(&mut task, 1), Ok(Vec::new()));
    assert!(start_attempt(&mut task, 2).is_err());
}
