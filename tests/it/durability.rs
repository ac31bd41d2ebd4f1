//! The real binary on a durable store, killed without warning (SIGKILL) at several points of a
//! task's life and started again on the same data directory: nothing accepted is lost, nothing
//! is doubled, event ids carry on, and a refused start says why.

use std::{
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use hitl::{
    config::{Config, StoreKind},
    events::{Event, Scope},
    service::Hitl,
    store::{Recovered, Retention, Store, StoreError},
    task::{TaskId, TaskStatus},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Task, TestApp, WAIT, assert_error, json_body, test_config, within};

/// A running `hitl` on a data directory.
pub(crate) struct Server {
    child: Child,
    pub(crate) app: TestApp,
}

fn command(dir: &Path, delay_ms: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hitl"));
    command
        .args(["--addr", "127.0.0.1:0", "--process-delay-ms"])
        .arg(delay_ms.to_string())
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("HITL_STORE")
        // One test opens a thousand streams from this one address.
        .env("HITL_MAX_STREAMS_PER_CLIENT", "2000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl Server {
    pub(crate) async fn start(dir: &Path, delay_ms: u64) -> Self {
        let mut child = command(dir, delay_ms).spawn().expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within("the address line", lines.next_line())
            .await
            .unwrap()
            .expect("it prints its address");
        let base = line
            .strip_prefix("listening on ")
            .expect("the contract's line");
        Self {
            child,
            app: TestApp::at(base.to_owned()),
        }
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub(crate) async fn kill(mut self) {
        self.child.start_kill().unwrap();
        within("the killed process to go", self.child.wait())
            .await
            .unwrap();
    }

    fn pid(&self) -> String {
        self.child.id().unwrap().to_string()
    }
}

/// Starts the binary expecting it to refuse: its exit status and what it wrote on stderr.
async fn refused_start(dir: &Path) -> (std::process::ExitStatus, String) {
    let mut child = command(dir, 0).spawn().unwrap();
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    let status = within("the refused start to exit", child.wait())
        .await
        .unwrap();
    pipe.read_to_string(&mut stderr).await.unwrap();
    (status, stderr)
}

/// A task's JSON as it is, every field included.
pub(crate) async fn raw_task(app: &TestApp, id: &str) -> Value {
    json_body(app.get(&format!("/api/tasks/{id}")).await).await
}

fn assert_no_doubles(task: &Task) {
    let numbers: Vec<u32> = task.attempts.iter().map(|a| a.attempt).collect();
    let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
    assert_eq!(numbers, expected, "each attempt once, in order: {task:?}");
}

#[tokio::test]
async fn a_killed_server_comes_back_with_everything_accepted_and_nothing_doubled() {
    let dir = tempfile::tempdir().unwrap();

    // Life 1: a review left open, a finished task, and a request for changes answered just
    // before the kill.
    let server = Server::start(dir.path(), 0).await;
    let waiting = server.app.submit_for_review("Left waiting", 3).await;
    let done = server.app.submit_for_review("Finished", 3).await;
    server
        .app
        .decide(&done.id, json!({"decision": "approved", "attempt": 1}))
        .await;
    let done_before = raw_task(&server.app, &done.id).await;
    let revised = server.app.submit_for_review("Revised", 3).await;
    let answered = server
        .app
        .decide(
            &revised.id,
            json!({"decision": "rejected", "attempt": 1, "comment": "say more"}),
        )
        .await;
    assert_eq!(answered.attempt, 2);
    server.kill().await;

    // Life 2: slow processing, so a new task is killed while it is being processed.
    let server = Server::start(dir.path(), 60_000).await;
    let task = server.app.get_task(&waiting.id).await;
    assert_eq!(
        (task.status, task.attempt),
        (TaskStatus::WaitingForReview, 1)
    );
    assert_eq!(
        task.output, waiting.output,
        "the same draft is under review"
    );
    let task = server.app.get_task(&revised.id).await;
    assert_eq!(task.attempt, 2, "the answered decision was kept: {task:?}");
    assert_eq!(task.attempts.len(), 1);
    assert_eq!(task.attempts[0].comment.as_deref(), Some("say more"));
    let done_after = raw_task(&server.app, &done.id).await;
    assert_eq!(done_after, done_before, "a finished task is unchanged");
    let processing = server.app.submit("Killed mid-processing", 3).await;
    server
        .app
        .wait_for_status(&processing.id, TaskStatus::Running)
        .await;
    server.kill().await;

    // Life 3: every loop can be completed, and none has an attempt twice.
    let server = Server::start(dir.path(), 0).await;
    let app = &server.app;
    let task = app.wait_for_review(&processing.id, 1).await;
    assert!(
        task.attempts.is_empty(),
        "processed again as attempt 1: {task:?}"
    );
    let task = app.wait_for_review(&revised.id, 2).await;
    assert!(
        task.output.as_deref().unwrap().contains("say more"),
        "attempt 2 was given the comment: {task:?}"
    );
    app.decide(&waiting.id, json!({"decision": "approved", "attempt": 1}))
        .await;
    app.decide(&revised.id, json!({"decision": "approved", "attempt": 2}))
        .await;
    app.decide(
        &processing.id,
        json!({"decision": "rejected", "attempt": 1, "comment": "again"}),
    )
    .await;
    app.wait_for_review(&processing.id, 2).await;
    app.decide(
        &processing.id,
        json!({"decision": "approved", "attempt": 2}),
    )
    .await;
    for id in [&waiting.id, &revised.id, &processing.id, &done.id] {
        let task = app.get_task(id).await;
        assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
        assert_no_doubles(&task);
    }
    let listed = app.listed_ids("").await;
    assert_eq!(listed.len(), 4, "no task lost or duplicated: {listed:?}");
    server.kill().await;
}

#[tokio::test]
async fn a_client_resumes_from_its_last_event_id_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0).await;
    let mut events = server.app.events("", None).await;
    let first = server.app.submit_for_review("Before the crash", 3).await;
    let before = events
        .statuses_until(|e| e.task_id == first.id && e.status == TaskStatus::WaitingForReview)
        .await;
    let (seen, _) = before[0];
    server.kill().await;

    let server = Server::start(dir.path(), 0).await;
    let second = server.app.submit_for_review("After the crash", 3).await;
    let mut resumed = server.app.events("", Some(seen)).await;
    let replayed = resumed
        .statuses_until(|e| e.task_id == second.id && e.status == TaskStatus::WaitingForReview)
        .await;
    let ids: Vec<u64> = replayed.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u64> = (seen + 1..=ids[ids.len() - 1]).collect();
    assert_eq!(
        ids, expected,
        "every event after {seen} exactly once, in order"
    );
    assert_eq!(
        &replayed[..before.len() - 1],
        &before[1..],
        "the events from before the crash, as they were first sent"
    );
    // Then live events.
    server
        .app
        .decide(&second.id, json!({"decision": "approved", "attempt": 1}))
        .await;
    let (id, live) = resumed.next_status().await;
    assert_eq!(
        (id, live.status),
        (expected[expected.len() - 1] + 1, TaskStatus::Completed)
    );
    server.kill().await;
}

#[tokio::test]
async fn sigterm_with_a_thousand_streams_and_open_reviews_exits_promptly_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), 0).await;
    let inputs: Vec<String> = (0..20).map(|i| format!("task {i}")).collect();
    let tasks = join_all(
        inputs
            .iter()
            .map(|input| server.app.submit_for_review(input, 3)),
    )
    .await;
    let client = reqwest::Client::new();
    let opened = join_all((0..1000).map(|i| {
        let path = match i % 3 {
            0 => "/api/events".to_owned(),
            1 => "/stream".to_owned(),
            _ => format!("/stream?task={}", tasks[i % tasks.len()].id),
        };
        client.get(server.app.url(&path)).send()
    }))
    .await;
    let mut streams = Vec::new();
    for response in opened {
        let response = response.expect("a stream opens");
        assert_eq!(response.status(), 200);
        streams.push(response);
    }

    let sent = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("the binary exits within 5 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "a clean exit, got {exit:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));
    for response in streams {
        let ended = tokio::time::timeout(WAIT, response.bytes()).await;
        assert!(ended.is_ok(), "every open stream ended");
    }

    let server = Server::start(dir.path(), 0).await;
    for task in &tasks {
        let now = server.app.get_task(&task.id).await;
        assert_eq!((now.status, now.attempt), (TaskStatus::WaitingForReview, 1));
    }
    server.kill().await;
}

#[tokio::test]
async fn a_second_instance_on_the_same_data_dir_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), 0).await;
    let (status, stderr) = refused_start(dir.path()).await;
    assert!(!status.success());
    assert!(
        stderr.contains("already using the data directory")
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let health = first.app.get("/readyz").await;
    assert_eq!(health.status(), 200, "the first one carries on");
    first.kill().await;
}

#[tokio::test]
async fn an_unusable_data_dir_or_a_damaged_database_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let (status, unusable) = refused_start(&file.join("data")).await;
    assert!(!status.success());
    assert!(
        unusable.contains("cannot use the data directory"),
        "{unusable}"
    );

    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("hitl.sqlite3"), "x".repeat(8192)).unwrap();
    let (status, stderr) = refused_start(&damaged).await;
    assert!(!status.success());
    assert!(
        stderr.contains("hitl.sqlite3 is damaged: it does not start like an SQLite database"),
        "{stderr}"
    );
    for message in [&unusable, &stderr] {
        assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

/// Every file of a data directory, by name, with its bytes (the lock file aside).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name() != "hitl.lock")
        .map(|entry| {
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for (name, bytes) in snapshot(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

/// `hitl verify` on `dir`: its exit status and everything it wrote.
async fn verify(dir: &Path) -> (std::process::ExitStatus, String) {
    let output = within(
        "verify to finish",
        Command::new(env!("CARGO_BIN_EXE_hitl"))
            .arg("verify")
            .arg("--data-dir")
            .arg(dir)
            .output(),
    )
    .await
    .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

/// After a `kill -9` the acknowledged tasks can sit in the write-ahead log alone. SQLite would
/// read a log with a damaged header, or garbage, as empty, and a main file emptied as a new
/// database: hitl used to start on either as an empty store, migrate a schema into it and say
/// "every chain is intact". Now each is refused, naming the file and what was found, with
/// every file left exactly as it was; `hitl verify` reports the damage.
#[tokio::test]
async fn a_damaged_write_ahead_log_stops_the_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, 0).await;
    for n in 0..50 {
        server.app.submit(&format!("task {n}"), 3).await;
    }
    server.kill().await;
    let wal = std::fs::metadata(data.join("hitl.sqlite3-wal"))
        .unwrap()
        .len();
    let main = std::fs::metadata(data.join("hitl.sqlite3")).unwrap().len();
    assert!(
        wal > main,
        "the tasks are in the write-ahead log ({wal} bytes; the database {main})"
    );

    type Damage = fn(&Path);
    let damages: [(&str, Damage, &str, &str); 3] = [
        (
            "24 bytes of the log's header overwritten",
            |dir| {
                let path = dir.join("hitl.sqlite3-wal");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[..24].fill(0xA5);
                std::fs::write(&path, bytes).unwrap();
            },
            "hitl.sqlite3-wal is damaged",
            "does not start like an SQLite write-ahead log",
        ),
        (
            "the log's header checksum off by one bit",
            |dir| {
                let path = dir.join("hitl.sqlite3-wal");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[20] ^= 1;
                std::fs::write(&path, bytes).unwrap();
            },
            "hitl.sqlite3-wal is damaged",
            "checksum does not match",
        ),
        (
            "the log replaced with garbage",
            |dir| {
                let path = dir.join("hitl.sqlite3-wal");
                let len = std::fs::metadata(&path).unwrap().len() as usize;
                let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                std::fs::write(&path, garbage).unwrap();
            },
            "hitl.sqlite3-wal is damaged",
            "does not start like an SQLite write-ahead log",
        ),
    ];
    let emptied: (&str, Damage, &str, &str) = (
        "the main file emptied",
        |dir| std::fs::write(dir.join("hitl.sqlite3"), b"").unwrap(),
        "hitl.sqlite3 is damaged",
        "is empty (0 bytes) while its write-ahead log",
    );
    let deleted_log: (&str, Damage, &str, &str) = (
        "the log deleted and the main file emptied",
        |dir| {
            std::fs::remove_file(dir.join("hitl.sqlite3-wal")).unwrap();
            std::fs::write(dir.join("hitl.sqlite3"), b"").unwrap();
        },
        "hitl.sqlite3 is damaged",
        "says this directory held a hitl database",
    );
    for (n, (what, damage, file, found)) in damages
        .into_iter()
        .chain([emptied, deleted_log])
        .enumerate()
    {
        let copy = dir.path().join(format!("copy-{n}"));
        copy_dir(&data, &copy);
        damage(&copy);
        let before = snapshot(&copy);
        let (status, stderr) = refused_start(&copy).await;
        assert!(!status.success(), "{what}: refused");
        assert!(
            stderr.contains(file) && stderr.contains(found),
            "{what}: says which file and what was found: {stderr}"
        );
        assert!(
            stderr.contains("move the data directory aside (keep a copy"),
            "{what}: says what to do: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{what}: one line: {stderr}"
        );
        assert!(!stderr.contains("migrated"), "{what}: {stderr}");
        assert!(
            snapshot(&copy) == before,
            "{what}: every file is as it was (nothing migrated, nothing checkpointed)"
        );
        let (status, report) = verify(&copy).await;
        assert!(!status.success(), "{what}: verify fails: {report}");
        assert!(
            report.contains(found) && !report.contains("intact"),
            "{what}: verify reports the damage: {report}"
        );
        assert!(snapshot(&copy) == before, "{what}: verify changed nothing");
    }

    // The undamaged directory still has all fifty.
    let (status, report) = verify(&data).await;
    assert!(status.success(), "{report}");
    assert!(report.contains("50 task(s)"), "{report}");
    let server = Server::start(&data, 0).await;
    assert_eq!(server.app.listed_ids("").await.len(), 50);
    server.kill().await;
}

/// The `Idempotency-Key` exists for the answer that was lost, and a crash is when answers are
/// lost: the key is written with the task it made, so a retry after `kill -9` and a restart
/// gets that task (once kept only in memory, it made a second one). The form's key too.
#[tokio::test]
async fn a_keyed_retry_after_a_crash_gets_the_task_the_first_request_made() {
    let dir = tempfile::tempdir().unwrap();
    let body = json!({ "input": "Submitted just before the crash" });
    let server = Server::start(dir.path(), 0).await;
    let first = server.app.submit_keyed("crash-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Task = json_body(first).await;
    let form = [
        ("input", "A form posted before the crash"),
        ("submit_key", "form-1"),
    ];
    let posted = server.app.submit_form(&form, false).await;
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    let posted = crate::helpers::location(&posted);
    server.kill().await;

    let server = Server::start(dir.path(), 0).await;
    let retry = server.app.submit_keyed("crash-1", &body).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(
        retry.headers()["idempotent-replayed"],
        "true",
        "the retry is answered as a replay"
    );
    let retried: Task = json_body(retry).await;
    assert_eq!(retried.id, first.id, "the first task, not a second");
    let reused = server
        .app
        .submit_keyed("crash-1", &json!({ "input": "Something else" }))
        .await;
    assert_error(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    let again = server.app.submit_form(&form, false).await;
    assert_eq!(crate::helpers::location(&again), posted, "the form's task");
    assert_eq!(server.app.listed_ids("").await.len(), 2, "no second task");
    server.kill().await;

    // A key past its day that was not pruned yet is free: the submission under it makes a
    // task and binds the key to it, across the next crash too.
    let db = rusqlite::Connection::open(dir.path().join("hitl.sqlite3")).unwrap();
    db.execute(
        "INSERT INTO submit_keys VALUES ('anyone', 'yesterday', '', ?1, 'old', 0)",
        [&first.id],
    )
    .unwrap();
    drop(db);
    let server = Server::start(dir.path(), 0).await;
    let body = json!({ "input": "Under a key that expired" });
    let made = server.app.submit_keyed("yesterday", &body).await;
    assert_eq!(made.status(), StatusCode::CREATED);
    assert!(made.headers().get("idempotent-replayed").is_none());
    let made: Task = json_body(made).await;
    assert_ne!(made.id, first.id);
    server.kill().await;
    let server = Server::start(dir.path(), 0).await;
    let retry = server.app.submit_keyed("yesterday", &body).await;
    assert!(retry.headers().get("idempotent-replayed").is_some());
    assert_eq!(json_body::<Task>(retry).await.id, made.id);
    server.kill().await;
}

#[tokio::test]
async fn review_deadlines_survive_a_crash_and_apply_once_after_it() {
    // Arrange: two reviews with deadlines, open when the server is killed: one due in the
    // middle of the outage, one well after the restart
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0).await;
    let app = &server.app;
    let submit = |input: &'static str, secs: u64| async move {
        let response = app
            .submit_json(&json!({ "input": input, "review_timeout_secs": secs,
                                  "review_timeout_policy": "approve" }))
            .await;
        let task: Task = json_body(response).await;
        app.wait_for_review(&task.id, 1).await
    };
    let soon = submit("Due during the outage", 2).await;
    let later = submit("Due after the restart", 3600).await;
    let deadline_of = |task: Value| task["review_deadline"].as_str().map(str::to_owned);
    let later_deadline = deadline_of(raw_task(&server.app, &later.id).await);
    assert!(later_deadline.is_some());
    let soon_before = raw_task(&server.app, &soon.id).await;
    assert_eq!(
        soon_before["status"], "waiting_for_review",
        "killed before it was due"
    );
    server.kill().await;

    // Act: start again and watch
    let server = Server::start(dir.path(), 0).await;
    let mut events = server.app.events(&format!("?task={}", soon.id), None).await;
    events
        .statuses_until(|e| e.status == TaskStatus::Completed)
        .await;

    // Assert: the passed deadline applied once, by the deadline; the other is still armed
    let done = raw_task(&server.app, &soon.id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(done["attempts"][0]["timed_out"], true);
    let still = raw_task(&server.app, &later.id).await;
    assert_eq!(still["status"], "waiting_for_review");
    assert_eq!(
        deadline_of(still),
        later_deadline,
        "the deadline is the same one"
    );
    let history = server
        .app
        .get(&format!("/api/tasks/{}/history", soon.id))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        history.matches(r#""event":"decided""#).count(),
        1,
        "{history}"
    );
    server.kill().await;
}

/// The SQLite store, but its writes wait while `stalled` is set: a disk that stops answering.
struct Stalling {
    inner: hitl::store::sqlite::SqliteStore,
    stalled: Arc<AtomicBool>,
}

impl Store for Stalling {
    fn load(&self, recent: usize) -> Result<Recovered, StoreError> {
        self.inner.load(recent)
    }
    fn append(
        &self,
        events: &[Arc<Event>],
        deliveries: &[hitl::model::delivery::NewDelivery],
        writes: &[hitl::model::delivery::OutboxWrite],
    ) -> Result<(), StoreError> {
        while self.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5)); // the journal's own thread
        }
        self.inner.append(events, deliveries, writes)
    }
    fn read_events(
        &self,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> Result<Option<Vec<Arc<Event>>>, StoreError> {
        self.inner.read_events(after, upto, scope)
    }
    fn read_task(&self, id: TaskId) -> Result<Option<Arc<hitl::task::Task>>, StoreError> {
        self.inner.read_task(id)
    }
    fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        self.inner.prune(retention)
    }
    fn check(&self) -> Result<(), StoreError> {
        self.inner.check()
    }
    fn release(&self) {
        self.inner.release()
    }
}

#[tokio::test]
async fn a_keyed_retry_after_the_store_stalled_gets_the_task_that_was_made() {
    // Arrange: a service whose disk stops answering
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        store: StoreKind::Sqlite,
        data_dir: dir.path().to_owned(),
        ..test_config()
    };
    let stalled = Arc::new(AtomicBool::new(true));
    let store = Stalling {
        inner: hitl::store::sqlite::SqliteStore::open(dir.path()).unwrap(),
        stalled: stalled.clone(),
    };
    let processor = hitl::processors::build(&config).unwrap();
    let hitl = Hitl::with_store(
        &config,
        Arc::new(store),
        processor,
        CancellationToken::new(),
    )
    .unwrap();
    let app = TestApp::serve(hitl).await;
    let body = json!({ "input": "Made while the disk hung" });

    // Act: the submission is made but cannot be saved in time (10 s)
    let request = app.client.post(app.url("/api/tasks"));
    let request = request.header("Idempotency-Key", "stalled-1").json(&body);
    let first = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("an answer within the store's patience")
        .unwrap();
    assert_error(first, StatusCode::SERVICE_UNAVAILABLE, "store_unavailable").await;
    // The disk answers again; the client retries under the same key
    stalled.store(false, Ordering::SeqCst);
    let retry = app.submit_keyed("stalled-1", &body).await;

    // Assert: the retry gets the task the first request made, and there is only that one
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(retry.headers().get("idempotent-replayed").is_some());
    let task: Task = json_body(retry).await;
    assert_eq!(app.listed_ids("").await, vec![task.id]);
}
