//! The review flow: `Process -> Review -> approved: Result, rejected: Process`.
//!
//! One [`ReviewFlow`] is built at start-up and runs every task, each over its own
//! [`ReviewStore`]. The nodes change the task only through the registry's guarded transitions,
//! so a cancel or a shutdown that wins a race simply makes the next transition fail and the flow
//! stop.

mod nodes;
mod outside;
pub mod processor;
#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::{
    config::ProcessorConfig,
    engine::{Action, Flow, FlowError},
    model::task::{Decision, Task, TaskId, TaskStatus},
    registry::{Registry, TaskHandle, TransitionError, changes},
};
pub use nodes::{ProcessNode, ResultNode, ReviewNode};
pub use processor::{PriorAttempt, ProcessRequest, Processor, SimulatedProcessor};

/// The actions on the review flow's edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// An output is ready for review.
    Processed,
    Approved,
    /// Changes requested: process again.
    Rejected,
    /// Rejected for good, or at the attempt limit.
    Failed,
    /// The result is recorded.
    Done,
}

impl Action for Step {
    fn label(&self) -> &'static str {
        match self {
            Step::Processed => "processed",
            Step::Approved => "approved",
            Step::Rejected => "rejected",
            Step::Failed => "failed",
            Step::Done => "done",
        }
    }
}

/// The shared store of one task's run.
pub struct ReviewStore {
    pub task_id: TaskId,
    pub input: Arc<str>,
    pub attempt: u32,
    pub max_attempts: u32,
    /// The latest processed output.
    pub output: Option<Arc<str>>,
    /// Every earlier attempt's output and the reviewer's comment on it.
    pub history: Vec<PriorAttempt>,
    /// The approved result, once the review is decided so.
    pub final_result: Option<Arc<str>>,
    /// Its attempts are made outside hitl: the process step waits for them.
    pub outside: bool,
}

/// Every earlier attempt of `task` that changes were requested on, with the comment: what
/// the next attempt (hitl's processor's, or a worker's) must address.
pub fn prior_attempts(task: &Task) -> Vec<PriorAttempt> {
    task.attempts
        .iter()
        .filter(|a| a.decision == Some(Decision::Rejected))
        .map(|a| PriorAttempt {
            attempt: a.attempt,
            output: a.output.clone(),
            comment: a.comment.clone(),
        })
        .collect()
}

impl ReviewStore {
    /// Catches up with `task`, now at a later attempt: its history and that attempt.
    pub fn follow(&mut self, task: &Task) {
        self.history = prior_attempts(task);
        self.attempt = task.attempt;
        self.output = None;
    }

    /// The store for a task as it stands: new, or recovered part-way through its attempts.
    pub fn new(handle: &TaskHandle) -> Self {
        let task = &handle.task;
        let history = prior_attempts(task);
        Self {
            task_id: task.id,
            input: task.input.clone(),
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            output: task.output.clone(),
            history,
            final_result: None,
            outside: task.processor.is_outside(),
        }
    }
}

/// The review flow, built once and shared by every task.
pub struct ReviewFlow {
    flow: Flow<ReviewStore, Step>,
    registry: Registry,
    /// The tasks a workflow follows now (in one process; with a shared database the claims
    /// say so): a task started again (a retry) while its old workflow was still ending gets
    /// one workflow, not two.
    running: dashmap::DashSet<TaskId>,
}

/// How attempts are processed: time allowed per try, retries, and how many at once.
#[derive(Clone, Copy, Debug)]
pub struct ProcessOptions {
    /// Longest one try may take; it is stopped (and may be retried) after it.
    pub timeout: Duration,
    /// Tries after the first, for failures another try may get past.
    pub max_retries: u32,
    /// Wait before the first retry; it doubles with each one, up to 30 s.
    pub retry_wait: Duration,
    /// Attempts processed at once.
    pub max_concurrent: usize,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            max_retries: 0,
            retry_wait: Duration::from_secs(1),
            max_concurrent: 10_000,
        }
    }
}

impl From<&ProcessorConfig> for ProcessOptions {
    fn from(config: &ProcessorConfig) -> Self {
        Self {
            timeout: Duration::from_secs(config.process_timeout_secs),
            max_retries: config.max_retries,
            retry_wait: Duration::from_millis(config.retry_wait_ms),
            max_concurrent: config.max_concurrent_processing as usize,
        }
    }
}

impl ReviewFlow {
    pub fn new(registry: Registry, processor: Arc<dyn Processor>, options: ProcessOptions) -> Self {
        let flow = Flow::builder()
            .node(
                "Process",
                ProcessNode {
                    registry: registry.clone(),
                    processor,
                    options,
                    permits: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
                },
            )
            .node(
                "Review",
                ReviewNode {
                    registry: registry.clone(),
                },
            )
            .node("Result", ResultNode)
            .edge("Process", Step::Processed, "Review")
            .edge("Review", Step::Approved, "Result")
            .edge("Review", Step::Rejected, "Process")
            .build()
            .expect("the review flow's links are fixed and valid");
        Self {
            flow,
            registry,
            running: dashmap::DashSet::new(),
        }
    }

    pub fn to_mermaid(&self) -> String {
        self.flow.to_mermaid()
    }

    /// Runs a new task's flow in the background until it ends, is cancelled, or the server
    /// stops.
    pub fn spawn(self: &Arc<Self>, handle: TaskHandle) {
        self.run_from(self.flow.start(), handle);
    }

    /// Carries on with a task recovered after a restart: a review still open waits for its
    /// decision; otherwise the current attempt is processed (again, under the same number).
    pub fn resume(self: &Arc<Self>, handle: TaskHandle) {
        let node = match handle.task.status {
            TaskStatus::WaitingForReview => "Review",
            _ => "Process",
        };
        let node = self
            .flow
            .node_index(node)
            .expect("the review flow has both nodes");
        self.run_from(node, handle);
    }

    fn run_from(self: &Arc<Self>, node: usize, handle: TaskHandle) {
        let this = self.clone();
        let id = handle.task.id;
        let guarded = !self.registry.suspends_work();
        if guarded && !self.running.insert(id) {
            // One already follows the task; ending, it starts again if it must (below).
            return;
        }
        let span = tracing::info_span!("task", task_id = %id);
        tokio::spawn(
            async move {
                let mut store = ReviewStore::new(&handle);
                // Cancel first: a decision that arrives as the server stops is answered "not
                // applied", so the flow must not go on to apply it.
                let token = handle.cancel.clone();
                let stopped = token.clone();
                let suspended = tokio::select! {
                    biased;
                    () = token.cancelled() => {
                        tracing::debug!("flow stopped");
                        false
                    }
                    result = this.flow.run_from(node, &mut store) => this.finish(id, result).await,
                };
                this.registry.workflow_ended(id, token, suspended).await;
                if guarded {
                    this.running.remove(&id);
                    this.again(id, &stopped);
                }
            }
            .instrument(span),
        );
    }

    /// A task retried while its workflow was ending was not started then (that one still ran):
    /// it starts now. Only a task whose latest change is that retry: nothing else can make an
    /// ended workflow's task live again, so this never starts a workflow over and over.
    fn again(self: &Arc<Self>, id: TaskId, stopped: &tokio_util::sync::CancellationToken) {
        if stopped.is_cancelled() {
            return;
        }
        let Some(handle) = self.registry.handle(id) else {
            return;
        };
        let retried = matches!(
            handle.task.history.last().map(|entry| &entry.event),
            Some(crate::model::audit::AuditEvent::Retried { .. })
        );
        if retried && !handle.task.status.is_terminal() {
            self.resume(handle);
        }
    }

    /// Fails the task if its flow failed; true if the flow was suspended instead (see
    /// [`crate::engine::NodeError::suspend`]).
    async fn finish(&self, id: TaskId, result: Result<Step, FlowError>) -> bool {
        let Err(error) = result else { return false };
        if self.registry.get(id).is_none_or(|t| t.status.is_terminal()) {
            // The task ended (a decision or a cancel won the race with this step; a finished
            // task may even have left memory already, `--keep-finished`): nothing went wrong.
            tracing::debug!(%error, "flow stopped after the task ended");
            return false;
        }
        if error.source.suspend && self.registry.suspends_work() {
            // The database did not answer, or the claim is no longer this instance's: the task
            // is not at fault. The workflow stops and its claim runs out; whoever claims it
            // next (maybe this instance) resumes the work from what the database holds.
            tracing::warn!(%error, "workflow stopped; the task's work is resumed under a new claim");
            return true;
        }
        tracing::warn!(%error, "task failed");
        let message = error.to_string();
        let failed = self
            .registry
            .apply(id, None, true, move |task| changes::fail(task, message))
            .await;
        match failed {
            // A cancel came first, or (shared) another instance has taken the work over.
            Ok(_) | Err(TransitionError::Conflict { .. } | TransitionError::NotClaimed) => {}
            Err(e) => tracing::error!(%e, "could not mark the task failed"),
        }
        false
    }
}
