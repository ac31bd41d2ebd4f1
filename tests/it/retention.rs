//! `--keep-finished`: finished tasks beyond the limit leave memory (the map, the counts, the
//! inbox and its search); with the durable store they are still served by id from disk, and a
//! restart keeps only the newest in memory again.

use hitl::{config::StoreKind, store::Retention, task::TaskStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_error, json_body, spawn_app_and_service, test_config, text_body, within,
};

/// Submits a task and approves its first attempt; returns its id.
async fn finish_one(app: &TestApp, input: &str) -> String {
    let task = app.submit_for_review(input, 3).await;
    let done = app
        .decide(&task.id, json!({ "decision": "approved", "attempt": 1 }))
        .await;
    assert_eq!(done.status, TaskStatus::Completed);
    task.id
}

async fn counts(app: &TestApp) -> Value {
    let page: Value = json_body(app.list_tasks("").await).await;
    page["counts"].clone()
}

#[tokio::test]
async fn in_memory_the_oldest_finished_tasks_leave_and_the_rest_stay() {
    let config = hitl::config::Config {
        keep_finished: Some(Retention::Count(2)),
        ..test_config()
    };
    let (app, hitl) = spawn_app_and_service(config).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(finish_one(&app, &format!("invoice number {n}")).await);
    }
    // An unfinished task never leaves, however many finish after it.
    let waiting = app.submit_for_review("still waiting", 3).await;

    assert_eq!(hitl.registry.len(), 3, "two finished and one waiting");
    for gone in &ids[..2] {
        let response = app.get(&format!("/api/tasks/{gone}")).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    for kept in ids[2..].iter().chain([&waiting.id]) {
        assert_eq!(app.get(&format!("/api/tasks/{kept}")).await.status(), 200);
    }
    let counts = counts(&app).await;
    assert_eq!(counts["completed"], 2, "{counts}");
    assert_eq!(counts["waiting_for_review"], 1, "{counts}");

    // The inbox and its search forget them too.
    let found = app.listed_ids("?q=invoice").await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|id| ids[2..].contains(id)), "{found:?}");
    let listed = app.listed_ids("").await;
    assert_eq!(listed.len(), 3, "{listed:?}");
}

#[tokio::test]
async fn with_the_durable_store_a_task_that_left_memory_is_still_served_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = hitl::config::Config {
        keep_finished: Some(Retention::Count(1)),
        store: StoreKind::Sqlite,
        data_dir: dir.path().to_owned(),
        ..test_config()
    };
    let (app, hitl) = spawn_app_and_service(config.clone()).await;
    let first = finish_one(&app, "first").await;
    let second = finish_one(&app, "second").await;
    within("the first to leave memory", async {
        while hitl.registry.get(first.parse().unwrap()).is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await;

    // The API, the history, the page and the stream still answer for it, from disk.
    let task = app.get_task(&first).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(
        task.final_result.as_deref(),
        Some(&*task.attempts[0].output)
    );
    let history = text_body(app.get(&format!("/api/tasks/{first}/history")).await).await;
    let events: Vec<String> = history
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["event"].to_string())
        .collect();
    assert_eq!(
        events,
        [
            "\"submitted\"",
            "\"attempt_started\"",
            "\"attempt_finished\"",
            "\"decided\""
        ]
    );
    let (status, page) = app.get_page(&format!("/tasks/{first}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("first"), "the page shows its input");
    let stream = app.get(&format!("/api/events?task={first}")).await;
    assert_eq!(stream.status(), 200);
    drop(stream);

    // It no longer changes: a decision or a cancel says why, not "no such task".
    let response = app
        .feedback_json(&first, &json!({ "decision": "approved", "attempt": 1 }))
        .await;
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("completed"), "{message}");
    assert_error(
        app.cancel_json(&first).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // An id never seen is still unknown.
    let unknown = crate::helpers::unknown_id();
    assert_error(
        app.get(&format!("/api/tasks/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Started again, only the newest finished task is loaded; both are served.
    app.shutdown.cancel();
    hitl.close().await;
    drop(app);
    let (app, hitl) = spawn_app_and_service(config).await;
    assert_eq!(hitl.registry.len(), 1);
    assert!(hitl.registry.get(second.parse().unwrap()).is_some());
    assert_eq!(app.get_task(&first).await.status, TaskStatus::Completed);
    assert_eq!(app.get_task(&second).await.status, TaskStatus::Completed);
}

#[tokio::test]
async fn a_task_retried_and_finished_again_is_the_newest_finished_one() {
    // Arrange: only the newest finished task stays in memory
    let (app, _hitl) = spawn_app_and_service(hitl::config::Config {
        keep_finished: Some(Retention::Count(1)),
        ..test_config()
    })
    .await;
    let task: Value = json_body(
        app.submit_json(&json!({ "input": "flaky", "processor": "external" }))
            .await,
    )
    .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let give_up = || async {
        let claimed: Value = json_body(
            app.post_json("/api/claims", &json!({ "wait_secs": 0 }))
                .await,
        )
        .await;
        let token = claimed["claim"].as_str().unwrap().to_owned();
        let failed = app
            .post_json(
                &format!("/api/claims/{token}/fail"),
                &json!({ "error": "broke" }),
            )
            .await;
        assert_eq!(failed.status(), StatusCode::OK);
    };

    // Act: it fails, is retried, and fails again
    give_up().await;
    let retried = app
        .post_json(&format!("/api/tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status(), StatusCode::OK);
    give_up().await;

    // Assert: its first failure's place in the queue does not take it out of memory
    let page: Value = json_body(app.list_tasks("").await).await;
    let listed: Vec<&str> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![id.as_str()], "the newest finished task stays");
}
