//! Instances come and go, and so does the database: nothing is lost or done twice.

use std::time::Duration;

use hitl::task::TaskStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, assert_error, json_body, text_body, within},
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
    assert_eq!(
        versions, 3,
        "one row per version (three migrations), applied once"
    );
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

pub async fn a_killed_instance_s_claim_is_taken_over_without_a_duplicate(db: Db) {
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

pub async fn the_database_lost_and_back_under_a_running_instance(db: Db) {
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

pub async fn a_decision_while_the_claim_holder_is_dead_is_carried_on(db: Db) {
    // Arrange: A holds the claim of a task waiting for review; B serves requests.
    let mut a = Binary::spawn(&db, &["--process-delay-ms", "0"]);
    let (b, _) = db.instance().await;
    let task = a.app.submit_for_review("Orphaned review", 3).await;
    b.wait_for_review(&task.id, 1).await;
    a.kill();

    // Act: changes are requested on B while A's claim has not yet run out.
    let decided = b
        .decide(
            &task.id,
            json!({"decision": "rejected", "attempt": 1, "comment": "again"}),
        )
        .await;

    // Assert: the decision is taken at once; the next attempt runs on B once A's claim ran out.
    assert_eq!((decided.status, decided.attempt), (TaskStatus::Running, 2));
    let second = within("B processes attempt 2", b.wait_for_review(&task.id, 2)).await;
    assert!(second.output.unwrap_or_default().contains("again"));
    assert_eq!(entries(&b, &task.id, "attempt_started", 2).await, 1);
}

pub async fn review_deadlines_apply_once_across_instances(db: Db) {
    let apps = db.three().await;
    let mut ids = Vec::new();
    for (k, app) in apps.iter().enumerate() {
        let submitted = app
            .submit_json(&json!({
                "input": format!("Deadline {k}"),
                "review_timeout_secs": 1,
                "review_timeout_policy": "approve",
            }))
            .await;
        assert_eq!(submitted.status(), StatusCode::CREATED);
        let task: Value = submitted.json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    for (k, id) in ids.iter().enumerate() {
        // Watched on an instance that did not submit it.
        let done = apps[(k + 1) % 3]
            .wait_for_status(id, TaskStatus::Completed)
            .await;
        assert_eq!(done.attempts.len(), 1, "decided once: {done:?}");
        assert_eq!(entries(&apps[k], id, "decided", 1).await, 1);
        let task: Value = json_body(apps[(k + 2) % 3].get(&format!("/api/tasks/{id}")).await).await;
        assert_eq!(task["attempts"][0]["timed_out"], true, "{task}");
    }
}

pub async fn a_stopped_instance_hands_its_work_over_at_once(db: Db) {
    // Arrange: A's claims would last a minute; B looks for free work every 300 ms.
    let mut a = Binary::spawn_with_lease(&db, 60_000, &["--process-delay-ms", "60000"]);
    let (b, _) = db
        .instance_with(hitl::config::Config {
            claim_lease_ms: 900,
            ..db.config()
        })
        .await;
    let task = a.app.submit("Deploy under me", 3).await;
    b.wait_for_status(&task.id, TaskStatus::Running).await;

    // Act: A is stopped for a deploy (SIGTERM) mid-attempt.
    a.stop();

    // Assert: B carries the attempt on well before A's claim would have run out.
    let waiting = within("B takes over", b.wait_for_review(&task.id, 1)).await;
    assert_eq!(waiting.attempt, 1);
    assert_eq!(entries(&b, &task.id, "attempt_started", 1).await, 1);
}

/// Restarts the PostgreSQL server itself (run alone: every other test's connections go too).
pub async fn the_database_restarted_under_a_running_instance(db: Db) {
    let (a, _) = db.instance().await;
    let task = a.submit_for_review("Restart", 3).await;
    let mut watching = a.events(&format!("?task={}", task.id), None).await;
    let (_, snapshot) = watching.next_status().await;
    assert_eq!(snapshot.status, TaskStatus::WaitingForReview);

    let command = std::env::var("HITL_TEST_PG_RESTART_CMD").unwrap_or_else(|_| {
        "pg_ctlcluster 15 main restart || service postgresql restart".to_owned()
    });
    let restarted = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", &command])
            .status()
    })
    .await
    .unwrap()
    .expect("the restart command runs");
    assert!(restarted.success(), "PostgreSQL restarted");

    // The instance finds the database again by itself, and so does its stream.
    eventually("A is ready again", Duration::from_secs(30), || async {
        a.get("/readyz").await.status() == StatusCode::OK
    })
    .await;
    let decision = json!({"decision": "approved", "attempt": 1});
    let done = a.decide(&task.id, decision).await;
    assert_eq!(done.status, TaskStatus::Completed);
    let (_, completed) = watching.next_status().await;
    assert_eq!(completed.status, TaskStatus::Completed);
    let again = a.submit_for_review("After the restart", 3).await;
    assert_eq!(again.attempt, 1);
}

/// Signals a process of ours.
fn signal(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: signalling our own child process.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "signal {signal} sent"
    );
}

/// One instance frozen (SIGSTOP) in the middle of a transaction, holding the event counter's
/// row lock: the other instance's writes carry on within seconds (the server cuts the frozen
/// session), and the frozen one, let go again (SIGCONT), works and catches up. Once, the
/// healthy instance answered every write 503 for as long as the other stayed frozen.
pub async fn a_frozen_instance_does_not_stop_the_others_writes(db: Db) {
    // Arrange: A under a steady load of submissions, its sessions named so they can be found.
    let named = |name: &str| format!("{}&application_name={name}", db.url);
    let mut a = Binary::spawn_url(&named("hitl_frozen"), &[]);
    let b = Binary::spawn_url(&named("hitl_healthy"), &[]);
    let load = {
        let base = a.app.base_url.clone();
        tokio::spawn(async move {
            // Plain requests: while A is frozen they hang, and whatever they get is fine.
            let client = reqwest::Client::new();
            let submitters = (0..8).map(|n| {
                let (client, url) = (client.clone(), format!("{base}/api/tasks"));
                async move {
                    for k in 0.. {
                        let body = json!({ "input": format!("load {n}-{k}") });
                        let _ = client.post(&url).json(&body).send().await;
                    }
                }
            });
            futures_util::future::join_all(submitters).await;
        })
    };
    let holds_counter = "SELECT 1 FROM pg_locks l JOIN pg_stat_activity s USING (pid)
                         WHERE s.application_name = 'hitl_frozen' AND l.granted
                           AND l.relation = 'hitl_seq'::regclass";

    // Act: freeze A until it is caught holding the counter (it holds it about a round trip
    // per batch, so this takes a few tries).
    let mut caught = false;
    for _ in 0..400 {
        signal(&a.child, libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(30)).await;
        if db.execute(holds_counter).await.expect("pg_locks") > 0 {
            caught = true;
            break;
        }
        signal(&a.child, libc::SIGCONT);
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    assert!(caught, "A was caught holding the counter's lock");

    // Assert: B's submissions succeed, the first within the server's cut (5 s) and a round
    // trip, the rest at once.
    let started = std::time::Instant::now();
    let first = b
        .app
        .submit_json(&json!({ "input": "While A is frozen" }))
        .await;
    assert_eq!(
        first.status(),
        StatusCode::CREATED,
        "B writes while A is frozen"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "within seconds, not {:?}",
        started.elapsed()
    );
    let mut made = vec![
        json_body::<Value>(first).await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for n in 0..5 {
        let started = std::time::Instant::now();
        let task = b.app.submit(&format!("B, A still frozen {n}"), 3).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        made.push(task.id);
    }

    // A let go: it carries on, and has caught up with what B made meanwhile.
    signal(&a.child, libc::SIGCONT);
    load.abort();
    eventually("A submits again", Duration::from_secs(30), || async {
        a.app
            .submit_json(&json!({ "input": "A is back" }))
            .await
            .status()
            == StatusCode::CREATED
    })
    .await;
    for id in &made {
        let task = within("A to show B's task", a.app.wait_for_review(id, 1)).await;
        assert_eq!(task.status, TaskStatus::WaitingForReview);
    }
    a.stop();
}
