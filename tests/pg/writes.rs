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
