//! Work done outside hitl (CONTRACT.md, "Additions of version 0.5"): an agent hands in its
//! draft and its revisions, workers claim attempts under leases, scripts wait for a change
//! without a stream, and a task says how it ended.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::durability::{Server, raw_task};
use crate::helpers::{TestApp, assert_error, json_body, spawn_app, unknown_id, within};

/// A task as JSON, from an answer that must be `status`.
async fn answer(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "{:?}", response.url().path());
    json_body(response).await
}

async fn submit_outside(app: &TestApp, body: Value) -> Value {
    answer(app.submit_json(&body).await, StatusCode::CREATED).await
}

fn id(task: &Value) -> String {
    task["id"].as_str().expect("an id").to_owned()
}

async fn post_attempt(app: &TestApp, id: &str, body: Value) -> Response {
    app.post_json(&format!("/api/tasks/{id}/attempts"), &body)
        .await
}

async fn claim(app: &TestApp, body: Value) -> Response {
    app.post_json("/api/claims", &body).await
}

/// The first status event of the task's stream from `after` on that matches.
async fn status_event(app: &TestApp, id: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let mut events = app.events(&format!("?task={id}"), Some(0)).await;
    loop {
        let event = events.next().await;
        if event.name != "status" {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data).unwrap();
        if matches(&data) {
            return data;
        }
    }
}

#[tokio::test]
async fn an_agent_hands_in_its_draft_and_revisions_until_approved() {
    // Arrange: a draft made outside, with metadata
    let app = spawn_app().await;
    let task = submit_outside(
        &app,
        json!({ "input": "Write the release note", "output": "Draft one",
                "metadata": { "run": 7, "agent": "writer" } }),
    )
    .await;
    let id = id(&task);
    assert_eq!(
        task["status"], "waiting_for_review",
        "open for review at once"
    );
    assert_eq!(task["attempt"], 1);
    assert_eq!(task["processor"], "external");
    assert_eq!(task["metadata"], json!({ "run": 7, "agent": "writer" }));
    assert_eq!(task["outcome"], Value::Null);

    // Act: changes requested; the agent hands in attempt 2; approved with a note
    let changed = app
        .decide(
            &id,
            json!({ "decision": "rejected", "comment": "Mention the fix" }),
        )
        .await;
    let pending = raw_task(&app, &id).await;
    let revised = answer(
        post_attempt(
            &app,
            &id,
            json!({ "attempt": 2, "output": "Draft two, with the fix" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let approved = answer(
        app.feedback_json(
            &id,
            &json!({ "decision": "approved", "attempt": 2, "comment": "Ship it" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Assert: pending for attempt 2 (not processed by hitl), the event said why
    assert_eq!(changed.attempt, 2);
    assert_eq!(
        (pending["status"].as_str(), pending["attempt"].as_u64()),
        (Some("pending"), Some(2))
    );
    let event = status_event(&app, &id, |e| e["status"] == "pending").await;
    assert_eq!(event["decision"], "rejected");
    assert_eq!(event["comment"], "Mention the fix");
    assert_eq!(event["decided_by"], Value::Null);
    assert_eq!(revised["status"], "waiting_for_review");
    assert_eq!(revised["output"], "Draft two, with the fix");
    assert_eq!(approved["status"], "completed");
    assert_eq!(approved["outcome"], "approved");
    assert_eq!(approved["final_result"], "Draft two, with the fix");
    assert_eq!(
        approved["attempts"][1]["comment"], "Ship it",
        "the approval's note is kept"
    );
    let done = status_event(&app, &id, |e| e["status"] == "completed").await;
    assert_eq!(
        (done["decision"].as_str(), done["outcome"].as_str()),
        (Some("approved"), Some("approved"))
    );
    assert_eq!(done["comment"], "Ship it");
    // The trail says both outputs came from outside.
    let trail = app.get(&format!("/api/tasks/{id}/history")).await;
    let trail = trail.text().await.unwrap();
    let outside = trail
        .lines()
        .filter(|l| l.contains("\"attempt_finished\"") && l.contains("\"outside\":true"))
        .count();
    assert_eq!(outside, 2, "{trail}");
}

#[tokio::test]
async fn attempts_out_of_turn_are_refused_and_change_nothing() {
    // Arrange: an outside task under review, and one hitl makes
    let app = spawn_app().await;
    let task = submit_outside(&app, json!({ "input": "x", "output": "first" })).await;
    let id = id(&task);
    let own = app.submit_for_review("made by hitl", 3).await;
    let post = |id: String, body: Value| {
        let app = &app;
        async move { post_attempt(app, &id, body).await }
    };

    // Act and assert: each refusal, with its status and code
    let under_review = post(id.clone(), json!({ "attempt": 1, "output": "again" })).await;
    assert_error(under_review, StatusCode::CONFLICT, "conflict").await;
    let next = post(id.clone(), json!({ "attempt": 2, "output": "early" })).await;
    assert_error(next, StatusCode::CONFLICT, "conflict").await;
    let internal = post(own.id.clone(), json!({ "attempt": 1, "output": "mine" })).await;
    assert_error(internal, StatusCode::CONFLICT, "conflict").await;
    let unknown = post(unknown_id(), json!({ "attempt": 1, "output": "?" })).await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let missing = post(id.clone(), json!({ "attempt": 1 })).await;
    assert_error(missing, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let zero = post(id.clone(), json!({ "attempt": 0, "output": "x" })).await;
    assert_error(zero, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let extra = post(
        id.clone(),
        json!({ "attempt": 1, "output": "x", "colour": 1 }),
    )
    .await;
    let message = assert_error(extra, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(message.contains("colour"), "{message}");
    let large = post(
        id.clone(),
        json!({ "attempt": 1, "output": "x".repeat(70_000) }),
    )
    .await;
    assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let malformed = app
        .post_raw(
            &format!("/api/tasks/{id}/attempts"),
            "application/json",
            b"{".to_vec(),
        )
        .await;
    assert_error(malformed, StatusCode::BAD_REQUEST, "malformed_body").await;
    let claimless = post(
        id.clone(),
        json!({ "attempt": 1, "output": "x", "claim": "nope" }),
    )
    .await;
    assert_error(claimless, StatusCode::CONFLICT, "conflict").await;

    // Nothing changed.
    let after = raw_task(&app, &id).await;
    assert_eq!(after, raw_task(&app, &id).await);
    assert_eq!(after["status"], "waiting_for_review");
    assert_eq!(after["output"], "first");
    assert_eq!(after["updated_at"], task["updated_at"]);
    assert_eq!(raw_task(&app, &own.id).await["attempts"], json!([]));
}

#[tokio::test]
async fn a_submission_with_a_field_it_does_not_know_is_refused_naming_it() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "input": "x", "callback_urll": "http://x" }),
            "callback_urll",
        ),
        (json!({ "input": "x", "metadata": [1, 2] }), "metadata"),
        (
            json!({ "input": "x", "metadata": { "big": "x".repeat(17_000) } }),
            "metadata",
        ),
        (json!({ "input": "x", "processor": "gpt" }), "processor"),
        (json!({ "input": "x", "output": "   " }), "output"),
    ];
    for (body, field) in cases {
        let response = app.submit_json(&body).await;
        let message =
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert!(message.contains(field), "{field}: {message}");
    }
    assert_eq!(
        app.listed_ids("").await,
        Vec::<String>::new(),
        "nothing was made"
    );
    // An output alone names the task by its first line.
    let task = submit_outside(&app, json!({ "output": "Title line\nbody" })).await;
    assert_eq!(task["input"], "Title line…");
}

#[tokio::test]
async fn a_worker_claims_renews_reports_and_hands_in_an_attempt() {
    // Arrange: work for outside workers, and a task hitl makes itself (never claimed)
    let app = spawn_app().await;
    app.submit_for_review("made by hitl", 3).await;
    let task = submit_outside(
        &app,
        json!({ "input": "Translate", "processor": "external" }),
    )
    .await;
    let id = id(&task);
    assert_eq!(task["status"], "pending");

    // Act
    let claimed = answer(
        claim(&app, json!({ "wait_secs": 0, "lease_secs": 30 })).await,
        StatusCode::OK,
    )
    .await;
    let token = claimed["claim"].as_str().unwrap().to_owned();
    let second = claim(&app, json!({ "wait_secs": 0 })).await;
    let renewed = answer(
        app.post_json(
            &format!("/api/claims/{token}/renew"),
            &json!({ "lease_secs": 120 }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mut events = app.events(&format!("?task={id}"), None).await;
    let progress = app
        .post_json(
            &format!("/api/claims/{token}/progress"),
            &json!({ "text": "half way" }),
        )
        .await;
    let reported = loop {
        let event = events.next().await;
        if event.name == "progress" {
            break event;
        }
    };
    let without_claim = post_attempt(&app, &id, json!({ "attempt": 1, "output": "mine" })).await;
    let handed = answer(
        post_attempt(
            &app,
            &id,
            json!({ "attempt": 1, "output": "Übersetzt", "claim": token }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let again = post_attempt(
        &app,
        &id,
        json!({ "attempt": 1, "output": "again", "claim": token }),
    )
    .await;
    let late_renew = app
        .post_json(&format!("/api/claims/{token}/renew"), &json!({}))
        .await;

    // Assert
    assert_eq!(claimed["attempt"], 1);
    assert_eq!(claimed["task"]["id"], id.as_str());
    assert_eq!(claimed["task"]["status"], "running");
    assert_eq!(claimed["history"], json!([]));
    assert_eq!(
        second.status(),
        StatusCode::NO_CONTENT,
        "one attempt, one claim"
    );
    let at = |v: &Value| {
        let text = v["lease_expires_at"].as_str().unwrap().to_owned();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(
        at(&renewed) - at(&claimed) > time::Duration::seconds(60),
        "120 s, not 30"
    );
    assert_eq!(progress.status(), StatusCode::ACCEPTED);
    assert!(reported.data.contains("half way"));
    assert_error(without_claim, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(handed["status"], "waiting_for_review");
    assert_eq!(handed["claim"], Value::Null);
    assert_error(again, StatusCode::CONFLICT, "claim_lost").await;
    assert_error(late_renew, StatusCode::CONFLICT, "claim_lost").await;
    let unknown = app
        .post_json("/api/claims/not-a-claim/renew", &json!({}))
        .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_worker_gets_the_reviewers_comments_with_the_next_attempt() {
    let app = spawn_app().await;
    let task = submit_outside(&app, json!({ "input": "Summarise", "output": "v1" })).await;
    let id = id(&task);
    app.decide(&id, json!({ "decision": "rejected", "comment": "Shorter" }))
        .await;

    let claimed = answer(claim(&app, json!({ "wait_secs": 0 })).await, StatusCode::OK).await;

    assert_eq!(claimed["attempt"], 2);
    assert_eq!(
        claimed["history"],
        json!([{ "attempt": 1, "output": "v1", "comment": "Shorter" }])
    );
}

#[tokio::test]
async fn a_claim_waits_for_work_to_arrive() {
    let app = spawn_app().await;
    let waiting = {
        let app = TestApp::at(app.base_url.clone());
        tokio::spawn(async move { claim(&app, json!({ "wait_secs": 30 })).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let task = submit_outside(
        &app,
        json!({ "input": "late work", "processor": "external" }),
    )
    .await;

    let claimed = answer(within("the claim", waiting).await.unwrap(), StatusCode::OK).await;

    assert_eq!(claimed["task"]["id"], task["id"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the work, not the timer"
    );
    let none = claim(&app, json!({ "wait_secs": 1 })).await;
    assert_eq!(none.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn racing_workers_never_hold_one_attempt() {
    let app = spawn_app().await;
    for n in 0..3 {
        submit_outside(
            &app,
            json!({ "input": format!("job {n}"), "processor": "external" }),
        )
        .await;
    }
    let racers = (0..12).map(|_| {
        let app = TestApp::at(app.base_url.clone());
        tokio::spawn(async move {
            let response = claim(&app, json!({ "wait_secs": 0 })).await;
            match response.status() {
                StatusCode::OK => Some(json_body::<Value>(response).await["task"]["id"].clone()),
                StatusCode::NO_CONTENT => None,
                other => panic!("claim answered {other}"),
            }
        })
    });
    let mut won: Vec<String> = Vec::new();
    for racer in racers {
        if let Some(id) = racer.await.unwrap() {
            won.push(id.as_str().unwrap().to_owned());
        }
    }
    won.sort();
    let before = won.len();
    won.dedup();
    assert_eq!(
        (before, won.len()),
        (3, 3),
        "each of three attempts claimed exactly once"
    );
}

#[tokio::test]
async fn a_lease_that_runs_out_gives_the_attempt_to_another_worker() {
    // Arrange: a worker claims with the shortest lease and goes silent
    let app = spawn_app().await;
    let task = submit_outside(&app, json!({ "input": "x", "processor": "external" })).await;
    let id = id(&task);
    let first = answer(
        claim(&app, json!({ "wait_secs": 0, "lease_secs": 5 })).await,
        StatusCode::OK,
    )
    .await;
    let lost = first["claim"].as_str().unwrap().to_owned();

    // Act: another worker waits for work; the lease runs out
    let second = answer(
        claim(&app, json!({ "wait_secs": 30 })).await,
        StatusCode::OK,
    )
    .await;
    let late = post_attempt(
        &app,
        &id,
        json!({ "attempt": 1, "output": "late", "claim": lost }),
    )
    .await;
    let renew = app
        .post_json(&format!("/api/claims/{lost}/renew"), &json!({}))
        .await;
    let fail = app
        .post_json(
            &format!("/api/claims/{lost}/fail"),
            &json!({ "error": "x" }),
        )
        .await;

    // Assert: the attempt went to the second worker; the first's posts change nothing
    assert_eq!(second["task"]["id"], id.as_str());
    assert_eq!(second["attempt"], 1);
    assert_ne!(second["claim"], first["claim"]);
    assert_error(late, StatusCode::CONFLICT, "claim_lost").await;
    assert_error(renew, StatusCode::CONFLICT, "claim_lost").await;
    assert_error(fail, StatusCode::CONFLICT, "claim_lost").await;
    let now = raw_task(&app, &id).await;
    assert_eq!(now["status"], "running");
    assert_eq!(now["output"], Value::Null);
    let trail = app
        .get(&format!("/api/tasks/{id}/history"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        trail.contains("\"claim_released\"") && trail.contains("\"expired\":true"),
        "{trail}"
    );
}

#[tokio::test]
async fn a_worker_gives_up_for_another_try_or_for_good_and_a_reviewer_retries() {
    let app = spawn_app().await;
    let task = submit_outside(&app, json!({ "input": "x", "processor": "external" })).await;
    let id = id(&task);
    let token = |claimed: &Value| claimed["claim"].as_str().unwrap().to_owned();
    let fail = |token: String, retry: bool| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/api/claims/{token}/fail"),
                &json!({ "error": "the model timed out", "retry": retry }),
            )
            .await
        }
    };

    let first = answer(claim(&app, json!({ "wait_secs": 0 })).await, StatusCode::OK).await;
    let again = answer(fail(token(&first), true).await, StatusCode::OK).await;
    let second = answer(claim(&app, json!({ "wait_secs": 0 })).await, StatusCode::OK).await;
    let failed = answer(fail(token(&second), false).await, StatusCode::OK).await;
    let retried = answer(
        app.post_json(&format!("/api/tasks/{id}/retry"), &json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    let third = answer(claim(&app, json!({ "wait_secs": 0 })).await, StatusCode::OK).await;

    assert_eq!(
        (again["status"].as_str(), again["attempt"].as_u64()),
        (Some("pending"), Some(1))
    );
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["outcome"], "processing_failed");
    assert_eq!(failed["error"], "the model timed out");
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["outcome"], Value::Null);
    assert_eq!(third["task"]["id"], id.as_str());
    let done = app.submit_for_review("approve me", 3).await;
    app.decide(&done.id, json!({ "decision": "approved" }))
        .await;
    let refused = app
        .post_json(&format!("/api/tasks/{}/retry", done.id), &json!({}))
        .await;
    assert_error(refused, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_wait_answers_on_a_change_or_when_its_time_is_up() {
    let app = spawn_app().await;
    let task = submit_outside(&app, json!({ "input": "x", "processor": "external" })).await;
    let id = id(&task);

    // Nothing happens: the wait ends on time and says so.
    let started = Instant::now();
    let quiet = app.get(&format!("/api/tasks/{id}?wait=1")).await;
    assert_eq!(quiet.status(), StatusCode::OK);
    assert_eq!(quiet.headers()["hitl-wait"], "timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A change while waiting: answered with the new state.
    let waiter = {
        let app = TestApp::at(app.base_url.clone());
        let id = id.clone();
        tokio::spawn(async move {
            app.get(&format!("/api/tasks/{id}?wait=60&while=pending,running"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    post_attempt(&app, &id, json!({ "attempt": 1, "output": "done" })).await;
    let changed = within("the wait", waiter).await.unwrap();
    assert_eq!(changed.headers()["hitl-wait"], "changed");
    assert_eq!(
        json_body::<Value>(changed).await["status"],
        "waiting_for_review"
    );

    // Already out of `while`: at once.
    let at_once = app
        .get(&format!("/api/tasks/{id}?wait=60&while=pending"))
        .await;
    assert_eq!(at_once.headers()["hitl-wait"], "changed");

    // Bad values.
    let bad = app.get(&format!("/api/tasks/{id}?wait=soon")).await;
    assert_error(bad, StatusCode::BAD_REQUEST, "malformed_body").await;
    let long = app.get(&format!("/api/tasks/{id}?wait=121")).await;
    assert_error(long, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let status = app
        .get(&format!("/api/tasks/{id}?wait=1&while=asleep"))
        .await;
    assert_error(status, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let unknown = app
        .get(&format!("/api/tasks/{}?wait=1", unknown_id()))
        .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn each_ending_says_what_it_was() {
    let app = spawn_app().await;
    let outcome = |id: String| {
        let app = &app;
        async move { raw_task(app, &id).await["outcome"].clone() }
    };
    let rejected = app.submit_for_review("a", 3).await;
    app.decide(&rejected.id, json!({ "decision": "rejected_final" }))
        .await;
    let exhausted = app.submit_for_review("b", 1).await;
    app.decide(
        &exhausted.id,
        json!({ "decision": "rejected", "comment": "no" }),
    )
    .await;
    let cancelled = app.submit_for_review("c", 3).await;
    app.cancel_json(&cancelled.id).await;
    let timed = submit_outside(
        &app,
        json!({ "output": "d", "review_timeout_secs": 1, "review_timeout_policy": "fail" }),
    )
    .await;
    let timed_id = id(&timed);
    status_event(&app, &timed_id, |e| e["status"] == "failed").await;

    assert_eq!(outcome(rejected.id).await, "rejected");
    assert_eq!(outcome(exhausted.id).await, "changes_exhausted");
    assert_eq!(outcome(cancelled.id).await, "cancelled");
    assert_eq!(outcome(timed_id).await, "timed_out");
}

#[tokio::test]
async fn claims_and_waits_survive_a_crash() {
    // Arrange: a claim held and a lease that will run out while hitl is down
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0).await;
    let app = &server.app;
    let held = submit_outside(
        app,
        json!({ "input": "held", "processor": "external", "metadata": { "z": 1, "a": 2 } }),
    )
    .await;
    let held_claim = answer(
        claim(app, json!({ "wait_secs": 0, "lease_secs": 600 })).await,
        StatusCode::OK,
    )
    .await;
    let lapsing = submit_outside(app, json!({ "input": "lapsing", "processor": "external" })).await;
    let lapsing_claim = answer(
        claim(app, json!({ "wait_secs": 0, "lease_secs": 5 })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(held_claim["task"]["id"], held["id"]);
    assert_eq!(lapsing_claim["task"]["id"], lapsing["id"]);
    // An agent waits on the held task when hitl is killed.
    let waiter = {
        let app = TestApp::at(app.base_url.clone());
        let id = id(&held);
        tokio::spawn(async move {
            app.client
                .get(app.url(&format!("/api/tasks/{id}?wait=60")))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill().await;
    let cut = within("the wait ends", waiter).await.unwrap();
    assert!(
        cut.is_err() || cut.unwrap().status().is_success(),
        "the wait ends; the agent retries"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Act: start again
    let server = Server::start(dir.path(), 0).await;
    let app = &server.app;
    let token = held_claim["claim"].as_str().unwrap();
    let handed = post_attempt(
        app,
        &id(&held),
        json!({ "attempt": 1, "output": "after", "claim": token }),
    )
    .await;
    let lapsed = status_event(app, &id(&lapsing), |e| e["status"] == "pending").await;
    let again = answer(claim(app, json!({ "wait_secs": 5 })).await, StatusCode::OK).await;

    // Assert: the held claim still counts; the lapsed one was let go at start-up, once
    assert_eq!(
        answer(handed, StatusCode::OK).await["status"],
        "waiting_for_review"
    );
    assert_eq!(lapsed["attempt"], 1);
    assert_eq!(again["task"]["id"], lapsing["id"]);
    let stale = lapsing_claim["claim"].as_str().unwrap();
    let late = post_attempt(
        app,
        &id(&lapsing),
        json!({ "attempt": 1, "output": "x", "claim": stale }),
    )
    .await;
    assert_error(late, StatusCode::CONFLICT, "claim_lost").await;
    let once = claim(app, json!({ "wait_secs": 0 })).await;
    assert_eq!(
        once.status(),
        StatusCode::NO_CONTENT,
        "the lapsed attempt was handed out once"
    );
    // The agent asks again, as a client does after a cut wait, and gets the decision.
    let retried = {
        let app = TestApp::at(app.base_url.clone());
        let id = id(&held);
        tokio::spawn(async move {
            app.get(&format!("/api/tasks/{id}?wait=60&while=waiting_for_review"))
                .await
        })
    };
    let approved = app
        .feedback_json(
            &id(&held),
            &json!({ "decision": "approved", "comment": "after the crash" }),
        )
        .await;
    assert_eq!(approved.status(), StatusCode::OK);
    let decided = within("the agent's retried wait", retried).await.unwrap();
    assert_eq!(decided.headers()["hitl-wait"], "changed");
    let decided: Value = json_body(decided).await;
    assert_eq!(
        (decided["status"].as_str(), decided["outcome"].as_str()),
        (Some("completed"), Some("approved"))
    );
    assert_eq!(decided["final_result"], "after");
    let stored = app
        .get(&format!("/api/tasks/{}", id(&held)))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        stored.contains(r#""metadata":{"a":2,"z":1}"#),
        "kept across the crash (the test client sorts its keys): {stored}"
    );
    server.kill().await;
}

#[tokio::test]
async fn the_pages_show_outside_work_endings_and_a_retry() {
    // Arrange: an outside task whose worker gave up, and one sent back for a revision
    let app = spawn_app().await;
    let broken = submit_outside(
        &app,
        json!({ "input": "Break me", "processor": "external" }),
    )
    .await;
    let broken = id(&broken);
    let claimed = answer(claim(&app, json!({ "wait_secs": 0 })).await, StatusCode::OK).await;
    let token = claimed["claim"].as_str().unwrap();
    app.post_json(
        &format!("/api/claims/{token}/fail"),
        &json!({ "error": "disk full" }),
    )
    .await;

    let revising = submit_outside(
        &app,
        json!({ "input": "Revise me", "output": "v1", "metadata": { "ticket": "T-9" } }),
    )
    .await;
    let revising = id(&revising);
    let form = [
        ("decision", "rejected"),
        ("attempt", "1"),
        ("comment", "Shorter"),
        ("output", "v1"),
    ];
    let sent_back = app.feedback_form(&revising, &form, false).await;
    // Act
    let (_, revising_page) = app.get_page(&format!("/tasks/{revising}")).await;
    let (_, broken_page) = app.get_page(&format!("/tasks/{broken}")).await;
    let (_, home) = app.get_page("/").await;
    let retried = app
        .post_raw(
            &format!("/tasks/{broken}/retry"),
            "application/x-www-form-urlencoded",
            Vec::new(),
        )
        .await;

    // Assert: the request for changes went through with the unedited output box
    assert_eq!(sent_back.status(), StatusCode::SEE_OTHER);
    assert!(
        revising_page.contains("Waiting for the revision from outside"),
        "{revising_page}"
    );
    assert!(revising_page.contains("T-9"), "the metadata is shown");
    assert!(
        broken_page.contains("Processing failed at attempt 1: disk full"),
        "{broken_page}"
    );
    assert!(broken_page.contains("id=\"retry\""), "a Retry button");
    assert!(
        broken_page.contains("given up by a worker"),
        "the trail says who failed it"
    );
    assert!(home.contains("waiting for the revision from outside"));
    assert!(home.contains("Processing failed"));
    assert_eq!(retried.status(), StatusCode::SEE_OTHER);
    assert_eq!(raw_task(&app, &broken).await["status"], "pending");
}

#[tokio::test]
async fn a_comment_typed_before_approving_is_the_approvals_note() {
    let app = spawn_app().await;
    let task = app.submit_for_review("Approve with a note", 3).await;
    let output = task.output.clone().unwrap();
    let form = [
        ("decision", "approved"),
        ("attempt", "1"),
        ("comment", "Good, but watch the tone"),
        ("output", output.as_str()),
    ];

    let response = app.feedback_form(&task.id, &form, false).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let done = raw_task(&app, &task.id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["final_result"],
        output.as_str(),
        "the unedited box is no edit"
    );
    assert_eq!(done["attempts"][0]["comment"], "Good, but watch the tone");
    let (_, page) = app.get_page(&format!("/tasks/{}", task.id)).await;
    assert!(
        page.contains("Good, but watch the tone"),
        "the note is on the page"
    );
}

#[tokio::test]
async fn an_agent_faster_than_the_workflow_loses_nothing() {
    // Arrange: drafts handed in, sent back and revised twice, all before any task's workflow
    // has run a step (one thread: nothing else runs until this test awaits)
    use hitl::{
        auth::Actor,
        input::{AttemptPost, DecisionRequest, NewTask},
        task::Decision,
    };
    let (app, hitl) = crate::helpers::spawn_app_and_service(crate::helpers::test_config()).await;
    let anyone = Actor::anyone();
    let mut ids = Vec::new();
    for n in 0..20 {
        let new = NewTask::parse(Some(&format!("fast {n}")), None)
            .unwrap()
            .outside(Some("v1"), None, None)
            .unwrap();
        let task = hitl.submit(new, &anyone).await.unwrap();
        for attempt in 1..=2 {
            let sent_back = DecisionRequest {
                decision: Decision::Rejected,
                attempt: Some(attempt),
                comment: Some("again".into()),
                output: None,
                output_sha256: None,
            };
            hitl.decide(task.id, sent_back, &anyone).await.unwrap();
            let next =
                AttemptPost::parse(Some(i64::from(attempt) + 1), Some("next"), None, 1024).unwrap();
            hitl.post_attempt(task.id, next, &anyone).await.unwrap();
        }
        ids.push(task.id.to_string());
    }

    // Act: the workflows catch up; then each is approved
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut states = Vec::new();
    for id in &ids {
        let task = raw_task(&app, id).await;
        states.push((task["status"].clone(), task["attempt"].clone()));
        let approved = app
            .feedback_json(id, &json!({ "decision": "approved", "attempt": 3 }))
            .await;
        assert_eq!(approved.status(), StatusCode::OK, "{task}");
    }

    // Assert: every task waited for review of attempt 3, none failed, and each completed
    for state in states {
        assert_eq!(state, (json!("waiting_for_review"), json!(3)));
    }
    for id in &ids {
        let task = raw_task(&app, id).await;
        assert_eq!(
            (task["status"].as_str(), task["outcome"].as_str()),
            (Some("completed"), Some("approved"))
        );
    }
}

#[tokio::test]
async fn renewing_a_lease_does_not_grow_the_audit_trail() {
    let app = spawn_app().await;
    let task = submit_outside(&app, json!({ "input": "x", "processor": "external" })).await;
    let id = id(&task);
    let claimed = answer(claim(&app, json!({ "wait_secs": 0 })).await, StatusCode::OK).await;
    let token = claimed["claim"].as_str().unwrap();
    let trail = || async {
        app.get(&format!("/api/tasks/{id}/history"))
            .await
            .text()
            .await
            .unwrap()
    };
    let before = trail().await;

    for _ in 0..5 {
        let renewed = app
            .post_json(
                &format!("/api/claims/{token}/renew"),
                &json!({ "lease_secs": 120 }),
            )
            .await;
        assert_eq!(renewed.status(), StatusCode::OK);
    }

    assert_eq!(
        trail().await,
        before,
        "renewals are kept on the task, not in the trail"
    );
    let held = raw_task(&app, &id).await;
    let at = |v: &Value| {
        let text = v["lease_expires_at"].as_str().unwrap().to_owned();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    // Renewed for 120 s where the claim had 60: later by about a minute.
    assert!(at(&held["claim"]) - at(&claimed) > time::Duration::seconds(50));
}

#[tokio::test]
async fn metadata_comes_back_as_it_was_given() {
    let app = spawn_app().await;
    let given = r#"{ "zeta": 1, "alpha": { "y": [2, {"b": "x y\" }"}], "a": null },
                    "big": 123456789012345678901234567890, "pi": 3.141592653589793238 }"#;
    let body = format!(r#"{{"output": "draft", "metadata": {given}}}"#);
    let made = app
        .post_raw("/api/tasks", "application/json", body.into_bytes())
        .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let id = id(&json_body::<Value>(made).await);

    let text = app
        .get(&format!("/api/tasks/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let (_, page) = app.get_page(&format!("/tasks/{id}")).await;

    // Key order, string contents and every digit kept; only whitespace between tokens gone.
    let expected = r#""metadata":{"zeta":1,"alpha":{"y":[2,{"b":"x y\" }"}],"a":null},"big":123456789012345678901234567890,"pi":3.141592653589793238}"#;
    assert!(text.contains(expected), "{text}");
    assert!(
        page.contains("123456789012345678901234567890"),
        "the page shows it too"
    );
    assert!(
        page.find("zeta").unwrap() < page.find("alpha").unwrap(),
        "in the order given"
    );
}
