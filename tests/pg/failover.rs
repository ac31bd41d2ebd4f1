//! Instances come and go, and so does the database: nothing is lost or done twice.

use std::time::Duration;

use hitl::task::TaskStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, assert_error, text_body, within},
    instances::{Binary, Db},
    proxy::Proxy,
};

/// Polls `check` until it holds, for at most `patience`: for waits across processes and
/// connections, where there is no signal to wait on.
async fn eventually<F, Fut>(what: &str, patience: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {patience:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn instances_starting_at_once_migrate_once(db: Db) {
    let started = futures_util::future::join_all((0..3).map(|_| db.instance())).await;
    assert_eq!(started.len(), 3);
    let versions = db
        .execute("SELECT version FROM hitl_migrations")
        .await
        .expect("the migrations table");
    assert_eq!(versions, 1, "one row per version, applied once");
    // All three serve the same tasks.
    let task = started[0].0.submit("Migrated", 3).await;
    for (app, _) in &started {
        app.wait_for_review(&task.id, 1).await;
    }
}

/// The history entries of `kind` for attempt `attempt`.
async fn entries(app: &TestApp, id: &str, kind: &str, attempt: u32) -> usize {
    let response = app.get(&format!("/api/tasks/{id}/history")).await;
    assert_eq!(response.status(), StatusCode::OK);
    // One JSON entry per line.
    let body = text_body(response).await;
    body.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("an entry"))
        .filter(|e| e["event"] == kind && e["attempt"] == attempt)
        .count()
}

pub async fn killed_instance_is_taken_over(db: Db) {
    // Arrange: A processes slowly (a minute per attempt) and holds the task's claim; B is
    // quick.
    let mut a = Binary::spawn(&db, &["--process-delay-ms", "60000"]);
    let (b, _) = db.instance().await;
    let task = a.app.submit("Survive me", 3).await;
    b.wait_for_status(&task.id, TaskStatus::Running).await;

    // Act: A dies mid-attempt, holding the claim.
    a.kill();

    // Assert: once the lease runs out B finishes the same attempt; there is no second one.
    let waiting = within("B takes over", b.wait_for_review(&task.id, 1)).await;
    assert_eq!(waiting.attempt, 1);
    assert_eq!(
        entries(&b, &task.id, "attempt_started", 1).await,
        1,
        "started once"
    );
    assert_eq!(
        entries(&b, &task.id, "attempt_finished", 1).await,
        1,
        "finished once"
    );
    let done = b
        .decide(&task.id, json!({"decision": "approved", "attempt": 1}))
        .await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert!(done.attempts.len() == 1, "one attempt: {done:?}");
}

pub async fn database_lost_and_back(db: Db) {
    // Arrange: A reaches the database through a proxy the test can cut; B directly.
    let proxy = Proxy::start(db.address()).await;
    let config = hitl::config::Config {
        database_url: Some(db.url_via(&proxy.address)),
        ..db.config()
    };
    let (a, _) = db.instance_with(config).await;
    let (b, _) = db.instance().await;
    let task = a.submit_for_review("Outage", 3).await;
    let mut watching = a.events(&format!("?task={}", task.id), None).await;
    let (_, snapshot) = watching.next_status().await;
    assert_eq!(snapshot.status, TaskStatus::WaitingForReview);

    // Act: the database goes away from A.
    proxy.cut();

    // Assert: writes are refused plainly, readiness says why, reads go on.
    let refused = a.submit_json(&json!({"input": "Lost?"})).await;
    let message = assert_error(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(message.contains("database"), "{message}");
    let decision = json!({"decision": "approved", "attempt": 1});
    let refused = a.feedback_json(&task.id, &decision).await;
    assert_error(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    let fragment = a.submit_form(&[("input", "Lost in the form?")], true).await;
    assert_eq!(fragment.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = fragment.text().await.unwrap();
    assert!(body.contains("database"), "the fragment says why: {body}");
    let ready = a.get("/readyz").await;
    let message = assert_error(ready, StatusCode::SERVICE_UNAVAILABLE, "store_unavailable").await;
    assert!(message.contains("database"), "{message}");
    assert_eq!(
        a.get_task(&task.id).await.status,
        TaskStatus::WaitingForReview
    );

    // Meanwhile another instance decides the task.
    let done = b.decide(&task.id, decision.clone()).await;
    assert_eq!(done.status, TaskStatus::Completed);

    // Act: the database comes back.
    proxy.restore();

    // Assert: A recovers by itself; the stream that stayed open carries what happened.
    eventually("A is ready again", Duration::from_secs(20), || async {
        a.get("/readyz").await.status() == StatusCode::OK
    })
    .await;
    let (_, completed) = watching.next_status().await;
    assert_eq!(completed.status, TaskStatus::Completed);
    let again = a.submit("Back again", 3).await;
    b.wait_for_review(&again.id, 1).await;
}
