//! The audit trail: `GET /api/tasks/{id}/history` lists every change in order, chained by hash,
//! and `hitl verify` passes on a clean store and reports a row edited by hand.

use std::{path::Path, process::Stdio};

use hitl::{
    audit::{AuditEntry, AuditEvent, Digest, verify_chain},
    task::{Decision, TaskStatus},
};
use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::helpers::{TestApp, content_type, spawn_app, text_body, unknown_id, within};

async fn history(app: &TestApp, id: &str) -> Vec<AuditEntry> {
    let response = app.get(&format!("/api/tasks/{id}/history")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/jsonl");
    let body = text_body(response).await;
    assert!(body.ends_with('\n'), "each entry is one line: {body:?}");
    body.lines()
        .map(|line| serde_json::from_str(line).expect("each line is an entry"))
        .collect()
}

fn names(entries: &[AuditEntry]) -> Vec<&'static str> {
    entries.iter().map(|e| e.event.name()).collect()
}

#[tokio::test]
async fn the_history_lists_every_change_in_order_chained_by_hash() {
    // Arrange: changes requested once, then approved with an edit
    let app = spawn_app().await;
    let task = app.submit_for_review("Draft the notice", 3).await;
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "Mention the date" }),
    )
    .await;
    let second = app.wait_for_review(&task.id, 2).await;
    let done = app
        .decide(
            &task.id,
            json!({ "decision": "approved", "attempt": 2, "output": "The notice, edited" }),
        )
        .await;
    assert_eq!(done.status, TaskStatus::Completed);

    // Act
    let entries = history(&app, &task.id).await;

    // Assert: every event, in order, numbered, each holding its predecessor's hash
    assert_eq!(
        names(&entries),
        [
            "submitted",
            "attempt_started",
            "attempt_finished",
            "decided",
            "attempt_started",
            "attempt_finished",
            "decided",
        ]
    );
    let id = entries[0].task_id;
    assert_eq!(id.to_string(), task.id);
    assert!(verify_chain(id, &entries).is_empty());
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].seq <= w[1].seq && w[0].at <= w[1].at)
    );
    assert_eq!(entries.last().unwrap().status, TaskStatus::Completed);
    match &entries[3].event {
        AuditEvent::Decided {
            decision: Decision::Rejected,
            comment: Some(comment),
            ..
        } => assert_eq!(&**comment, "Mention the date"),
        other => panic!("not the request for changes: {other:?}"),
    }
    match &entries[6].event {
        AuditEvent::Decided {
            decision: Decision::Approved,
            reviewed_sha256,
            result_sha256,
            edited,
            ..
        } => {
            assert_eq!(
                *reviewed_sha256,
                Digest::of_text(second.output.as_deref().unwrap()),
                "the approval names the exact output that was reviewed"
            );
            assert_eq!(*result_sha256, Some(Digest::of_text("The notice, edited")));
            assert!(edited);
        }
        other => panic!("not the approval: {other:?}"),
    }

    // And the task page lists them too
    let (_, page) = app.get_page(&format!("/tasks/{}", task.id)).await;
    assert!(page.contains("Audit trail"), "{page}");
    assert!(page.contains(&entries[6].hash.to_string()[..12]));
}

#[tokio::test]
async fn a_cancel_and_a_final_rejection_end_the_history() {
    let app = spawn_app().await;
    let cancelled = app.submit_for_review("Cancel me", 3).await;
    let response = app.cancel_json(&cancelled.id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rejected = app.submit_for_review("Reject me", 3).await;
    let failed = app
        .decide(
            &rejected.id,
            json!({ "decision": "rejected_final", "attempt": 1, "comment": "Off topic" }),
        )
        .await;
    assert_eq!(failed.status, TaskStatus::Failed);

    let entries = history(&app, &cancelled.id).await;
    assert_eq!(names(&entries).last(), Some(&"cancelled"));
    assert_eq!(entries.last().unwrap().status, TaskStatus::Cancelled);
    let entries = history(&app, &rejected.id).await;
    assert!(matches!(
        entries.last().unwrap().event,
        AuditEvent::Decided {
            decision: Decision::RejectedFinal,
            ..
        }
    ));
    assert_eq!(entries.last().unwrap().status, TaskStatus::Failed);
}

#[tokio::test]
async fn the_history_of_an_unknown_or_malformed_task_is_refused_in_json() {
    let app = spawn_app().await;
    let response = app
        .get(&format!("/api/tasks/{}/history", unknown_id()))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(content_type(&response).starts_with("application/json"));
    // A malformed id names no task, as everywhere else.
    let response = app.get("/api/tasks/not-an-id/history").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(content_type(&response).starts_with("application/json"));
}

/// Runs `hitl verify` on a data directory: whether it passed, and what it printed.
async fn verify(dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hitl"))
        .arg("verify")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .await
        .expect("hitl verify runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn verify_passes_on_a_clean_store_and_reports_rows_edited_by_hand() {
    // Arrange: a real server on a data directory does a whole loop, then stops
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitl"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--process-delay-ms",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("HITL_STORE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the address line", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let app = TestApp::at(line.strip_prefix("listening on ").unwrap().to_owned());
    let task = app.submit_for_review("Keep the record straight", 3).await;
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "Cite the source" }),
    )
    .await;
    app.wait_for_review(&task.id, 2).await;
    app.decide(&task.id, json!({ "decision": "approved", "attempt": 2 }))
        .await;
    let other = app.submit_for_review("Another task", 3).await;
    // Verifying beside a running server works: it only reads.
    let (passed, report) = verify(dir.path()).await;
    assert!(passed, "{report}");
    nix_terminate(&child);
    within("the server to stop", child.wait()).await.unwrap();

    // Act 1: verify the untouched store
    let (passed, report) = verify(dir.path()).await;

    // Assert
    assert!(passed, "{report}");
    assert!(
        report.contains("2 task(s), 10 audit entries checked: every chain is intact"),
        "{report}"
    );

    // Act 2: change a comment in the stored trail, as someone with the file might
    let db = rusqlite::Connection::open(dir.path().join("hitl.sqlite3")).unwrap();
    let changed = db
        .execute(
            "UPDATE audit SET entry = replace(entry, 'Cite the source', 'Fine as it is') WHERE task_id = ?1",
            [&task.id],
        )
        .unwrap();
    assert_eq!(
        changed, 7,
        "every row of the task is rewritten, one really changes"
    );
    let (passed, report) = verify(dir.path()).await;

    // Assert: named, with the entry, and the other task is fine
    assert!(!passed, "{report}");
    assert!(
        report.contains(&format!(
            "BROKEN task {} entry 4: its content was changed",
            task.id
        )),
        "{report}"
    );
    assert!(!report.contains(&other.id), "{report}");
    assert!(report.contains("1 break(s) found"), "{report}");

    // Act 3: put the comment back, then change the approved result in the task's row
    db.execute(
        "UPDATE audit SET entry = replace(entry, 'Fine as it is', 'Cite the source')",
        [],
    )
    .unwrap();
    assert!(
        verify(dir.path()).await.0,
        "the original text verifies again"
    );
    db.execute(
        "UPDATE tasks SET body = json_set(body, '$.final_result', 'Something else') WHERE id = ?1",
        [&task.id],
    )
    .unwrap();
    let (passed, report) = verify(dir.path()).await;
    assert!(!passed, "{report}");
    assert!(
        report.contains("the task's final result is not the text that was approved"),
        "{report}"
    );

    // Act 4: delete an entry
    db.execute(
        "DELETE FROM audit WHERE task_id = ?1 AND n = 2",
        [&other.id],
    )
    .unwrap();
    let (_, report) = verify(dir.path()).await;
    assert!(
        report.contains(&format!("BROKEN task {} entry 3", other.id)),
        "{report}"
    );
}

/// SIGTERM, so the server flushes and exits as in production.
fn nix_terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("still running");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
}
