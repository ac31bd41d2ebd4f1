//! Instances on one database behave as one service: any instance serves any task, every
//! stream sees every event in order, and racing decisions decide once.

use std::collections::HashMap;

use futures_util::StreamExt;
use hitl::task::TaskStatus;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{SseEvent, Task, within},
    instances::Db,
};

/// A task's lifecycle as statuses and attempts: submitted, rejected once, then approved.
fn rejected_then_approved() -> Vec<(TaskStatus, u32)> {
    use TaskStatus::*;
    vec![
        (Pending, 1),
        (Running, 1),
        (WaitingForReview, 1),
        (Running, 2),
        (WaitingForReview, 2),
        (Completed, 2),
    ]
}

/// The status events of one task, as (status, attempt).
fn statuses_of(events: &[SseEvent], id: &str) -> Vec<(TaskStatus, u32)> {
    events
        .iter()
        .filter(|e| e.name == "status")
        .map(|e| e.data())
        .filter(|d| d.task_id == id)
        .map(|d| (d.status, d.attempt))
        .collect()
}

fn ids(events: &[SseEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

pub async fn lifecycle_spread_across_three_instances(db: Db) {
    // Arrange: three instances, each with a client watching every event.
    let [a, b, c] = db.three().await;
    let mut watchers = Vec::new();
    for app in [&a, &b, &c] {
        watchers.push(app.events("", None).await);
    }

    // Act: submitted on A, watched on B, changes requested on C, approved on B.
    let task = a.submit("Spread me", 3).await;
    let waiting = b.wait_for_review(&task.id, 1).await;
    assert_eq!(
        waiting.output.as_deref().map(|o| o.contains("Spread me")),
        Some(true)
    );
    let rejected = c
        .decide(
            &task.id,
            json!({"decision": "rejected", "attempt": 1, "comment": "shorter"}),
        )
        .await;
    assert_eq!(
        (rejected.status, rejected.attempt),
        (TaskStatus::Running, 2)
    );
    let second = a.wait_for_review(&task.id, 2).await;
    assert!(
        second
            .output
            .as_deref()
            .unwrap_or_default()
            .contains("shorter"),
        "the second attempt was given the comment made on another instance: {second:?}"
    );
    let done = b
        .decide(&task.id, json!({"decision": "approved", "attempt": 2}))
        .await;
    assert_eq!(done.status, TaskStatus::Completed);

    // Assert: every instance's stream carried the same events, in order, and every instance
    // shows the same task.
    let mut seen = Vec::new();
    for watcher in &mut watchers {
        let events = watcher
            .read_until(|events| {
                statuses_of(events, &task.id).last() == Some(&(TaskStatus::Completed, 2))
            })
            .await;
        assert_eq!(statuses_of(&events, &task.id), rejected_then_approved());
        assert!(ids(&events).windows(2).all(|w| w[0] < w[1]), "ids grow");
        seen.push(events);
    }
    assert_eq!(ids(&seen[0]), ids(&seen[1]), "A and B saw the same events");
    assert_eq!(ids(&seen[0]), ids(&seen[2]), "A and C saw the same events");
    for app in [&a, &b, &c] {
        let task = app.get_task(&task.id).await;
        assert_eq!(
            (task.status, task.attempts.len()),
            (TaskStatus::Completed, 2)
        );
        assert_eq!(task.final_result, second.output);
    }
    let history = format!("/api/tasks/{}/history", task.id);
    let histories: Vec<String> = futures_util::future::join_all([&a, &b, &c].map(|app| async {
        let response = app.get(&history).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }))
    .await;
    assert!(
        histories.iter().all(|h| *h == histories[0]),
        "one audit trail"
    );

    // Last-Event-ID works on whichever instance a client reconnects to.
    let first = seen[0][0].id;
    for app in [&c, &a] {
        let mut resumed = app.events("", Some(first)).await;
        let replayed = resumed
            .read_until(|events| events.len() == seen[0].len() - 1)
            .await;
        assert_eq!(ids(&replayed), ids(&seen[0])[1..].to_vec());
    }
}

pub async fn two_hundred_lifecycles_across_three_instances(db: Db) {
    const TASKS: usize = 200;
    let apps = db.three().await;
    let mut watchers = Vec::new();
    for app in &apps {
        watchers.push(app.events("", None).await);
    }

    // Each task is submitted on one instance, reviewed on the next and decided on the third;
    // every other one has changes requested first.
    let lifecycles = futures_util::stream::iter(0..TASKS)
        .map(|k| {
            let apps = &apps;
            async move {
                let (x, y, z) = (&apps[k % 3], &apps[(k + 1) % 3], &apps[(k + 2) % 3]);
                let task = x.submit(&format!("Task {k}"), 3).await;
                y.wait_for_review(&task.id, 1).await;
                if k % 2 == 0 {
                    z.decide(
                        &task.id,
                        json!({"decision": "rejected", "attempt": 1, "comment": "again"}),
                    )
                    .await;
                    x.wait_for_review(&task.id, 2).await;
                    y.decide(&task.id, json!({"decision": "approved", "attempt": 2}))
                        .await;
                } else {
                    z.decide(&task.id, json!({"decision": "approved", "attempt": 1}))
                        .await;
                }
                (task.id, k % 2 == 0)
            }
        })
        .buffer_unordered(12)
        .collect::<Vec<_>>();
    let tasks: HashMap<String, bool> = lifecycles.await.into_iter().collect();
    assert_eq!(tasks.len(), TASKS);

    use TaskStatus::*;
    let approved_at_once = vec![
        (Pending, 1),
        (Running, 1),
        (WaitingForReview, 1),
        (Completed, 1),
    ];
    let mut all_ids = Vec::new();
    for watcher in &mut watchers {
        let mut completed = 0;
        let events = watcher
            .read_until(|events| {
                if let Some(last) = events.last()
                    && last.name == "status"
                    && last.data().status == Completed
                {
                    completed += 1;
                }
                completed == TASKS
            })
            .await;
        // Every event, each once, in order: the global sequence has no gap on any instance.
        let ids = ids(&events);
        let first = ids[0];
        assert_eq!(
            ids,
            (first..first + ids.len() as u64).collect::<Vec<_>>(),
            "contiguous, growing ids"
        );
        for (id, rejected) in &tasks {
            let expected = if *rejected {
                rejected_then_approved()
            } else {
                approved_at_once.clone()
            };
            assert_eq!(
                statuses_of(&events, id),
                expected,
                "task {id}: no duplicate attempt"
            );
        }
        all_ids.push(ids);
    }
    assert_eq!(all_ids[0], all_ids[1]);
    assert_eq!(all_ids[0], all_ids[2]);
}

pub async fn racing_decisions_on_two_instances_decide_once(db: Db) {
    let (a, _) = db.instance().await;
    let (b, _) = db.instance().await;
    for round in 0..10 {
        let task = a.submit_for_review(&format!("Race {round}"), 3).await;
        b.wait_for_review(&task.id, 1).await;
        let approve = json!({"decision": "approved", "attempt": 1});
        let reject = json!({"decision": "rejected_final", "attempt": 1, "comment": "no"});
        let (first, second) = within(
            "two decisions",
            futures_util::future::join(
                a.feedback_json(&task.id, &approve),
                b.feedback_json(&task.id, &reject),
            ),
        )
        .await;
        let statuses = [first.status(), second.status()];
        assert!(
            statuses == [StatusCode::OK, StatusCode::CONFLICT]
                || statuses == [StatusCode::CONFLICT, StatusCode::OK],
            "exactly one decision wins: {statuses:?}"
        );
        let winner = if statuses[0] == StatusCode::OK {
            TaskStatus::Completed
        } else {
            TaskStatus::Failed
        };
        for app in [&a, &b] {
            let task: Task = app.get_task(&task.id).await;
            assert_eq!(task.status, winner);
            assert_eq!(task.decisions_for(1).len(), 1, "decided once");
        }
    }
}
