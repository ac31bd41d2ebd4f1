//! `--processor command` with small scripts, and what every processor gets from the service:
//! progress events in order, a timeout that kills the whole process group, retries, cancels that
//! stop the work at once, and a limit on how many attempts run at once.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hitl::{
    Hitl,
    config::{Config, ProcessorConfig, ProcessorKind},
    engine::NodeError,
    review::{ProcessRequest, Processor, processor::ProcessFuture},
    task::TaskStatus,
};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, spawn_app_with, test_config, within};

/// A Python script in `dir`, and the config that runs it for every attempt.
fn script(dir: &Path, body: &str, tune: impl FnOnce(&mut ProcessorConfig)) -> Config {
    let path = dir.join("step.py");
    std::fs::write(&path, format!("import json, os, sys, time\n{body}")).unwrap();
    let mut processing = ProcessorConfig {
        processor: ProcessorKind::Command,
        command: Some(format!("python3 -u {}", path.display())),
        max_retries: 0,
        retry_wait_ms: 10,
        ..ProcessorConfig::default()
    };
    tune(&mut processing);
    Config {
        processing,
        ..test_config()
    }
}

/// Is the process `pid` gone (or a zombie nobody will run again)?
fn gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
}

/// Waits for a process to go: there is no signal to wait on for another process's end, so this
/// looks every 20 ms, for at most the usual test patience.
async fn until_gone(pid: i32) {
    within("the process to be killed", async {
        while !gone(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn pid_in(path: &PathBuf) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_command_gets_the_attempt_as_json_and_its_output_is_the_draft() {
    // Arrange: a step that echoes what it was given
    let dir = tempfile::tempdir().unwrap();
    let config = script(
        dir.path(),
        r#"
req = json.load(sys.stdin)
print(f"Draft {req['attempt']} of {req['max_attempts']}: {req['input'].upper()}")
for h in req["history"]:
    print(f"- rejected draft {h['attempt']} ({h['output'].split(':')[0]}): {h['comment']}")
"#,
        |_| {},
    );
    let app = spawn_app_with(config).await;

    // Act: one draft, changes requested, a second draft
    let task = app.submit_for_review("make it loud", 3).await;
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "shorter" }),
    )
    .await;
    let second = app.wait_for_review(&task.id, 2).await;

    // Assert
    assert_eq!(task.output.as_deref(), Some("Draft 1 of 3: MAKE IT LOUD"));
    assert_eq!(
        second.output.as_deref(),
        Some("Draft 2 of 3: MAKE IT LOUD\n- rejected draft 1 (Draft 1 of 3): shorter")
    );
}

#[tokio::test]
async fn each_line_is_progress_on_the_stream_in_order_before_the_output() {
    // Arrange: a step that prints a line, then waits for the test to let it go on
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let config = script(
        dir.path(),
        &format!(
            r#"
json.load(sys.stdin)
print("first line")
while not os.path.exists({gate:?}):
    time.sleep(0.01)
print("second line")
"#
        ),
        |_| {},
    );
    let app = spawn_app_with(config).await;
    let mut events = app.events("", None).await;

    // Act
    let task = app.submit("stream it", 3).await;
    let first = loop {
        let event = events.next().await;
        if event.name == "progress" {
            break event.data();
        }
    };
    std::fs::write(&gate, "go").unwrap();
    let mut later = Vec::new();
    let last = loop {
        let event = events.next().await;
        let data = event.data();
        if event.name == "status" && data.status == TaskStatus::WaitingForReview {
            break (event.id, data);
        }
        later.push((event.id, event.name, data));
    };
    let done = app.wait_for_review(&task.id, 1).await;

    // Assert: the progress came first, holding the first line, and the output has both
    assert_eq!(first.task_id, task.id);
    assert_eq!(first.status, TaskStatus::Running);
    assert_eq!(first.output.as_deref(), Some("first line"));
    assert_eq!(done.output.as_deref(), Some("first line\nsecond line"));
    // Every later progress event came in order, each text growing from the one before, and
    // all before the status that ends the attempt.
    let mut text = "first line".to_owned();
    let mut seq = 0;
    for (id, name, data) in later.iter().filter(|(_, name, _)| name == "progress") {
        let next = data.output.clone().unwrap_or_default();
        assert!(next.starts_with(&text), "{name} {next:?} after {text:?}");
        assert!(*id > seq && *id < last.0);
        (text, seq) = (next, *id);
    }
}

#[tokio::test]
async fn a_failing_command_fails_the_task_with_the_end_of_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let config = script(
        dir.path(),
        r#"
sys.stderr.write("loading model\n" + "x" * 5000 + "\nout of memory: try a smaller input\n")
sys.exit(3)
"#,
        |_| {},
    );
    let app = spawn_app_with(config).await;
    let task = app.submit("too big", 3).await;

    let failed = app.wait_for_status(&task.id, TaskStatus::Failed).await;

    let error = failed.error.unwrap();
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(
        error.ends_with("out of memory: try a smaller input"),
        "{error}"
    );
    assert!(error.len() < 2200, "only the tail: {} bytes", error.len());
}

#[tokio::test]
async fn a_command_that_fails_once_is_retried_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("tries");
    let config = script(
        dir.path(),
        &format!(
            r#"
json.load(sys.stdin)
tries = int(open({counter:?}).read()) + 1 if os.path.exists({counter:?}) else 1
open({counter:?}, "w").write(str(tries))
if tries == 1:
    sys.exit("the model server is warming up")
print(f"done on try {{tries}}")
"#
        ),
        |p| p.max_retries = 2,
    );
    let app = spawn_app_with(config).await;

    let task = app.submit_for_review("flaky", 3).await;

    assert_eq!(task.output.as_deref(), Some("done on try 2"));
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "2");
}

#[tokio::test]
async fn a_hanging_command_is_killed_with_its_children_when_the_timeout_passes() {
    // Arrange: a step that starts a child, writes both pids and hangs
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let config = script(
        dir.path(),
        &format!(
            r#"
import subprocess
child = subprocess.Popen(["sleep", "600"])
open({pids:?}, "w").write(f"{{os.getpid()}} {{child.pid}}")
time.sleep(600)
"#
        ),
        |p| p.process_timeout_secs = 1,
    );
    let app = spawn_app_with(config).await;

    // Act
    let task = app.submit("hang", 3).await;
    let failed = app.wait_for_status(&task.id, TaskStatus::Failed).await;

    // Assert: the task says why, and neither the step nor its child is left
    assert!(
        failed.error.as_deref().unwrap().contains("longer than 1 s"),
        "{:?}",
        failed.error
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.split_whitespace() {
        until_gone(pid.parse().unwrap()).await;
    }
}

#[tokio::test]
async fn cancelling_a_task_stops_its_running_command_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let config = script(
        dir.path(),
        &format!(
            r#"
open({pid_file:?} + ".tmp", "w").write(str(os.getpid()))
os.rename({pid_file:?} + ".tmp", {pid_file:?})
print("started")
time.sleep(600)
"#
        ),
        |_| {},
    );
    let app = spawn_app_with(config).await;
    let mut events = app.events("", None).await;
    let task = app.submit("cancel me", 3).await;
    // The step has written its pid before its first line, which arrives as progress.
    loop {
        if events.next().await.name == "progress" {
            break;
        }
    }

    let response = app.cancel_json(&task.id).await;

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    until_gone(pid_in(&pid_file)).await;
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_the_task_saying_so() {
    let config = Config {
        processing: ProcessorConfig {
            processor: ProcessorKind::Command,
            command: Some("/nonexistent/step --fast".into()),
            max_retries: 3,
            ..ProcessorConfig::default()
        },
        ..test_config()
    };
    let app = spawn_app_with(config).await;
    let task = app.submit("x", 3).await;
    let failed = app.wait_for_status(&task.id, TaskStatus::Failed).await;
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("Cannot start `/nonexistent/step`: No such file"),
        "{:?}",
        failed.error
    );
}

/// Counts how many attempts run at once, each held until the test lets them all go.
struct Gate {
    running: AtomicUsize,
    most: AtomicUsize,
    started: Mutex<Vec<String>>,
    open: Notify,
    opened: std::sync::atomic::AtomicBool,
}

impl Processor for Gate {
    fn process<'a>(
        &'a self,
        request: &'a ProcessRequest,
        _progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.started.lock().unwrap().push(request.input.to_string());
            while !self.opened.load(Ordering::SeqCst) {
                let opened = self.open.notified();
                if self.opened.load(Ordering::SeqCst) {
                    break;
                }
                opened.await;
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, NodeError>(format!("done: {}", request.input))
        })
    }
}

#[tokio::test]
async fn at_most_the_limit_is_processed_at_once_and_the_rest_wait_pending_in_order() {
    // Arrange: a limit of 4, and 100 tasks whose processing waits for the test
    let gate = Arc::new(Gate {
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        started: Mutex::new(Vec::new()),
        open: Notify::new(),
        opened: false.into(),
    });
    let config = Config {
        processing: ProcessorConfig {
            max_concurrent_processing: 4,
            ..ProcessorConfig::default()
        },
        ..test_config()
    };
    let hitl = Hitl::with_processor(&config, gate.clone(), CancellationToken::new()).unwrap();
    let app = TestApp::serve(hitl.clone()).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(app.submit(&format!("task {i:03}"), 3).await.id);
    }
    within("four to start", async {
        while gate.started.lock().unwrap().len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    // Assert: four running, the rest pending; the service answers meanwhile
    let counts = hitl.registry.count_by_status();
    assert_eq!(counts[1], 4, "running: {counts:?}");
    assert_eq!(counts[0], 96, "pending: {counts:?}");
    assert_eq!(app.get("/healthz").await.status(), reqwest::StatusCode::OK);

    // Act: let every attempt finish
    gate.opened.store(true, Ordering::SeqCst);
    gate.open.notify_waiters();
    for id in &ids {
        app.wait_for_review(id, 1).await;
    }

    // Assert: never more than four at once, and they started in the order they came
    assert!(gate.most.load(Ordering::SeqCst) <= 4);
    let started = gate.started.lock().unwrap().clone();
    let expected: Vec<String> = (0..100).map(|i| format!("task {i:03}")).collect();
    assert_eq!(started, expected);
}
