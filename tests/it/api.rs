//! The JSON API: the lifecycle, listing, every refusal, races and load.

use futures_util::future::join_all;
use hitl::{
    config::Config,
    task::{Decision, TaskStatus},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Task, assert_error, content_type, json_body, location, slow_config, spawn_app, spawn_app_with,
    test_config, text_body, unknown_id, within,
};

#[tokio::test]
async fn a_task_goes_from_submission_through_a_rejection_to_approval() {
    // Arrange
    let app = spawn_app().await;

    // Act: submit
    let response = app
        .submit_json(&json!({ "input": "Summarise the report", "max_attempts": 3 }))
        .await;

    // Assert
    assert_eq!(response.status(), StatusCode::CREATED);
    let url = location(&response);
    let submitted: Task = json_body(response).await;
    let task = submitted.clone();
    assert_eq!(url, format!("/api/tasks/{}", task.id));
    assert_eq!(
        task.status,
        TaskStatus::Pending,
        "a new task starts pending"
    );
    assert_eq!(
        (task.input.as_str(), task.attempt, task.max_attempts),
        ("Summarise the report", 1, 3)
    );
    assert!(task.final_result.is_none() && task.attempts.is_empty());

    // Act: the first draft is ready; request changes
    let task = app.wait_for_review(&task.id, 1).await;
    let draft = task.output.clone().expect("an output to review");
    assert!(draft.contains("Draft 1 of 3"), "{draft}");
    let comment = "Mention the risks";
    let after = app
        .decide(
            &task.id,
            json!({ "decision": "rejected", "attempt": 1, "comment": comment }),
        )
        .await;

    // Assert: the rejection is already applied
    assert!(
        matches!(
            after.status,
            TaskStatus::Running | TaskStatus::WaitingForReview
        ),
        "{after:?}"
    );
    assert_eq!(after.attempt, 2);
    assert_eq!(after.attempts.len(), 1);
    assert_eq!(after.attempts[0].decision, Some(Decision::Rejected));
    assert_eq!(after.attempts[0].comment.as_deref(), Some(comment));
    assert_eq!(after.attempts[0].output, draft);

    // Act: the second draft shows the comment; approve it
    let task = app.wait_for_review(&task.id, 2).await;
    let second = task.output.clone().expect("a second output");
    assert!(second.contains("Draft 2 of 3"), "{second}");
    assert!(
        second.contains(&format!("- on draft 1: {comment}")),
        "{second}"
    );
    let done = app
        .decide(&task.id, json!({ "decision": "approved", "attempt": 2 }))
        .await;

    // Assert
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.final_result.as_deref(), Some(second.as_str()));
    assert_eq!(done.decisions_for(2), vec![Decision::Approved]);
    let stored = app.get_task(&task.id).await;
    assert_eq!(stored.status, TaskStatus::Completed);
    assert_eq!(stored.attempts, done.attempts);
    assert_eq!(stored.created_at, submitted.created_at);
    assert!(stored.updated_at >= submitted.updated_at);
    let decided: Vec<_> = stored
        .attempts
        .iter()
        .filter_map(|a| a.decided_at)
        .collect();
    assert_eq!(decided.len(), 2, "both decisions have a time");
    assert!(decided.is_sorted() && decided[0] >= submitted.created_at);
}

#[tokio::test]
async fn an_approval_with_an_edited_output_makes_the_edit_the_final_result() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Write a title", 3).await;

    // Act: no attempt given means the one under review
    let done = app
        .decide(
            &task.id,
            json!({ "decision": "approved", "output": "My own title" }),
        )
        .await;

    // Assert
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.final_result.as_deref(), Some("My own title"));
    assert_eq!(done.output, task.output, "the processed output is kept");
}

#[tokio::test]
async fn tasks_are_listed_newest_first_and_filtered_by_status() {
    // Arrange: one waiting for review, one cancelled, one completed
    let app = spawn_app().await;
    let waiting = app.submit_for_review("first", 3).await;
    let cancelled = app.submit_for_review("second", 3).await;
    let completed = app.submit_for_review("third", 3).await;
    assert_eq!(
        app.cancel_json(&cancelled.id).await.status(),
        StatusCode::OK
    );
    app.decide(&completed.id, json!({ "decision": "approved" }))
        .await;

    // Act
    let all = app.listed_ids("").await;
    let review = app.listed_ids("?status=waiting_for_review").await;
    let done = app.listed_ids("?status=completed").await;
    let failed = app.listed_ids("?status=failed").await;
    let invalid = app.list_tasks("?status=finished").await;

    // Assert
    assert_eq!(
        all,
        vec![completed.id.clone(), cancelled.id, waiting.id.clone()]
    );
    assert_eq!(review, vec![waiting.id]);
    assert_eq!(done, vec![completed.id]);
    assert!(failed.is_empty());
    assert_error(invalid, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}

#[tokio::test]
async fn tasks_submitted_in_quick_succession_are_still_listed_newest_first() {
    // Arrange
    let app = spawn_app().await;
    let mut submitted = Vec::new();
    for i in 0..20 {
        submitted.push(app.submit(&format!("quick {i}"), 1).await.id);
    }

    // Act
    let listed = app.listed_ids("").await;

    // Assert
    submitted.reverse();
    assert_eq!(listed, submitted);
}

#[tokio::test]
async fn refused_submissions_say_why_and_create_nothing() {
    // Arrange
    let app = spawn_app().await;
    let too_long = "a".repeat(65_537);
    let cases = [
        (
            json!({ "max_attempts": 3 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "input": " \n\t " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "input": 7 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "input": "x", "max_attempts": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "input": "x", "max_attempts": 21 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "input": too_long }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];

    for (body, status, code) in cases {
        // Act
        let response = app.submit_json(&body).await;
        // Assert
        assert_error(response, status, code).await;
    }
    let malformed = app
        .post_raw("/api/tasks", "application/json", b"{\"input\": ".to_vec())
        .await;
    assert_error(malformed, StatusCode::BAD_REQUEST, "malformed_body").await;
    let huge = format!("{{\"input\": \"{}\"}}", "a".repeat(600 * 1024));
    let huge = app
        .post_raw("/api/tasks", "application/json", huge.into_bytes())
        .await;
    assert_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert!(app.listed_ids("").await.is_empty(), "nothing was created");

    // The limit is inclusive: exactly 64 KiB is accepted.
    let exact = app.submit(&"a".repeat(65_536), 1).await;
    assert_eq!(exact.input.len(), 65_536);
}

#[tokio::test]
async fn invalid_feedback_is_refused_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Check the numbers", 3).await;
    let cases = [
        (
            json!({ "decision": "maybe" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "attempt": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "decision": "approved", "attempt": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "decision": "rejected", "output": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({ "decision": "approved", "attempt": 2 }),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({ "decision": "approved", "output": "a".repeat(65_537) }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];

    for (body, status, code) in cases {
        // Act
        let response = app.feedback_json(&task.id, &body).await;
        // Assert
        assert_error(response, status, code).await;
    }
    let path = format!("/api/tasks/{}/feedback", task.id);
    let malformed = app
        .post_raw(&path, "application/json", b"decision=approved".to_vec())
        .await;
    assert_error(malformed, StatusCode::BAD_REQUEST, "malformed_body").await;
    let after = app.get_task(&task.id).await;
    assert_eq!(after.status, TaskStatus::WaitingForReview);
    assert_eq!((after.attempt, after.attempts.len()), (1, 0));
    assert_eq!(after.updated_at, task.updated_at);
}

#[tokio::test]
async fn unknown_tasks_are_not_found() {
    // Arrange
    let app = spawn_app().await;
    let approve = json!({ "decision": "approved" });

    for id in [unknown_id(), "not-a-uuid".to_owned()] {
        // Act
        let get = app.get(&format!("/api/tasks/{id}")).await;
        let feedback = app.feedback_json(&id, &approve).await;
        let cancel = app.cancel_json(&id).await;

        // Assert
        assert_error(get, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(feedback, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(cancel, StatusCode::NOT_FOUND, "not_found").await;
    }
    let no_route = app.get("/api/nothing-here").await;
    assert_error(no_route, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn feedback_while_an_attempt_is_running_is_a_conflict() {
    // Arrange: attempts take a minute
    let app = spawn_app_with(slow_config()).await;
    let task = app.submit("Take your time", 3).await;
    let running = app.wait_for_status(&task.id, TaskStatus::Running).await;

    // Act
    let response = app
        .feedback_json(&task.id, &json!({ "decision": "approved", "attempt": 1 }))
        .await;

    // Assert
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("running"), "{message}");
    let after = app.get_task(&task.id).await;
    assert_eq!(after.status, TaskStatus::Running);
    assert!(after.attempts.is_empty() && after.output.is_none());
    assert_eq!(after.updated_at, running.updated_at);
}

#[tokio::test]
async fn a_decision_for_an_earlier_attempt_is_a_conflict() {
    // Arrange: attempt 2 is under review
    let app = spawn_app().await;
    let task = app.submit_for_review("Two drafts", 3).await;
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "again" }),
    )
    .await;
    let second = app.wait_for_review(&task.id, 2).await;

    // Act
    let response = app
        .feedback_json(&task.id, &json!({ "decision": "approved", "attempt": 1 }))
        .await;

    // Assert
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("attempt 2"), "{message}");
    let after = app.get_task(&task.id).await;
    assert_eq!(
        (after.status, after.attempt),
        (TaskStatus::WaitingForReview, 2)
    );
    assert_eq!(after.decisions_for(1), vec![Decision::Rejected]);
    assert_eq!(after.updated_at, second.updated_at);
}

#[tokio::test]
async fn a_second_decision_on_the_same_attempt_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Decide once", 3).await;
    let first = app
        .decide(
            &task.id,
            json!({ "decision": "rejected", "attempt": 1, "comment": "again" }),
        )
        .await;

    // Act
    let second = app
        .feedback_json(&task.id, &json!({ "decision": "approved", "attempt": 1 }))
        .await;

    // Assert
    assert_error(second, StatusCode::CONFLICT, "conflict").await;
    let after = app.wait_for_review(&task.id, 2).await;
    assert_eq!(after.decisions_for(1), vec![Decision::Rejected]);
    assert_eq!(after.attempts, first.attempts);
    assert!(after.final_result.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_decisions_exactly_one_wins() {
    let app = spawn_app().await;
    for round in 0..20 {
        // Arrange
        let task = app.submit_for_review(&format!("race {round}"), 3).await;
        let decide = |decision: &'static str| {
            let client = app.client.clone();
            let url = app.url(&format!("/api/tasks/{}/feedback", task.id));
            tokio::spawn(async move {
                let body = json!({ "decision": decision, "attempt": 1, "comment": "racing" });
                let response = client.post(url).json(&body).send().await.expect("sent");
                (decision, response.status())
            })
        };

        // Act
        let (approve, reject) = (decide("approved"), decide("rejected"));
        let results = within("both decisions", async {
            [
                approve.await.expect("joined"),
                reject.await.expect("joined"),
            ]
        })
        .await;

        // Assert
        let winners: Vec<_> = results
            .iter()
            .filter(|(_, s)| *s == StatusCode::OK)
            .collect();
        let losers: Vec<_> = results
            .iter()
            .filter(|(_, s)| *s == StatusCode::CONFLICT)
            .collect();
        assert_eq!(
            (winners.len(), losers.len()),
            (1, 1),
            "round {round}: {results:?}"
        );
        let after = app.get_task(&task.id).await;
        let expected = match winners[0].0 {
            "approved" => Decision::Approved,
            _ => Decision::Rejected,
        };
        assert_eq!(after.decisions_for(1), vec![expected], "round {round}");
    }
}

#[tokio::test]
async fn a_rejection_at_the_attempt_limit_fails_the_task() {
    // Arrange: the last allowed attempt is under review
    let app = spawn_app().await;
    let task = app.submit_for_review("Only twice", 2).await;
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "no" }),
    )
    .await;
    app.wait_for_review(&task.id, 2).await;

    // Act
    let failed = app
        .decide(
            &task.id,
            json!({ "decision": "rejected", "attempt": 2, "comment": "still no" }),
        )
        .await;

    // Assert
    assert_eq!((failed.status, failed.attempt), (TaskStatus::Failed, 2));
    assert!(failed.error.as_deref().is_some_and(|e| !e.is_empty()));
    assert!(failed.final_result.is_none());
    assert_eq!(failed.decisions_for(2), vec![Decision::Rejected]);
    let again = app
        .feedback_json(&task.id, &json!({ "decision": "approved" }))
        .await;
    assert_error(again, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_final_rejection_fails_the_task_at_once() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Not worth it", 3).await;

    // Act
    let failed = app
        .decide(
            &task.id,
            json!({ "decision": "rejected_final", "comment": "off topic" }),
        )
        .await;

    // Assert
    assert_eq!((failed.status, failed.attempt), (TaskStatus::Failed, 1));
    let error = failed.error.clone().expect("a reason");
    assert!(error.contains("off topic"), "{error}");
    assert_eq!(failed.decisions_for(1), vec![Decision::RejectedFinal]);
    assert_eq!(app.get_task(&task.id).await.status, TaskStatus::Failed);
}

#[tokio::test]
async fn a_task_waiting_for_review_can_be_cancelled_and_then_takes_no_decision() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Never mind", 3).await;

    // Act
    let response = app.cancel_json(&task.id).await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Task = json_body(response).await;
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let feedback = app
        .feedback_json(&task.id, &json!({ "decision": "approved" }))
        .await;
    assert_error(feedback, StatusCode::CONFLICT, "conflict").await;
    assert_error(
        app.cancel_json(&task.id).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let after = app.get_task(&task.id).await;
    assert_eq!(after.status, TaskStatus::Cancelled);
    assert!(after.attempts.is_empty() && after.final_result.is_none());
}

#[tokio::test]
async fn a_running_task_can_be_cancelled() {
    // Arrange
    let app = spawn_app_with(slow_config()).await;
    let task = app.submit("Stop it", 3).await;
    app.wait_for_status(&task.id, TaskStatus::Running).await;

    // Act
    let response = app.cancel_json(&task.id).await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Task = json_body(response).await;
    assert_eq!(
        (cancelled.status, cancelled.attempt),
        (TaskStatus::Cancelled, 1)
    );
    let feedback = app
        .feedback_json(&task.id, &json!({ "decision": "approved" }))
        .await;
    assert_error(feedback, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(app.get_task(&task.id).await.status, TaskStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_lifecycles_at_once_all_complete() {
    // Arrange
    let app = spawn_app().await;
    let inputs: Vec<String> = (0..50).map(|i| format!("task {i}")).collect();
    let tasks = join_all(inputs.iter().map(|input| app.submit(input, 3))).await;

    // Act: each is rejected once, then approved, all at the same time
    let lifecycle = |task: Task| {
        let app = &app;
        async move {
            app.wait_for_review(&task.id, 1).await;
            let comment = format!("more about {}", task.input);
            app.decide(
                &task.id,
                json!({ "decision": "rejected", "attempt": 1, "comment": comment }),
            )
            .await;
            app.wait_for_review(&task.id, 2).await;
            app.decide(&task.id, json!({ "decision": "approved", "attempt": 2 }))
                .await
        }
    };
    let done = join_all(tasks.into_iter().map(lifecycle)).await;

    // Assert
    for task in done {
        assert_eq!(
            (task.status, task.attempt),
            (TaskStatus::Completed, 2),
            "{task:?}"
        );
        assert_eq!(task.attempts.len(), 2);
        let result = task.final_result.expect("a final result");
        assert!(
            result.contains(&format!("- on draft 1: more about {}", task.input)),
            "{result}"
        );
    }
    assert_eq!(app.listed_ids("?status=completed").await.len(), 50);
}

#[tokio::test]
async fn health_check_answers_ok() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.get("/healthz").await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_method_is_refused_in_the_api_s_own_words() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .client
        .delete(app.url("/api/tasks"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn readiness_and_metrics_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Config {
        store: hitl::config::StoreKind::Sqlite,
        data_dir: dir.path().to_owned(),
        ..test_config()
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(json_body::<Value>(ready).await, json!({"status": "ready"}));

    let odd = app
        .client
        .request(
            reqwest::Method::from_bytes(b"ZZ123").unwrap(),
            app.url("/x"),
        )
        .send()
        .await
        .unwrap();
    assert!(odd.status().is_client_error());
    let task = app.submit_for_review("Count me", 3).await;
    let _watching = app.events(&format!("?task={}", task.id), None).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(content_type(&metrics).starts_with("text/plain"));
    let text = text_body(metrics).await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    // The recorder is shared by every test in this process: lower bounds only.
    assert!(value("hitl_tasks{status=\"waiting_for_review\"}") >= 1.0);
    assert!(value("hitl_sse_clients") >= 1.0);
    assert!(value("hitl_journal_events_written_total") >= 3.0);
    assert!(value("hitl_events_published_total") >= 3.0);
    assert!(
        text.contains("http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/tasks\""),
        "{text}"
    );
    assert!(
        text.contains("method=\"OTHER\"") && !text.contains("ZZ123"),
        "a made-up method is one series"
    );
}

#[tokio::test]
async fn an_approval_of_a_text_other_than_the_output_under_review_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Summarise the minutes", 2).await;
    let output = task.output.clone().expect("an output under review");
    let seen = hitl::audit::Digest::of_text(&format!("{output} (an older text)")).to_string();

    // Act: approve, naming the hash of a text that is not the output
    let response = app
        .feedback_json(
            &task.id,
            &json!({ "decision": "approved", "attempt": 1, "output_sha256": seen }),
        )
        .await;

    // Assert: refused, nothing decided; the right hash then finalises
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("not the text you reviewed"), "{message}");
    assert_eq!(
        app.get_task(&task.id).await.status,
        TaskStatus::WaitingForReview
    );
    let done = app
        .decide(
            &task.id,
            json!({ "decision": "approved", "attempt": 1,
                    "output_sha256": hitl::audit::Digest::of_text(&output).to_string() }),
        )
        .await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.final_result.as_deref(), Some(&*output));
}

#[tokio::test]
async fn review_deadlines_are_set_shown_extended_and_refused_clearly() {
    // Arrange
    let app = spawn_app().await;
    let bad = [
        json!({ "input": "x", "review_timeout_secs": -1 }),
        json!({ "input": "x", "review_timeout_secs": 400_000_000 }),
        json!({ "input": "x", "review_timeout_secs": 60, "review_timeout_policy": "maybe" }),
        json!({ "input": "x", "review_timeout_secs": "soon" }),
    ];
    for body in bad {
        let response = app.submit_json(&body).await;
        let status = response.status();
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{body}: {status}"
        );
    }
    let response = app
        .submit_json(&json!({ "input": "Timed", "review_timeout_secs": 3600,
                              "review_timeout_policy": "fail" }))
        .await;
    let task: Task = json_body(response).await;
    app.wait_for_review(&task.id, 1).await;
    let raw: Value = json_body(app.get(&format!("/api/tasks/{}", task.id)).await).await;
    assert_eq!(
        raw["review_timeout"],
        json!({ "seconds": 3600, "policy": "fail" })
    );
    let deadline = |raw: &Value| {
        time::OffsetDateTime::parse(
            raw["review_deadline"].as_str().expect("a deadline"),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let first = deadline(&raw);

    // Act + Assert: refused extensions change nothing
    let path = format!("/api/tasks/{}/deadline", task.id);
    let extend = |body: Value| {
        let path = path.clone();
        let app = &app;
        async move { app.post_json(&path, &body).await }
    };
    assert_error(
        extend(json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_error(
        extend(json!({ "extend_secs": 0 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_error(
        extend(json!({ "extend_secs": 60, "attempt": 2 })).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // Act + Assert: an hour more
    let response = extend(json!({ "extend_secs": 3600, "attempt": 1 })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let raw: Value = json_body(response).await;
    assert_eq!(deadline(&raw), first + time::Duration::hours(1));
    let (_, page) = app.get_page(&format!("/tasks/{}", task.id)).await;
    assert!(page.contains("Deadline:"), "{page}");
    assert!(
        page.contains("If no one decides by then, the task fails."),
        "{page}"
    );
    assert!(page.contains(r#"action="/tasks/"#) && page.contains(r#"/deadline""#));

    // No deadline more than a year away
    let response = extend(json!({ "extend_secs": 365 * 86_400 })).await;
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("at most a year away"), "{message}");

    // A task without a deadline has none to extend
    let plain = app.submit_for_review("No deadline", 3).await;
    let response = app
        .post_json(
            &format!("/api/tasks/{}/deadline", plain.id),
            &json!({ "extend_secs": 60 }),
        )
        .await;
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("no deadline"), "{message}");
}

#[tokio::test]
async fn a_submission_repeated_under_one_idempotency_key_makes_one_task() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({ "input": "Made once", "max_attempts": 2 });

    // Act: ten at once, then one more later
    let sent = join_all((0..10).map(|_| app.submit_keyed("retry-me-1", &body))).await;
    let later = app.submit_keyed("retry-me-1", &body).await;

    // Assert: all answered 201 with the one task; the repeats say they are repeats
    let mut ids = Vec::new();
    let mut replayed = 0;
    for response in sent.into_iter().chain([later]) {
        assert_eq!(response.status(), StatusCode::CREATED);
        if response.headers().get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        let task: Task = json_body(response).await;
        ids.push(task.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one task: {ids:?}");
    assert_eq!(replayed, 10);
    let listed = app.listed_ids("").await;
    assert_eq!(listed, ids, "and only one is listed");

    // Another key is another task
    let other = app.submit_keyed("retry-me-2", &body).await;
    assert_eq!(other.status(), StatusCode::CREATED);
    assert!(other.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.listed_ids("").await.len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_other_text_or_malformed_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let first = app
        .submit_keyed("key-1", &json!({ "input": "First" }))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);

    // Act + Assert
    let reused = app
        .submit_keyed("key-1", &json!({ "input": "Second" }))
        .await;
    let message = assert_error(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(message.contains("different submission"), "{message}");
    // An outside submission's output and metadata count as much as its input.
    let draft = json!({ "input": "Draft", "output": "v1", "metadata": { "run": 1 } });
    assert_eq!(
        app.submit_keyed("key-2", &draft).await.status(),
        StatusCode::CREATED
    );
    for other in [
        json!({ "input": "Draft", "output": "v2", "metadata": { "run": 1 } }),
        json!({ "input": "Draft", "output": "v1", "metadata": { "run": 2 } }),
        json!({ "input": "Draft", "processor": "external" }),
    ] {
        let reused = app.submit_keyed("key-2", &other).await;
        assert_error(
            reused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )
        .await;
    }
    let again = app.submit_keyed("key-2", &draft).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(again.headers().get("idempotent-replayed").is_some());
    for bad in ["has space", &"k".repeat(256)] {
        let refused = app.submit_keyed(bad, &json!({ "input": "Third" })).await;
        let message =
            assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert!(message.contains("Idempotency-Key"), "{message}");
    }
    assert_eq!(
        app.listed_ids("").await.len(),
        2,
        "nothing more was submitted"
    );
}
