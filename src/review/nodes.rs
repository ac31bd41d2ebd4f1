//! The three nodes of the review flow.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;

use time::OffsetDateTime;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::{
    engine::{Node, NodeError},
    model::audit::AuditEvent,
    model::task::{Task, TaskId, TaskStatus, now},
    registry::{Registry, TransitionError, changes},
};

use super::{ProcessOptions, ProcessRequest, Processor, ReviewStore, Step};

impl From<TransitionError> for NodeError {
    /// A workflow's own change refused because the database did not answer, because the claim
    /// is lost, or for a state this instance had not seen yet (another took the work over in
    /// between) suspends the workflow: with a shared database it stops and lets the claim run
    /// out rather than failing the task (see [`super::ReviewFlow`]).
    fn from(error: TransitionError) -> Self {
        match error {
            TransitionError::Unavailable
            | TransitionError::NotClaimed
            | TransitionError::Conflict { .. } => NodeError {
                suspend: true,
                ..NodeError::new(error.to_string())
            },
            error => NodeError::new(error.to_string()),
        }
    }
}

/// Produces an attempt's output with the processor: at most `options.max_concurrent` at once
/// (the others stay `pending`, in the order they came), each try stopped after
/// `options.timeout`, failures another try may get past retried with a growing wait.
pub struct ProcessNode {
    pub registry: Registry,
    pub processor: Arc<dyn Processor>,
    pub options: ProcessOptions,
    /// One permit per attempt being processed; the semaphore is fair, so waiters go in order.
    pub permits: Arc<Semaphore>,
}

/// What processing one attempt holds: the request, and its place among those processed at once.
pub struct Processing {
    request: ProcessRequest,
    /// Made outside hitl: nothing is processed here.
    outside: bool,
    /// `None` for an outside task.
    _permit: Option<OwnedSemaphorePermit>,
}

/// The least time between two progress events of one attempt: a model streams tokens far
/// faster than anyone reads, and every event is written to the journal.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

impl Node<ReviewStore> for ProcessNode {
    type Prep = Processing;
    /// The attempt made (an outside task may be ahead of its workflow) and its output.
    type Output = (u32, String);
    type Action = Step;

    fn max_retries(&self) -> u32 {
        self.options.max_retries.saturating_add(1)
    }

    fn retry_wait(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(16);
        (self.options.retry_wait * 2u32.pow(doublings)).min(Duration::from_secs(30))
    }

    #[tracing::instrument(level = "debug", name = "process.prep", skip_all, fields(task_id = %store.task_id, attempt = store.attempt))]
    async fn prep(&self, store: &ReviewStore) -> Result<Processing, NodeError> {
        let request = ProcessRequest {
            task_id: store.task_id,
            input: store.input.clone(),
            attempt: store.attempt,
            max_attempts: store.max_attempts,
            history: store.history.clone(),
        };
        if store.outside {
            // Made outside: the task stays pending until a worker claims it or the agent
            // hands the attempt in.
            return Ok(Processing {
                request,
                outside: true,
                _permit: None,
            });
        }
        // Waits for a place while the task stays pending.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NodeError::fatal("processing has stopped"))?;
        let attempt = store.attempt;
        self.registry.start_attempt(store.task_id, attempt).await?;
        Ok(Processing {
            request,
            outside: false,
            _permit: Some(permit),
        })
    }

    #[tracing::instrument(level = "debug", name = "process.exec", skip_all, fields(task_id = %processing.request.task_id, attempt = processing.request.attempt))]
    async fn exec(&self, processing: &Processing) -> Result<(u32, String), NodeError> {
        let request = &processing.request;
        let (registry, id, attempt) = (&self.registry, request.task_id, request.attempt);
        if processing.outside {
            let (attempt, output) = super::outside::handed_in(registry, id, attempt).await?;
            return Ok((attempt, output.to_string()));
        }
        let last = std::sync::Mutex::new(None::<Instant>);
        let progress = move |text: Arc<str>| {
            {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
                    return;
                }
                *last = Some(Instant::now());
            }
            // A progress report after a cancel has nowhere to go; that is not an error.
            let _ = registry.progress(id, attempt, text, None);
        };
        let timeout = self.options.timeout;
        // A processor that panics fails its attempt, not the task's flow (which would leave the
        // task running for ever) nor anything else.
        let work = AssertUnwindSafe(self.processor.process(request, &progress)).catch_unwind();
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(result)) => result.map(|output| (attempt, output)),
            Ok(Err(_)) => Err(NodeError::fatal(
                "The processor failed unexpectedly (it panicked); see the server's log.",
            )),
            Err(_) => Err(NodeError::new(format!(
                "Processing took longer than {} s and was stopped.",
                timeout.as_secs_f64()
            ))),
        }
    }

    async fn post(
        &self,
        store: &mut ReviewStore,
        processing: Processing,
        (made, output): (u32, String),
    ) -> Result<Step, NodeError> {
        let output: Arc<str> = output.into();
        if store.outside {
            // Handed in: the task already waits for review of it (an outside task's attempt
            // may be later than the one the workflow waited for).
            if made != store.attempt
                && let Some(task) = self.registry.get(store.task_id)
            {
                store.follow(&task);
            }
            store.attempt = made;
            store.output = Some(output);
            return Ok(Step::Processed);
        }
        let (attempt, finished) = (processing.request.attempt, output.clone());
        self.registry
            .apply(store.task_id, None, true, move |task| {
                changes::finish_attempt(task, attempt, finished)
            })
            .await?;
        store.output = Some(output);
        Ok(Step::Processed)
    }
}

/// Waits, holding no thread, for a person's decision on the attempt under review.
pub struct ReviewNode {
    pub registry: Registry,
}

impl Node<ReviewStore> for ReviewNode {
    type Prep = (TaskId, u32);
    /// The task once the review is decided: the decision moved it on.
    type Output = Arc<Task>;
    type Action = Step;

    async fn prep(&self, store: &ReviewStore) -> Result<Self::Prep, NodeError> {
        Ok((store.task_id, store.attempt))
    }

    /// Waits until the review is decided. A decision (a person's, a deadline's, a cancel) is
    /// one guarded change of the task, made wherever it arrives (the registry, or the shared
    /// database, by any instance); this node only observes the task moving on. If the review
    /// has a deadline, it applies its policy when it passes, through the same guard, so a
    /// person's decision at the same moment and the deadline's cannot both count. A deadline
    /// moved later (extended) is followed.
    async fn exec(&self, (id, attempt): &Self::Prep) -> Result<Arc<Task>, NodeError> {
        let (id, attempt) = (*id, *attempt);
        let mut changes = self
            .registry
            .watch(id)
            .ok_or_else(|| NodeError::new("the task is gone"))?;
        let settled = || {
            self.registry
                .get(id)
                .filter(|task| !task.awaits_decision_on(attempt))
        };
        let mut deadline = Deadline::of(self.registry.get(id).as_deref(), attempt);
        loop {
            if let Some(task) = settled() {
                return Ok(task);
            }
            let due = deadline.due();
            let sleep = async {
                match due {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: a change of the task (a decision, a moved deadline) is seen before the
            // timer, so an extension that lands as the deadline passes is not overtaken by it.
            let passed = tokio::select! {
                biased;
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(NodeError::new("the task is gone"));
                    }
                    deadline.follow(self.registry.get(id).as_deref());
                    None
                }
                () = sleep => {
                    deadline.fired = true;
                    due.map(|(_, wall)| wall)
                }
            };
            if let Some(wall) = passed {
                match self.registry.time_out(id, attempt, wall).await {
                    Ok(decided) => tracing::info!(%id, attempt, decided, "review deadline passed"),
                    // A decision (or a cancel) came first: it stands.
                    Err(TransitionError::Conflict { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "review.post", skip_all, fields(task_id = %store.task_id, attempt = store.attempt))]
    async fn post(
        &self,
        store: &mut ReviewStore,
        _: Self::Prep,
        task: Arc<Task>,
    ) -> Result<Step, NodeError> {
        Ok(settled(store, &task))
    }
}

/// Where the workflow goes once the review is decided: on to the next attempt when changes
/// were requested, to the result when approved, or nowhere (the task failed or was cancelled;
/// the decision recorded everything already).
fn settled(store: &mut ReviewStore, task: &Task) -> Step {
    // Changes were requested: the next attempt (for an outside task, maybe a later one: its
    // attempts can be handed in and decided faster than its workflow follows).
    if !task.status.is_terminal() && task.attempt > store.attempt {
        store.follow(task);
        Step::Rejected
    } else if task.status == TaskStatus::Completed {
        store.final_result = task.final_result.clone();
        Step::Approved
    } else {
        Step::Failed
    }
}

/// A review's deadline on the runtime's clock. The wall clock and the runtime's clock are
/// paired once, when the wait starts, and every deadline the task is given is mapped through
/// that pair: extensions are followed exactly, and tests can drive it on tokio's paused clock.
struct Deadline {
    /// The pair: the runtime's instant and the wall-clock time it stands for.
    origin: (Instant, OffsetDateTime),
    /// The task's deadline as the wall clock has it, if any.
    wall: Option<OffsetDateTime>,
    /// It passed and its policy was applied (or refused): do not apply it again.
    fired: bool,
}

impl Deadline {
    fn of(task: Option<&Task>, attempt: u32) -> Self {
        let task = task.filter(|t| t.awaits_decision_on(attempt));
        Self {
            origin: (Instant::now(), now()),
            wall: task.and_then(|t| t.review_deadline),
            fired: task.is_some_and(|t| already_passed(t, attempt)),
        }
    }

    /// When the policy should apply, unless it already has.
    fn due(&self) -> Option<(Instant, OffsetDateTime)> {
        let wall = self.wall.filter(|_| !self.fired)?;
        let (instant, at) = self.origin;
        // Rounded up to whole seconds: never early, whatever the clocks' jitter (at most a
        // second late), and exact on a test's paused clock.
        let millis = (wall - at).whole_milliseconds().max(0);
        let after = Duration::from_secs(u64::try_from((millis + 999) / 1000).unwrap_or(u64::MAX));
        // A deadline beyond the runtime's clock (only a hand-edited store has one) never comes.
        Some((instant.checked_add(after)?, wall))
    }

    /// Takes in the task's deadline as it is now: moved later, it is armed again.
    fn follow(&mut self, task: Option<&Task>) {
        let wall = task.and_then(|t| t.review_deadline);
        if wall.is_some() && wall != self.wall {
            self.fired = false;
        }
        self.wall = wall.or(self.wall);
    }
}

/// Did this attempt's deadline (as it stands) already pass with nothing decided (policy
/// `none`)? Then a restart must not record it again.
fn already_passed(task: &Task, attempt: u32) -> bool {
    task.history
        .iter()
        .rev()
        .find_map(|entry| match entry.event {
            AuditEvent::DeadlinePassed { attempt: a } if a == attempt => Some(true),
            AuditEvent::DeadlineExtended { attempt: a, .. } if a == attempt => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// The end of an approved task: the decision completed it (with the final result) in the same
/// step that decided it, so what is left is to say so.
pub struct ResultNode;

impl Node<ReviewStore> for ResultNode {
    type Prep = Arc<str>;
    type Output = ();
    type Action = Step;

    async fn prep(&self, store: &ReviewStore) -> Result<Self::Prep, NodeError> {
        store
            .final_result
            .clone()
            .ok_or_else(|| NodeError::new("no approved result to record"))
    }

    async fn exec(&self, _: &Self::Prep) -> Result<(), NodeError> {
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "result.post", skip_all, fields(task_id = %store.task_id))]
    async fn post(
        &self,
        store: &mut ReviewStore,
        result: Self::Prep,
        _: (),
    ) -> Result<Step, NodeError> {
        tracing::debug!(
            task_id = %store.task_id,
            attempt = store.attempt,
            result = %crate::model::task::excerpt(&result, 120),
            result_bytes = result.len(),
            "task completed"
        );
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_own_change_suspends_the_workflow_rather_than_failing_the_task() {
        let task = Arc::new(Task::new(TaskId::new(), "x".into(), 3, now()));
        let conflict = TransitionError::Conflict {
            refused: crate::model::changes::Refused::OutOfTurn {
                status: TaskStatus::Running,
                attempt: 1,
                expected: vec![TaskStatus::Pending],
                wanted: 1,
            },
            task,
        };
        for error in [
            TransitionError::Unavailable,
            TransitionError::NotClaimed,
            conflict,
        ] {
            let error = NodeError::from(error);
            assert!(error.suspend, "{error}");
            // Tried again exactly as before: memory and SQLite modes are unchanged.
            assert!(error.retryable, "{error}");
        }
        let gone = NodeError::from(TransitionError::NotFound(TaskId::new()));
        assert!(!gone.suspend);
    }
}
