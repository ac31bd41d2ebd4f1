//! The review flow driven through the registry, with scripted processors.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    engine::NodeError,
    events::EventLog,
    model::task::{Decision, Feedback, Task, TaskStatus, now},
    registry::Registry,
    review::processor::ProcessFuture,
};

/// Records every request; fails while `failures` is above zero; can hang forever.
#[derive(Default)]
struct Scripted {
    requests: Mutex<Vec<ProcessRequest>>,
    failures: Mutex<u32>,
    hang: bool,
}

impl Processor for Scripted {
    fn process<'a>(
        &'a self,
        request: &'a ProcessRequest,
        _progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move {
            self.requests.lock().unwrap().push(request.clone());
            if self.hang {
                std::future::pending::<()>().await;
            }
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(NodeError::new("the model is unreachable"));
            }
            Ok(format!("output {}", request.attempt))
        })
    }
}

struct Harness {
    registry: Registry,
    processor: Arc<Scripted>,
    flow: Arc<ReviewFlow>,
    shutdown: CancellationToken,
}

impl Harness {
    fn new(processor: Scripted) -> Self {
        let registry = Registry::new(EventLog::new(100));
        let processor = Arc::new(processor);
        let flow = Arc::new(ReviewFlow::new(
            registry.clone(),
            processor.clone(),
            ProcessOptions::default(),
        ));
        Self {
            registry,
            processor,
            flow,
            shutdown: CancellationToken::new(),
        }
    }

    fn submit(&self, max_attempts: u32) -> TaskId {
        let task = Task::new(TaskId::new(), "input".into(), max_attempts, now());
        let handle = self.registry.insert(task, &self.shutdown);
        let id = handle.task.id;
        self.flow.spawn(handle);
        id
    }

    /// Waits (on the task's change signal, never a sleep) until the task is in `status`.
    async fn until(&self, id: TaskId, status: TaskStatus, attempt: u32) -> Arc<Task> {
        let mut changes: watch::Receiver<u64> = self.registry.watch(id).unwrap();
        let wait = async {
            loop {
                let task = self.registry.get(id).unwrap();
                if task.status == status && task.attempt == attempt {
                    return task;
                }
                changes.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap_or_else(|_| panic!("task never reached {status:?} at attempt {attempt}"))
    }

    async fn decide(&self, id: TaskId, attempt: u32, decision: Decision, comment: Option<&str>) {
        let feedback = Feedback {
            attempt,
            decision,
            comment: comment.map(Into::into),
            output: None,
            at: now(),
            by: None,
            output_sha256: None,
            timed_out: false,
        };
        self.registry.decide(id, feedback).await.unwrap();
    }
}

#[tokio::test]
async fn each_rejection_sends_every_earlier_output_and_comment_to_the_next_attempt() {
    let h = Harness::new(Scripted::default());
    let id = h.submit(3);
    h.until(id, TaskStatus::WaitingForReview, 1).await;
    h.decide(id, 1, Decision::Rejected, Some("first note"))
        .await;
    h.until(id, TaskStatus::WaitingForReview, 2).await;
    h.decide(id, 2, Decision::Rejected, Some("second note"))
        .await;
    h.until(id, TaskStatus::WaitingForReview, 3).await;
    h.decide(id, 3, Decision::Approved, None).await;
    let task = h.until(id, TaskStatus::Completed, 3).await;

    assert_eq!(task.final_result.as_deref(), Some("output 3"));
    let requests = h.processor.requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    let last = &requests[2].history;
    assert_eq!(last.len(), 2);
    assert_eq!(
        (last[0].output.as_ref(), last[0].comment.as_deref()),
        ("output 1", Some("first note"))
    );
    assert_eq!(last[1].comment.as_deref(), Some("second note"));
    let decisions: Vec<_> = task.attempts.iter().map(|a| a.decision).collect();
    assert_eq!(
        decisions,
        [
            Some(Decision::Rejected),
            Some(Decision::Rejected),
            Some(Decision::Approved)
        ]
    );
}

#[tokio::test]
async fn a_rejection_at_the_attempt_limit_fails_the_task() {
    let h = Harness::new(Scripted::default());
    let id = h.submit(1);
    h.until(id, TaskStatus::WaitingForReview, 1).await;
    h.decide(id, 1, Decision::Rejected, Some("still wrong"))
        .await;
    let task = h.until(id, TaskStatus::Failed, 1).await;
    assert!(
        task.error
            .as_deref()
            .unwrap()
            .contains("last allowed attempt")
    );
    assert_eq!(
        h.processor.requests.lock().unwrap().len(),
        1,
        "no further attempt ran"
    );
}

#[tokio::test]
async fn a_final_rejection_fails_at_once_with_the_reason() {
    let h = Harness::new(Scripted::default());
    let id = h.submit(3);
    h.until(id, TaskStatus::WaitingForReview, 1).await;
    h.decide(id, 1, Decision::RejectedFinal, Some("off topic"))
        .await;
    let task = h.until(id, TaskStatus::Failed, 1).await;
    assert_eq!(
        task.error.as_deref(),
        Some("Rejected by the reviewer: off topic")
    );
}

#[tokio::test]
async fn a_processing_error_fails_the_task_with_its_message() {
    let h = Harness::new(Scripted {
        failures: Mutex::new(1),
        ..Scripted::default()
    });
    let id = h.submit(3);
    let task = h.until(id, TaskStatus::Failed, 1).await;
    assert_eq!(
        task.error.as_deref(),
        Some("Process failed: the model is unreachable")
    );
}

#[tokio::test]
async fn cancelling_stops_a_running_attempt_and_nothing_is_written_after() {
    let h = Harness::new(Scripted {
        hang: true,
        ..Scripted::default()
    });
    let id = h.submit(3);
    h.until(id, TaskStatus::Running, 1).await;
    let cancelled = h.registry.cancel(id, None).await.unwrap();
    let head = h.registry.events.head();
    tokio::task::yield_now().await;
    let task = h.registry.get(id).unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task, cancelled);
    assert_eq!(h.registry.events.head(), head, "no event after the cancel");
    assert!(
        h.registry.cancel(id, None).await.is_err(),
        "a finished task cannot be cancelled again"
    );
}

#[tokio::test]
async fn the_flow_describes_itself() {
    let h = Harness::new(Scripted::default());
    let mermaid = h.flow.to_mermaid();
    assert!(mermaid.contains("Process -->|processed| Review"));
    assert!(mermaid.contains("Review -->|approved| Result"));
    assert!(mermaid.contains("Review -->|rejected| Process"));
}

/// A decision is one guarded change of the task, so one that arrives as the server stops is
/// applied like any other (it once waited for a workflow that had stopped, and was refused).
#[tokio::test]
async fn a_decision_during_shutdown_is_applied_not_lost() {
    let h = Harness::new(Scripted::default());
    let id = h.submit(3);
    h.until(id, TaskStatus::WaitingForReview, 1).await;
    h.shutdown.cancel();

    let feedback = Feedback {
        attempt: 1,
        decision: Decision::Approved,
        comment: None,
        output: None,
        at: now(),
        by: None,
        output_sha256: None,
        timed_out: false,
    };
    let task = tokio::time::timeout(Duration::from_secs(5), h.registry.decide(id, feedback))
        .await
        .expect("answered at once: nothing waits for the stopped workflow")
        .expect("the decision is applied");
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(h.registry.get(id).unwrap().status, TaskStatus::Completed);
}

struct Panicking;

impl Processor for Panicking {
    fn process<'a>(
        &'a self,
        _request: &'a ProcessRequest,
        _progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move { panic!("a bug in the processor") })
    }
}

#[tokio::test]
async fn a_processor_that_panics_fails_its_task_and_nothing_else() {
    let registry = Registry::new(EventLog::new(100));
    let flow = Arc::new(ReviewFlow::new(
        registry.clone(),
        Arc::new(Panicking),
        ProcessOptions::default(),
    ));
    let shutdown = CancellationToken::new();
    let handle = registry.insert(
        Task::new(TaskId::new(), "input".into(), 3, now()),
        &shutdown,
    );
    let id = handle.task.id;
    let mut changes = registry.watch(id).unwrap();
    flow.spawn(handle);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !registry.get(id).unwrap().status.is_terminal() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the task ends");
    let task = registry.get(id).unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert!(task.error.as_deref().unwrap().contains("panicked"));
}
