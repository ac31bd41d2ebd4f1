//! The batches of changes an instance writes.

use std::time::Duration;

use hitl::{
    registry::changes,
    store::postgres::{PgStore, Request},
    task::{TaskId, TaskStatus},
};
use tokio::sync::oneshot;

use crate::instances::Db;

pub async fn a_change_its_requester_gave_up_on_is_not_applied(db: Db) {
    // Arrange: a task waiting for review, and a cancel whose requester stopped waiting (it was
    // answered 503, "nothing was changed") while the change sat in the queue.
    let (app, _) = db.instance().await;
    let task = app.submit_for_review("Given up on", 3).await;
    let id: TaskId = task.id.parse().expect("a task id");
    let store = PgStore::connect(&db.url, 1).await.expect("the store");
    let (reply, answer) = oneshot::channel();
    drop(answer);
    let given_up = Request::Change {
        id,
        by: None,
        claimed: false,
        change: Box::new(|task| changes::cancel(task, None)),
        reply,
    };

    // Act: the batch holding it is written at last.
    store
        .commit("elsewhere", Duration::from_secs(5), vec![given_up])
        .await
        .expect("the batch is written");

    // Assert: the change was not applied, as its requester was told.
    let stored = store.task_async(id).await.expect("read").expect("the task");
    assert_eq!(stored.status, TaskStatus::WaitingForReview);
    assert_eq!(
        app.get_task(&task.id).await.status,
        TaskStatus::WaitingForReview
    );
}

/// The attempt's finish hangs behind a lock: A's workflow must stop (its change timed out,
/// and its renewal hangs behind the same rows) rather than fail the task; either stop saves it.
pub async fn a_write_that_times_out_does_not_fail_the_task(db: Db) {
    // Arrange: A processes for a second and a half; the task is running there.
    let config = hitl::config::Config {
        process_delay_ms: 1500,
        ..db.config()
    };
    let (a, _) = db.instance_with(config).await;
    let task = a.submit("Outlast the lock", 3).await;
    a.wait_for_status(&task.id, TaskStatus::Running).await;

    // Act: the event counter stays locked past A's 10 s write patience, so the attempt's
    // finish is answered 503 (the database hangs, it does not refuse), then it comes free.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("a connection");
    tokio::spawn(connection);
    client
        .batch_execute("BEGIN; SELECT seq FROM hitl_seq FOR UPDATE")
        .await
        .expect("the counter locked");
    // No signal crosses from A's writer to here: the lock is held for longer than it waits.
    tokio::time::sleep(Duration::from_secs(12)).await;
    client.batch_execute("ROLLBACK").await.expect("unlocked");

    // Assert: the task is not failed with the outage's text; the work is resumed once its
    // claim runs out, and the attempt reaches review.
    let waiting = tokio::time::timeout(Duration::from_secs(30), a.wait_for_review(&task.id, 1))
        .await
        .expect("the attempt reaches review");
    assert_eq!(waiting.status, TaskStatus::WaitingForReview);
    assert_eq!(waiting.attempt, 1);
}

/// Submission keys are kept in the database with the task they made, in the same commit: a
/// retry sent to another instance gets the first task, the same key sent to two instances at
/// once makes one task, and the key with another submission is refused on any instance.
pub async fn a_keyed_submission_is_made_once_across_instances(db: Db) {
    let (a, _) = db.instance().await;
    let (b, _) = db.instance().await;
    let body = serde_json::json!({ "input": "Sent to a, retried on b" });
    let first = a.submit_keyed("across-1", &body).await;
    assert_eq!(first.status(), 201);
    let first: crate::helpers::Task = crate::helpers::json_body(first).await;
    let retry = b.submit_keyed("across-1", &body).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retried: crate::helpers::Task = crate::helpers::json_body(retry).await;
    assert_eq!(retried.id, first.id, "b answers with a's task");
    let reused = b
        .submit_keyed("across-1", &serde_json::json!({ "input": "Other" }))
        .await;
    crate::helpers::assert_error(
        reused,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;

    // Both instances at once, many times: one task per key.
    for n in 0..10 {
        let key = format!("race-{n}");
        let body = serde_json::json!({ "input": format!("race {n}") });
        let (x, y) = tokio::join!(a.submit_keyed(&key, &body), b.submit_keyed(&key, &body));
        assert_eq!((x.status().as_u16(), y.status().as_u16()), (201, 201));
        let x: crate::helpers::Task = crate::helpers::json_body(x).await;
        let y: crate::helpers::Task = crate::helpers::json_body(y).await;
        assert_eq!(x.id, y.id, "{key}: one task");
    }
    assert_eq!(a.listed_ids("").await.len(), 11, "no task twice");
}
