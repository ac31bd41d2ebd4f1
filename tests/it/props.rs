//! A property test: random sequences of submissions, decisions (some of them racing), cancels
//! and restarts, run against the service in-process on a durable store, with the lifecycle's
//! invariants checked after every step.
//!
//! After each step every task is settled (no longer `pending` or `running`), so the state the
//! service should be in follows from the operations alone, and the test keeps a small model of it:
//! which calls must be accepted, which refused, and what each task must look like afterwards.
//! The event journal is checked after every step too: numbered 1..=head with no gap, only ever
//! appended to (a restart renumbers and rewrites nothing), each task's status events a walk along
//! the lifecycle, and each task's latest status event the task as it is now.

use std::{
    collections::HashSet,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hitl::{
    Hitl,
    auth::Actor,
    config::{Config, StoreKind},
    events::{Event, EventKind, Scope, Since},
    input::{DecisionFields, DecisionRequest, NewTask},
    registry::TransitionError,
    task::{Decision, Task, TaskId, TaskStatus},
};
use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The longest any one call or wait may take before the case fails.
const WAIT: Duration = Duration::from_secs(10);

/// The attempts a submission that names none gets (the config's `max_attempts`).
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// One step of a run. `task` picks one of the tasks created so far (modulo their number); with
/// none yet, the step targets an id the service never issued.
#[derive(Clone, Debug)]
enum Op {
    Submit {
        /// `None`: the submission names no number and gets the default.
        max_attempts: Option<u32>,
    },
    Decide {
        task: usize,
        decision: Decision,
        /// The attempt sent, relative to the task's current one; `None` sends no attempt (the one
        /// under review).
        attempt_offset: Option<i64>,
        comment: bool,
    },
    /// Two decisions on the task's current attempt, sent at once from two tokio tasks.
    Race {
        task: usize,
        first: Decision,
        second: Decision,
    },
    Cancel {
        task: usize,
    },
    /// Cancel the shutdown token, close the service and open it again on the same directory.
    Restart,
}

/// Requests for changes weigh most: they are what walks a task up to its attempt limit.
fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        2 => Just(Decision::Approved),
        3 => Just(Decision::Rejected),
        1 => Just(Decision::RejectedFinal),
    ]
}

/// The attempt a decision names, relative to the task's: mostly the right one.
fn attempt_offset() -> impl Strategy<Value = Option<i64>> {
    proptest::option::weighted(
        0.85,
        prop_oneof![4 => Just(0i64), 1 => Just(-1), 1 => Just(1)],
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::weighted(0.8, 1..=3u32)
            .prop_map(|max_attempts| Op::Submit { max_attempts }),
        6 => (0..8usize, decision(), attempt_offset(), any::<bool>())
            .prop_map(|(task, decision, attempt_offset, comment)| Op::Decide {
                task,
                decision,
                attempt_offset,
                comment,
            }),
        1 => (0..8usize, decision(), decision())
            .prop_map(|(task, first, second)| Op::Race { task, first, second }),
        1 => (0..8usize).prop_map(|task| Op::Cancel { task }),
        1 => Just(Op::Restart),
    ]
}

/// How often each kind of outcome happened, over every case run: evidence the run covered what
/// it should.
#[derive(Default)]
struct Stats {
    submitted: AtomicUsize,
    decided: AtomicUsize,
    decision_refused: AtomicUsize,
    decision_invalid: AtomicUsize,
    races: AtomicUsize,
    cancelled: AtomicUsize,
    cancel_refused: AtomicUsize,
    restarts: AtomicUsize,
    completed: AtomicUsize,
    failed_at_limit: AtomicUsize,
    failed_final: AtomicUsize,
    next_attempt: AtomicUsize,
}

impl Stats {
    fn bump(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// Awaits `future`, failing the case if it takes longer than [`WAIT`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> Result<T, TestCaseError> {
    tokio::time::timeout(WAIT, future)
        .await
        .map_err(|_| fail(format!("timed out after {WAIT:?}: {what}")))
}

/// What the test knows of one task it created.
struct Tracked {
    id: TaskId,
    max_attempts: u32,
    /// The status and attempt the task must have now, from the operations applied to it.
    expected: (TaskStatus, u32),
    /// Every decision the service accepted for it, in order, with its comment.
    decisions: Vec<(Decision, Option<String>)>,
    /// The task as the last check saw it.
    seen: Arc<Task>,
    /// Its latest status event in the journal as of the last check: status, attempt, seq.
    last_event: Option<(TaskStatus, u32, u64)>,
}

/// The service under test, its directory, and the model of what it should hold.
struct World {
    config: Config,
    shutdown: CancellationToken,
    hitl: Hitl,
    tasks: Vec<Tracked>,
    /// The whole journal as the last check read it.
    journal: Vec<Arc<Event>>,
    /// What each step did, for the failure message.
    trace: Vec<String>,
    stats: Arc<Stats>,
}

impl World {
    fn open(dir: &TempDir, stats: Arc<Stats>) -> Result<Self, TestCaseError> {
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

    async fn close(&self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(WAIT, self.hitl.close()).await;
    }

    /// The task a step targets: its index among the tracked tasks, if there are any.
    fn target(&self, pick: usize) -> Option<usize> {
        (!self.tasks.is_empty()).then(|| pick % self.tasks.len())
    }

    fn current(&self, id: TaskId) -> Result<Arc<Task>, TestCaseError> {
        self.hitl
            .registry
            .get(id)
            .ok_or_else(|| fail(format!("task {id} is gone from the registry")))
    }

    /// Every tracked task as the registry has it now, and the journal's head.
    fn state(&self) -> Result<(Vec<Arc<Task>>, u64), TestCaseError> {
        let tasks = self
            .tasks
            .iter()
            .map(|t| self.current(t.id))
            .collect::<Result<_, _>>()?;
        Ok((tasks, self.hitl.registry.events.head()))
    }

    /// Waits, following the task's watch, until it is neither `pending` nor `running`.
    async fn settle(&self, id: TaskId) -> Result<Arc<Task>, TestCaseError> {
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

    async fn apply(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Submit { max_attempts } => self.submit(step, max_attempts).await,
            Op::Decide {
                task,
                decision,
                attempt_offset,
                comment,
            } => {
                let comment = comment.then(|| format!("comment at step {step}"));
                self.decide(task, decision, attempt_offset, comment).await
            }
            Op::Race {
                task,
                first,
                second,
            } => self.race(task, first, second).await,
            Op::Cancel { task } => self.cancel(task).await,
            Op::Restart => self.restart().await,
        }
    }

    async fn submit(
        &mut self,
        step: usize,
        max_attempts: Option<u32>,
    ) -> Result<(), TestCaseError> {
        let input = format!("task of step {step}: write a haiku about rust");
        let new = NewTask::parse(Some(&input), max_attempts.map(i64::from))
            .map_err(|e| fail(format!("a valid submission does not parse: {e}")))?;
        let task = bounded("submit", self.hitl.submit(new, &Actor::anyone()))
            .await?
            .map_err(|e| fail(format!("submit refused: {e}")))?;
        let max_attempts = max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        prop_assert_eq!(task.status, TaskStatus::Pending);
        prop_assert_eq!(task.attempt, 1);
        prop_assert_eq!(task.max_attempts, max_attempts);
        prop_assert!(task.attempts.is_empty());
        Stats::bump(&self.stats.submitted);
        self.trace
            .push(format!("submitted {} (max {max_attempts})", task.id));
        self.tasks.push(Tracked {
            id: task.id,
            max_attempts,
            expected: (TaskStatus::WaitingForReview, 1),
            decisions: Vec::new(),
            seen: task.clone(),
            last_event: None,
        });
        let settled = self.settle(task.id).await?;
        prop_assert_eq!(
            settled.status,
            TaskStatus::WaitingForReview,
            "a new task ends up waiting for review: {:?}",
            settled
        );
        Ok(())
    }

    async fn decide(
        &mut self,
        pick: usize,
        decision: Decision,
        attempt_offset: Option<i64>,
        comment: Option<String>,
    ) -> Result<(), TestCaseError> {
        let target = self.target(pick);
        let before = target.map(|i| self.current(self.tasks[i].id)).transpose()?;
        let id = before.as_ref().map_or_else(TaskId::new, |t| t.id);
        let current_attempt = before.as_ref().map_or(1, |t| t.attempt);
        let attempt = attempt_offset.map(|offset| i64::from(current_attempt) + offset);
        let acceptable = before.as_ref().is_some_and(|t| {
            t.status == TaskStatus::WaitingForReview
                && attempt.is_none_or(|a| a == i64::from(t.attempt))
        });
        let state_before = self.state()?;
        let what = format!(
            "decide {} on {id} attempt {attempt:?} (current {current_attempt}, status {:?}), comment {comment:?}",
            decision.as_str(),
            before.as_ref().map(|t| t.status)
        );
        let request = match DecisionRequest::parse(DecisionFields {
            decision: Some(decision.as_str()),
            attempt,
            comment: comment.as_deref(),
            ..DecisionFields::default()
        }) {
            Ok(request) => request,
            Err(invalid) => {
                // An attempt of 0 is invalid (no task is ever on attempt 0), and so is a request
                // for changes without a comment.
                let no_comment = decision == Decision::Rejected && comment.is_none();
                prop_assert!(
                    !acceptable || no_comment,
                    "{what}: a decision to accept does not parse"
                );
                let bad_attempt = attempt.is_some_and(|a| a < 1);
                prop_assert!(bad_attempt || no_comment, "{what}: refused as {invalid}");
                prop_assert_eq!(
                    invalid.field(),
                    if bad_attempt { "attempt" } else { "comment" }
                );
                Stats::bump(&self.stats.decision_invalid);
                self.trace.push(format!("{what}: invalid ({invalid})"));
                return Ok(());
            }
        };
        let outcome = bounded(&what, self.hitl.decide(id, request, &Actor::anyone())).await?;
        match outcome {
            Ok(task) => {
                self.trace.push(format!("{what}: accepted"));
                prop_assert!(acceptable, "{what}: accepted, but it should be refused");
                let before = before.expect("only a tracked task accepts a decision");
                let index = target.expect("only a tracked task accepts a decision");
                self.accepted(index, &before, &task, decision, comment)
                    .await
            }
            Err(error) => {
                self.trace.push(format!("{what}: refused ({error})"));
                prop_assert!(
                    !acceptable,
                    "{what}: refused, but it should be accepted: {error}"
                );
                Stats::bump(&self.stats.decision_refused);
                self.refused(&what, before.as_ref(), &error, &state_before)
            }
        }
    }

    /// Two decisions on one attempt at once: exactly one is accepted if the task awaits one.
    async fn race(
        &mut self,
        pick: usize,
        first: Decision,
        second: Decision,
    ) -> Result<(), TestCaseError> {
        let Some(index) = self.target(pick) else {
            self.trace.push("race: no task yet".into());
            return Ok(());
        };
        let before = self.current(self.tasks[index].id)?;
        let acceptable = before.status == TaskStatus::WaitingForReview;
        let state_before = self.state()?;
        let what = format!(
            "race {} vs {} on {} attempt {} (status {:?})",
            first.as_str(),
            second.as_str(),
            before.id,
            before.attempt,
            before.status
        );
        let spawn = |decision: Decision| -> Result<_, TestCaseError> {
            let request = DecisionRequest::parse(DecisionFields {
                decision: Some(decision.as_str()),
                attempt: Some(i64::from(before.attempt)),
                comment: Some("racing"),
                ..DecisionFields::default()
            })
            .map_err(|e| fail(format!("a decision does not parse: {e}")))?;
            let (hitl, id) = (self.hitl.clone(), before.id);
            Ok(tokio::spawn(async move {
                hitl.decide(id, request, &Actor::anyone()).await
            }))
        };
        let (a, b) = (spawn(first)?, spawn(second)?);
        let a = bounded(&what, a)
            .await?
            .map_err(|e| fail(format!("{what}: a decision panicked: {e}")))?;
        let b = bounded(&what, b)
            .await?
            .map_err(|e| fail(format!("{what}: a decision panicked: {e}")))?;
        Stats::bump(&self.stats.races);
        let outcome = |r: &Result<Arc<Task>, TransitionError>| match r {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("refused ({e})"),
        };
        self.trace.push(format!(
            "{what}: first {}, second {}",
            outcome(&a),
            outcome(&b)
        ));
        match (a, b) {
            (Ok(task), Err(error)) | (Err(error), Ok(task)) if acceptable => {
                let decision = task.decision_for(before.attempt).ok_or_else(|| {
                    fail(format!("{what}: the winner's decision is not recorded"))
                })?;
                prop_assert!(decision == first || decision == second);
                prop_assert!(
                    matches!(error, TransitionError::Conflict { .. }),
                    "{what}: the loser is refused with a conflict, not {error:?}"
                );
                self.accepted(index, &before, &task, decision, Some("racing".to_owned()))
                    .await
            }
            (Err(a), Err(b)) if !acceptable => {
                self.refused(&what, Some(&before), &a, &state_before)?;
                self.refused(&what, Some(&before), &b, &state_before)
            }
            (a, b) => Err(fail(format!(
                "{what}: {} and {}, but {}",
                outcome(&a),
                outcome(&b),
                if acceptable {
                    "exactly one should be accepted"
                } else {
                    "both should be refused"
                }
            ))),
        }
    }

    /// A decision was accepted: checks the answer and the settled task, and updates the model.
    async fn accepted(
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
    fn refused(
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

    async fn cancel(&mut self, pick: usize) -> Result<(), TestCaseError> {
        let target = self.target(pick);
        let before = target.map(|i| self.current(self.tasks[i].id)).transpose()?;
        let id = before.as_ref().map_or_else(TaskId::new, |t| t.id);
        let acceptable = before.as_ref().is_some_and(|t| !t.status.is_terminal());
        let state_before = self.state()?;
        let what = format!(
            "cancel {id} (status {:?})",
            before.as_ref().map(|t| t.status)
        );
        match bounded(&what, self.hitl.cancel(id, &Actor::anyone())).await? {
            Ok(task) => {
                self.trace.push(format!("{what}: accepted"));
                prop_assert!(acceptable, "{what}: accepted, but it should be refused");
                let before = before.expect("only a tracked task can be cancelled");
                prop_assert_eq!(task.status, TaskStatus::Cancelled);
                prop_assert_eq!(task.attempt, before.attempt);
                prop_assert_eq!(&task.attempts, &before.attempts);
                Stats::bump(&self.stats.cancelled);
                let index = target.expect("only a tracked task can be cancelled");
                self.tasks[index].expected = (TaskStatus::Cancelled, before.attempt);
                Ok(())
            }
            Err(error) => {
                self.trace.push(format!("{what}: refused ({error})"));
                prop_assert!(
                    !acceptable,
                    "{what}: refused, but it should be accepted: {error}"
                );
                Stats::bump(&self.stats.cancel_refused);
                self.refused(&what, before.as_ref(), &error, &state_before)
            }
        }
    }

    /// Shuts the service down, closes it and opens it again on the same directory: every task
    /// comes back exactly as it was, and the journal carries on from the same head.
    async fn restart(&mut self) -> Result<(), TestCaseError> {
        let (tasks_before, head_before) = self.state()?;
        self.shutdown.cancel();
        bounded("close", self.hitl.close()).await?;
        let verified = hitl::store::sqlite::verify(&self.config.data_dir)
            .map_err(|e| fail(format!("the store cannot be verified: {e}")))?;
        prop_assert!(
            verified.breaks.is_empty(),
            "the stored audit trails do not verify: {:?}",
            verified.breaks
        );
        prop_assert_eq!(verified.tasks, self.tasks.len());
        let shutdown = CancellationToken::new();
        let hitl = Hitl::open(&self.config, shutdown.clone())
            .map_err(|e| fail(format!("the service does not reopen: {e}")))?;
        (self.hitl, self.shutdown) = (hitl, shutdown);
        Stats::bump(&self.stats.restarts);
        self.trace.push(format!("restarted at head {head_before}"));
        let (tasks_after, head_after) = self.state()?;
        prop_assert_eq!(
            head_after,
            head_before,
            "the head carries on across a restart"
        );
        for (before, after) in tasks_before.iter().zip(&tasks_after) {
            prop_assert_eq!(after, before, "a task changed across a restart");
        }
        prop_assert_eq!(self.hitl.registry.len(), self.tasks.len());
        Ok(())
    }

    /// Every invariant, over every task created so far and the whole journal.
    async fn check(&mut self) -> Result<(), TestCaseError> {
        let registry = &self.hitl.registry;
        prop_assert_eq!(
            registry.len(),
            self.tasks.len(),
            "every task is there, no other"
        );
        let (tasks, _) = self.state()?;
        for task in &tasks {
            let breaks = hitl::audit::verify_chain(
                task.id,
                &task
                    .history
                    .iter()
                    .map(|e| (**e).clone())
                    .collect::<Vec<_>>(),
            );
            prop_assert!(
                breaks.is_empty(),
                "task {}'s audit trail: {:?}",
                task.id,
                breaks
            );
            let last = task
                .history
                .last()
                .ok_or_else(|| fail(format!("task {} has no audit trail", task.id)))?;
            prop_assert_eq!(
                last.status,
                task.status,
                "the trail ends in the task's status"
            );
            let decided = task
                .history
                .iter()
                .filter(|e| matches!(e.event, hitl::audit::AuditEvent::Decided { .. }))
                .count();
            prop_assert_eq!(
                decided,
                task.attempts.len(),
                "one decided entry per decided attempt"
            );
        }
        let unfinished = tasks.iter().filter(|t| !t.status.is_terminal()).count();
        prop_assert_eq!(
            registry.unfinished(),
            unfinished,
            "the count of unfinished tasks"
        );
        let by_status = TaskStatus::ALL.map(|s| tasks.iter().filter(|t| t.status == s).count());
        prop_assert_eq!(
            registry.count_by_status(),
            by_status,
            "the counts per status, kept as tasks change"
        );

        // Every task's latest event is durable (all tasks are settled: nothing more is coming).
        let newest = tasks.iter().map(|t| t.seq).max().unwrap_or(0);
        prop_assert!(
            registry.events.wait_durable(newest, WAIT).await,
            "event {} never became durable",
            newest
        );

        // 5. No event lost: the journal is 1..=head, and only ever grows at its end.
        let since = bounded("replay", registry.events.replay(0, Scope::All)).await?;
        let Since::Events { events, head } = since else {
            return Err(fail("replay from 0 is gone, with nothing pruned"));
        };
        prop_assert_eq!(head, registry.events.head());
        prop_assert_eq!(
            head,
            newest,
            "the newest event is some task's latest status event"
        );
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        prop_assert!(
            seqs.iter().copied().eq(1..=head),
            "the journal is not exactly 1..={}: {:?}",
            head,
            seqs
        );
        prop_assert!(
            events.len() >= self.journal.len(),
            "the journal shrank from {} to {} events",
            self.journal.len(),
            events.len()
        );
        for (old, new) in self.journal.iter().zip(&events) {
            prop_assert!(
                same_event(old, new),
                "event {} was rewritten: {:?} became {:?}",
                old.seq,
                old,
                new
            );
        }

        // 3. Each task's new status events walk along the lifecycle from where it was.
        let known: HashSet<TaskId> = self.tasks.iter().map(|t| t.id).collect();
        for event in &events[self.journal.len()..] {
            prop_assert!(
                known.contains(&event.task_id()),
                "an event for a task nobody created: {:?}",
                event
            );
            if event.kind != EventKind::Status {
                continue;
            }
            prop_assert_eq!(
                event.task.seq,
                event.seq,
                "a status event's task knows its seq"
            );
            let tracked = self
                .tasks
                .iter_mut()
                .find(|t| t.id == event.task_id())
                .expect("checked above");
            let to = (event.task.status, event.task.attempt);
            match tracked.last_event {
                None => prop_assert_eq!(
                    to,
                    (TaskStatus::Pending, 1),
                    "a task's first event is pending at attempt 1"
                ),
                Some((status, attempt, _)) => prop_assert!(
                    allowed((status, attempt), to),
                    "task {} moved {:?} -> {:?} (event {})",
                    tracked.id,
                    (status, attempt),
                    to,
                    event.seq
                ),
            }
            tracked.last_event = Some((to.0, to.1, event.seq));
        }

        for (tracked, task) in self.tasks.iter_mut().zip(&tasks) {
            let id = tracked.id;
            // 5. The latest status event is the task as it is now.
            let Some((status, attempt, seq)) = tracked.last_event else {
                return Err(fail(format!("task {id} has no status event")));
            };
            prop_assert_eq!(
                (status, attempt, seq),
                (task.status, task.attempt, task.seq)
            );
            let latest = &events[seq as usize - 1];
            prop_assert!(
                journalled(&latest.task) == journalled(task),
                "task {}'s latest event {:?} disagrees with the task {:?}",
                id,
                latest,
                task
            );

            // 1. At most one decision per attempt: records 1..n, each decided once.
            let numbers: Vec<u32> = task.attempts.iter().map(|a| a.attempt).collect();
            prop_assert!(
                numbers.iter().copied().eq(1..=numbers.len() as u32),
                "task {}'s attempt records are not 1..n: {:?}",
                id,
                numbers
            );
            prop_assert!(task.attempts.iter().all(|a| a.decision.is_some()));

            // 2. Never past the limit.
            prop_assert_eq!(task.max_attempts, tracked.max_attempts);
            prop_assert!(
                (1..=task.max_attempts).contains(&task.attempt),
                "task {} is on attempt {} of {}",
                id,
                task.attempt,
                task.max_attempts
            );
            prop_assert!(task.attempts.len() as u32 <= task.max_attempts);
            prop_assert!(
                numbers.len() as u32 + 1 == task.attempt || numbers.len() as u32 == task.attempt,
                "task {} on attempt {} has {} decided attempts",
                id,
                task.attempt,
                numbers.len()
            );

            // 3. Terminal statuses never change, nor anything else of the task.
            if tracked.seen.status.is_terminal() {
                prop_assert_eq!(task, &tracked.seen, "a finished task changed");
            }

            // 4. The model: the status and attempt the operations lead to, and every accepted
            // decision recorded as given.
            prop_assert_eq!(
                (task.status, task.attempt),
                tracked.expected,
                "task {} is not where its operations lead",
                id
            );
            let decisions: Vec<(Decision, Option<String>)> = task
                .attempts
                .iter()
                .map(|a| {
                    (
                        a.decision.expect("checked above"),
                        a.comment.as_deref().map(str::to_owned),
                    )
                })
                .collect();
            prop_assert_eq!(&decisions, &tracked.decisions);
            match task.status {
                TaskStatus::Completed => {
                    prop_assert!(task.final_result.is_some());
                    prop_assert_eq!(
                        task.attempts.last().and_then(|a| a.decision),
                        Some(Decision::Approved)
                    );
                }
                TaskStatus::Failed => prop_assert!(task.error.is_some()),
                TaskStatus::WaitingForReview => prop_assert!(task.output.is_some()),
                _ => {}
            }
            tracked.seen = task.clone();
        }
        self.journal = events;
        Ok(())
    }
}

/// The contract's lifecycle: may a task's status event go from `from` to `to`?
fn allowed(from: (TaskStatus, u32), to: (TaskStatus, u32)) -> bool {
    use TaskStatus::*;
    let ((from, attempt), (to, next)) = (from, to);
    match (from, to) {
        (WaitingForReview, Running) => next == attempt + 1,
        (Pending, Running)
        | (Running, WaitingForReview)
        | (WaitingForReview, Completed | Failed)
        | (Pending | Running | WaitingForReview, Cancelled)
        | (Pending | Running, Failed) => next == attempt,
        _ => false,
    }
}

/// A task as the journal keeps it: without its audit trail, which the store keeps apart.
fn journalled(task: &Task) -> Task {
    Task {
        history: Vec::new(),
        submit_key: None,
        ..task.clone()
    }
}

/// The same event, as far as the journal keeps it.
fn same_event(a: &Event, b: &Event) -> bool {
    a.seq == b.seq && a.at == b.at && a.kind == b.kind && journalled(&a.task) == journalled(&b.task)
}

/// One case: a fresh directory, a fresh runtime, the operations in order with every check after
/// each, and the service closed at the end whatever happened.
fn run_case(ops: &[Op], stats: &Arc<Stats>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| fail(format!("no temporary directory: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(format!("no runtime: {e}")))?;
    runtime.block_on(async {
        let mut world = World::open(&dir, stats.clone())?;
        let mut result = Ok(());
        for (step, op) in ops.iter().enumerate() {
            let outcome = match world.apply(step, op).await {
                Ok(()) => world.check().await,
                Err(e) => Err(e),
            };
            if let Err(error) = outcome {
                result = Err(fail(format!(
                    "step {step} ({op:?}): {error}\nsteps taken:\n  {}",
                    world.trace.join("\n  ")
                )));
                break;
            }
        }
        world.close().await;
        result
    })
}

#[test]
fn random_operations_keep_the_lifecycle_invariants() {
    let stats = Arc::new(Stats::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        // Only this file may be written: no regressions file next to it.
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let started = Instant::now();
    let result = runner.run(&proptest::collection::vec(op(), 1..=25), |ops| {
        run_case(&ops, &stats)
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    eprintln!(
        "props: {:?}; submitted {}, decided {} (completed {}, next attempt {}, failed at the \
         limit {}, rejected for good {}), decisions refused {}, invalid {}, races {}, cancelled \
         {}, cancels refused {}, restarts {}",
        started.elapsed(),
        n(&stats.submitted),
        n(&stats.decided),
        n(&stats.completed),
        n(&stats.next_attempt),
        n(&stats.failed_at_limit),
        n(&stats.failed_final),
        n(&stats.decision_refused),
        n(&stats.decision_invalid),
        n(&stats.races),
        n(&stats.cancelled),
        n(&stats.cancel_refused),
        n(&stats.restarts),
    );
}
