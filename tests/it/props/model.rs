//! The model: what the test knows of each task it created and must find in the service, the
//! service under test with it, and how an accepted or a refused call moves (or must not move) it.

use std::sync::Arc;

use hitl::{
    Hitl,
    config::{Config, StoreKind},
    events::Event,
    registry::TransitionError,
    task::{Decision, Task, TaskId, TaskStatus},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::{DEFAULT_MAX_ATTEMPTS, Stats, WAIT, bounded, fail};

/// What the test knows of one task it created.
pub(super) struct Tracked {
    pub(super) id: TaskId,
    pub(super) max_attempts: u32,
    /// The status and attempt the task must have now, from the operations applied to it.
    pub(super) expected: (TaskStatus, u32),
    /// Every decision the service accepted for it, in order, with its comment.
    pub(super) decisions: Vec<(Decision, Option<String>)>,
    /// The task as the last check saw it.
    pub(super) seen: Arc<Task>,
    /// Its latest status event in the journal as of the last check: status, attempt, seq.
    pub(super) last_event: Option<(TaskStatus, u32, u64)>,
}

/// The service under test, its directory, and the model of what it should hold.
pub(super) struct World {
    pub(super) config: Config,
    pub(super) shutdown: CancellationToken,
    pub(super) hitl: Hitl,
    pub(super) tasks: Vec<Tracked>,
    /// The whole journal as the last check read it.
    pub(super) journal: Vec<Arc<Event>>,
    /// What each step did, for the failure message.
    pub(super) trace: Vec<String>,
    pub(super) stats: Arc<Stats>,
}

impl World {
    pub(super) fn open(dir: &TempDir, stats: Arc<Stats>) -> Result<Self, TestCaseError> {
        let config = Config {
            process_delay_ms: 0,
            store: StoreKind::Sqlite,
            data_dir: dir.path().to_owned(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let hitl = Hitl::open(&config, shutdown.clone())
            .map_err(|e| fail(format!("the service does not open: {e}")))?;
        Ok(Self {
            config,
            shutdown,
            hitl,
            tasks: Vec::new(),
            journal: Vec::new(),
            trace: Vec::new(),
            stats,
        })
    }

    pub(super) async fn close(&self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(WAIT, self.hitl.close()).await;
    }

    /// The task a step targets: its index among the tracked tasks, if there are any.
    pub(super) fn target(&self, pick: usize) -> Option<usize> {
        (!self.tasks.is_empty()).then(|| pick % self.tasks.len())
    }

    pub(super) fn current(&self, id: TaskId) -> Result<Arc<Task>, TestCaseError> {
        self.hitl
            .registry
            .get(id)
            .ok_or_else(|| fail(format!("task {id} is gone from the registry")))
    }

    /// Every tracked task as the registry has it now, and the journal's head.
    pub(super) fn state(&self) -> Result<(Vec<Arc<Task>>, u64), TestCaseError> {
        let tasks = self
            .tasks
            .iter()
            .map(|t| self.current(t.id))
            .collect::<Result<_, _>>()?;
        Ok((tasks, self.hitl.registry.events.head()))
    }

    /// Waits, following the task's watch, until it is neither `pending` nor `running`.
    pub(super) async fn settle(&self, id: TaskId) -> Result<Arc<Task>, TestCaseError> {
        let mut changes = self
            .hitl
            .registry
            .watch(id)
            .ok_or_else(|| fail(format!("no watch for task {id}")))?;
        let wait = async {
            loop {
                let task = self.current(id)?;
                if !matches!(task.status, TaskStatus::Pending | TaskStatus::Running) {
                    return Ok(task);
                }
                if changes.changed().await.is_err() {
                    return Err(fail(format!("task {id}'s watch closed while it was live")));
                }
            }
        };
        bounded(&format!("task {id} to settle"), wait).await?
    }

    /// A decision was accepted: checks the answer and the settled task, and updates the model.
    pub(super) async fn accepted(
        &mut self,
        index: usize,
        before: &Task,
        answer: &Task,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<(), TestCaseError> {
        let (id, attempt, max) = (before.id, before.attempt, self.tasks[index].max_attempts);
        // The answer already carries the decision, on the attempt that was under review.
        let record = answer
            .attempts
            .iter()
            .find(|a| a.attempt == attempt)
            .ok_or_else(|| fail(format!("the answer has no record of attempt {attempt}")))?;
        prop_assert_eq!(record.decision, Some(decision));
        prop_assert_eq!(record.comment.as_deref(), comment.as_deref());
        prop_assert_eq!(Some(&record.output), before.output.as_ref());
        Stats::bump(&self.stats.decided);

        let tracked = &mut self.tasks[index];
        tracked.decisions.push((decision, comment.clone()));
        tracked.expected = match decision {
            Decision::Approved => (TaskStatus::Completed, attempt),
            Decision::Rejected if attempt < max => (TaskStatus::WaitingForReview, attempt + 1),
            Decision::Rejected | Decision::RejectedFinal => (TaskStatus::Failed, attempt),
        };
        let task = self.settle(id).await?;
        let context = format!("{decision:?} on attempt {attempt} of {max}: {task:?}");
        match decision {
            Decision::Approved => {
                prop_assert_eq!(task.status, TaskStatus::Completed, "{}", context);
                prop_assert_eq!(task.attempt, attempt, "{}", context);
                prop_assert!(task.final_result.is_some(), "{}", context);
                prop_assert_eq!(&task.final_result, &before.output, "{}", context);
                Stats::bump(&self.stats.completed);
            }
            Decision::Rejected if attempt < max => {
                prop_assert_eq!(task.status, TaskStatus::WaitingForReview, "{}", context);
                prop_assert_eq!(task.attempt, attempt + 1, "{}", context);
                prop_assert!(
                    task.final_result.is_none() && task.error.is_none(),
                    "{}",
                    context
                );
                // The next attempt was given every earlier request for changes, also across
                // restarts.
                let output = task
                    .output
                    .as_deref()
                    .ok_or_else(|| fail(format!("no output under review: {context}")))?;
                let draft = format!("Draft {} of {max}", attempt + 1);
                prop_assert!(output.starts_with(&draft), "{}", context);
                for prior in task
                    .attempts
                    .iter()
                    .filter(|a| a.decision == Some(Decision::Rejected))
                {
                    let comment = prior
                        .comment
                        .as_deref()
                        .unwrap_or("(changes requested, no comment)");
                    let line = format!("- on draft {}: {comment}", prior.attempt);
                    prop_assert!(output.contains(&line), "missing {:?}: {}", line, context);
                }
                Stats::bump(&self.stats.next_attempt);
            }
            Decision::Rejected | Decision::RejectedFinal => {
                prop_assert_eq!(task.status, TaskStatus::Failed, "{}", context);
                prop_assert_eq!(task.attempt, attempt, "{}", context);
                let error = task
                    .error
                    .as_deref()
                    .ok_or_else(|| fail(format!("failed without an error: {context}")))?;
                if let (Decision::RejectedFinal, Some(comment)) = (decision, &comment) {
                    prop_assert!(error.contains(comment.as_str()), "{}", context);
                }
                if decision == Decision::Rejected {
                    Stats::bump(&self.stats.failed_at_limit);
                } else {
                    Stats::bump(&self.stats.failed_final);
                }
            }
        }
        Ok(())
    }

    /// A call was refused: with the error it should be refused with, and nothing changed.
    pub(super) fn refused(
        &self,
        what: &str,
        before: Option<&Arc<Task>>,
        error: &TransitionError,
        state_before: &(Vec<Arc<Task>>, u64),
    ) -> Result<(), TestCaseError> {
        match (before, error) {
            (None, TransitionError::NotFound(_)) => {}
            (Some(before), TransitionError::Conflict { task, .. }) => {
                prop_assert_eq!(
                    task,
                    before,
                    "{}: the conflict shows the task as it is",
                    what
                );
            }
            _ => {
                return Err(fail(format!(
                    "{what}: refused with an unexpected error: {error:?}"
                )));
            }
        }
        let state_after = self.state()?;
        prop_assert!(
            state_after == *state_before,
            "{}: a refused call changed something: before {:?}, after {:?}",
            what,
            state_before,
            state_after
        );
        Ok(())
    }
}
