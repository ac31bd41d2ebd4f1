//! Review deadlines on tokio's paused clock: a deadline applies its policy exactly once, never
//! before it passes, never beside a person's decision; an extension moves it; `none` only marks
//! it. (Re-arming after a restart is in `durability.rs`, with the real binary.)

use std::{sync::Arc, time::Duration};

use hitl::{
    Hitl,
    audit::AuditEvent,
    auth::Actor,
    config::{Config, StoreKind},
    input::{DecisionFields, DecisionRequest, NewTask},
    registry::TransitionError,
    task::{Decision, Task, TaskId, TaskStatus},
};
use tokio::time::{Instant, advance};
use tokio_util::sync::CancellationToken;

fn service(default_timeout: Option<Duration>) -> Hitl {
    let config = Config {
        store: StoreKind::Memory,
        process_delay_ms: 0,
        review_timeout: default_timeout,
        ..Config::default()
    };
    Hitl::open(&config, CancellationToken::new()).expect("a memory service opens")
}

async fn submit(hitl: &Hitl, secs: Option<i64>, policy: &str, max_attempts: i64) -> TaskId {
    let new = NewTask::parse(Some("Check the figures"), Some(max_attempts))
        .and_then(|new| new.with_deadline("review_timeout_secs", secs, Some(policy)))
        .expect("a valid submission");
    hitl.submit(new, &Actor::anyone())
        .await
        .expect("accepted")
        .id
}

/// Waits (on the paused clock, which runs on to the next timer whenever all is idle) until the
/// task is as asked.
async fn until(hitl: &Hitl, id: TaskId, done: impl Fn(&Task) -> bool) -> Arc<Task> {
    let mut changes = hitl.registry.watch(id).expect("the task exists");
    loop {
        let task = hitl.registry.get(id).expect("the task exists");
        if done(&task) {
            return task;
        }
        changes.changed().await.expect("the task stays");
    }
}

/// Lets every task that can run, run, without moving the clock.
async fn run_pending() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn review_open(hitl: &Hitl, id: TaskId, attempt: u32) -> Arc<Task> {
    until(hitl, id, |t| t.awaits_decision_on(attempt)).await
}

fn decisions(task: &Task, attempt: u32) -> Vec<&AuditEvent> {
    task.history
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, AuditEvent::Decided { attempt: a, .. } if *a == attempt))
        .collect()
}

async fn decide(
    hitl: &Hitl,
    id: TaskId,
    decision: &str,
    comment: Option<&str>,
) -> Result<Arc<Task>, TransitionError> {
    let request = DecisionRequest::parse(DecisionFields {
        decision: Some(decision),
        attempt: Some(1),
        comment,
        ..DecisionFields::default()
    })
    .expect("a valid decision");
    hitl.decide(id, request, &Actor::anyone()).await
}

#[tokio::test(start_paused = true)]
async fn an_approve_deadline_approves_once_when_it_passes_and_not_before() {
    // Arrange
    let hitl = service(None);
    let id = submit(&hitl, Some(60), "approve", 3).await;
    let under_review = review_open(&hitl, id, 1).await;
    let opened = Instant::now();
    assert!(under_review.review_deadline.is_some());

    // Act 1: a second short of the deadline
    advance(Duration::from_secs(59)).await;
    run_pending().await;

    // Assert 1: still open
    assert!(hitl.registry.get(id).unwrap().awaits_decision_on(1));

    // Act 2: let the clock run to the deadline
    let done = until(&hitl, id, |t| t.status.is_terminal()).await;

    // Assert 2: approved as it was, by the deadline, at the deadline, once
    assert!(
        opened.elapsed() >= Duration::from_secs(60),
        "{:?}",
        opened.elapsed()
    );
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.final_result, under_review.output);
    let record = &done.attempts[0];
    assert!(record.timed_out);
    assert_eq!(record.decided_by, None);
    assert_eq!(decisions(&done, 1).len(), 1);
    assert!(matches!(
        decisions(&done, 1)[0],
        AuditEvent::Decided {
            timed_out: true,
            decision: Decision::Approved,
            ..
        }
    ));
    assert_eq!(
        done.review_deadline, None,
        "no review is open, so no deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_decision_at_the_moment_of_the_deadline_and_the_deadline_never_both_count() {
    for (case, decide_first) in [("decision first", true), ("deadline first", false)] {
        for policy in ["approve", "fail", "reject"] {
            // Arrange: a review whose deadline is due exactly now
            let hitl = service(None);
            let id = submit(&hitl, Some(60), policy, 3).await;
            review_open(&hitl, id, 1).await;

            // Act: a person rejects for good at the same virtual instant
            let answer = if decide_first {
                let (answer, ()) = tokio::join!(
                    decide(&hitl, id, "rejected_final", Some("No")),
                    advance(Duration::from_secs(60))
                );
                answer
            } else {
                advance(Duration::from_secs(60)).await;
                run_pending().await;
                decide(&hitl, id, "rejected_final", Some("No")).await
            };
            let task = until(&hitl, id, |t| !t.awaits_decision_on(1)).await;

            // Assert: exactly one decision on attempt 1, and the history says whose
            let what = format!("{case}, policy {policy}: {answer:?}");
            assert_eq!(decisions(&task, 1).len(), 1, "{what}");
            assert_eq!(
                task.attempts.iter().filter(|a| a.attempt == 1).count(),
                1,
                "{what}"
            );
            let record = &task.attempts[0];
            match answer {
                Ok(_) => {
                    assert!(decide_first, "{what}: the deadline had already decided");
                    assert!(!record.timed_out, "{what}");
                    assert_eq!(record.decision, Some(Decision::RejectedFinal));
                    assert_eq!(task.status, TaskStatus::Failed);
                }
                Err(TransitionError::Conflict { .. }) => {
                    assert!(!decide_first, "{what}: the person was first");
                    assert!(record.timed_out, "{what}");
                }
                Err(other) => panic!("{what}: refused as {other}"),
            }
            // Nothing more happens later: no second decision from a stale timer.
            advance(Duration::from_secs(3600)).await;
            run_pending().await;
            let later = hitl.registry.get(id).unwrap();
            assert_eq!(decisions(&later, 1).len(), 1, "{what}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_extended_deadline_passes_later_and_the_history_says_who_extended_it() {
    // Arrange
    let hitl = service(None);
    let id = submit(&hitl, Some(60), "fail", 3).await;
    let opened = review_open(&hitl, id, 1).await;
    let first = opened.review_deadline.unwrap();
    let start = Instant::now();

    // Act: half way, give it another minute
    advance(Duration::from_secs(30)).await;
    let extended = hitl
        .extend_deadline(id, Some(1), 60, &Actor::anyone())
        .await
        .expect("extended");
    advance(Duration::from_secs(61)).await;
    run_pending().await;

    // Assert: past the first deadline it is still open; it fails at the second
    assert_eq!(
        extended.review_deadline,
        Some(first + Duration::from_secs(60))
    );
    assert!(hitl.registry.get(id).unwrap().awaits_decision_on(1));
    let done = until(&hitl, id, |t| t.status.is_terminal()).await;
    assert!(
        start.elapsed() >= Duration::from_secs(120),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(done.status, TaskStatus::Failed);
    assert!(
        done.error.as_deref().unwrap().contains("deadline passed"),
        "{:?}",
        done.error
    );
    assert!(
        done.history
            .iter()
            .any(|e| matches!(e.event, AuditEvent::DeadlineExtended { attempt: 1, .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn policy_none_only_marks_the_deadline_and_a_person_still_decides() {
    let hitl = service(None);
    let id = submit(&hitl, Some(60), "none", 3).await;
    review_open(&hitl, id, 1).await;

    let passed = until(&hitl, id, |t| {
        t.history
            .iter()
            .any(|e| matches!(e.event, AuditEvent::DeadlinePassed { attempt: 1 }))
    })
    .await;
    assert!(passed.awaits_decision_on(1), "nothing was decided");

    advance(Duration::from_secs(86_400)).await;
    run_pending().await;
    let task = hitl.registry.get(id).unwrap();
    let marks = task
        .history
        .iter()
        .filter(|e| matches!(e.event, AuditEvent::DeadlinePassed { .. }))
        .count();
    assert_eq!(marks, 1, "the deadline passes once");
    let done = decide(&hitl, id, "approved", None)
        .await
        .expect("a person decides");
    assert_eq!(done.status, TaskStatus::Completed);
    assert!(!done.attempts[0].timed_out);
}

#[tokio::test(start_paused = true)]
async fn a_reject_deadline_requests_changes_saying_why_and_the_next_attempt_has_its_own() {
    let hitl = service(None);
    let id = submit(&hitl, Some(60), "reject", 2).await;
    review_open(&hitl, id, 1).await;

    let second = review_open(&hitl, id, 2).await;
    let comment = second.attempts[0].comment.as_deref().unwrap_or_default();
    assert!(comment.contains("deadline passed"), "{comment}");
    assert!(
        second.output.as_deref().unwrap().contains(comment),
        "the next attempt was given it"
    );
    assert!(
        second.review_deadline.is_some(),
        "attempt 2 has its own deadline"
    );

    // At the attempt limit, a request for changes ends the task.
    let done = until(&hitl, id, |t| t.status.is_terminal()).await;
    assert_eq!(done.status, TaskStatus::Failed);
    assert!(done.attempts.iter().all(|a| a.timed_out));
}

#[tokio::test(start_paused = true)]
async fn the_service_default_applies_unless_a_submission_sets_none() {
    let hitl = service(Some(Duration::from_secs(600)));
    let defaulted = hitl
        .submit(
            NewTask::parse(Some("Default"), None).unwrap(),
            &Actor::anyone(),
        )
        .await
        .unwrap()
        .id;
    let without = submit(&hitl, Some(0), "approve", 3).await;
    let task = review_open(&hitl, defaulted, 1).await;
    assert_eq!(task.review_timeout.map(|t| t.seconds), Some(600));
    let task = review_open(&hitl, without, 1).await;
    assert_eq!(task.review_timeout, None);
    assert_eq!(task.review_deadline, None);

    advance(Duration::from_secs(7 * 86_400)).await;
    run_pending().await;
    assert!(hitl.registry.get(without).unwrap().awaits_decision_on(1));
    // The default's policy is `none`: marked, not decided.
    assert!(hitl.registry.get(defaulted).unwrap().awaits_decision_on(1));
}

#[tokio::test(start_paused = true)]
async fn an_extension_at_the_moment_the_deadline_passes_is_never_overtaken_by_it() {
    for round in 0..20 {
        // Arrange: a failing deadline, due now
        let hitl = service(None);
        let id = submit(&hitl, Some(60), "fail", 3).await;
        review_open(&hitl, id, 1).await;

        // Act: a reviewer extends it by an hour at the same virtual instant
        let anyone = Actor::anyone();
        let (extended, ()) = tokio::join!(
            hitl.extend_deadline(id, Some(1), 3600, &anyone),
            advance(Duration::from_secs(60))
        );
        run_pending().await;

        // Assert: once the reviewer was told it is extended, the task stays open
        let task = hitl.registry.get(id).unwrap();
        match extended {
            Ok(_) => assert!(
                task.awaits_decision_on(1),
                "round {round}: extended, yet {:?}",
                task.status
            ),
            Err(error) => assert!(
                task.status == TaskStatus::Failed,
                "round {round}: refused ({error}), yet {:?}",
                task.status
            ),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_decision_on_a_text_other_than_the_one_under_review_changes_nothing() {
    let hitl = service(None);
    let id = submit(&hitl, None, "none", 3).await;
    review_open(&hitl, id, 1).await;
    let request = DecisionRequest::parse(DecisionFields {
        decision: Some("rejected"),
        comment: Some("again"),
        output_sha256: Some(&"0".repeat(64)),
        ..DecisionFields::default()
    })
    .unwrap();

    let answer = hitl.decide(id, request, &Actor::anyone()).await;

    assert!(
        matches!(answer, Err(TransitionError::Conflict { .. })),
        "{answer:?}"
    );
    run_pending().await;
    assert!(
        hitl.registry.get(id).unwrap().awaits_decision_on(1),
        "the review is still open"
    );
}

/// Real time on a durable store: a deadline with policy `none` that passed is recorded once,
/// not again each time the service starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_none_deadline_is_not_recorded_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        store: StoreKind::Sqlite,
        data_dir: dir.path().to_owned(),
        process_delay_ms: 0,
        ..Config::default()
    };
    let passed = |t: &Task| {
        t.history
            .iter()
            .filter(|e| matches!(e.event, AuditEvent::DeadlinePassed { .. }))
            .count()
    };
    let shutdown = CancellationToken::new();
    let hitl = Hitl::open(&config, shutdown.clone()).unwrap();
    let id = submit(&hitl, Some(1), "none", 3).await;
    crate::helpers::within("the deadline to pass", until(&hitl, id, |t| passed(t) == 1)).await;
    shutdown.cancel();
    hitl.close().await;

    // Started again, the review resumes at once with its deadline long past; a person then
    // decides. Had the deadline been armed again, it would have been recorded a second time.
    let shutdown = CancellationToken::new();
    let hitl = Hitl::open(&config, shutdown.clone()).unwrap();
    let done = decide(&hitl, id, "approved", None).await.expect("decided");
    assert_eq!(passed(&done), 1, "{:?}", done.history);
    shutdown.cancel();
    hitl.close().await;
}
