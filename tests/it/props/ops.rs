//! The operations a run is made of, how proptest draws them, and how each is applied to the
//! service: every call's outcome is checked against what the model says it must be.

use std::sync::Arc;

use hitl::{
    Hitl,
    auth::Actor,
    input::{DecisionFields, DecisionRequest, NewTask},
    registry::TransitionError,
    task::{Decision, Task, TaskId, TaskStatus},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use tokio_util::sync::CancellationToken;

use super::{
    DEFAULT_MAX_ATTEMPTS, Stats, bounded, fail,
    model::{Tracked, World},
};

/// One step of a run. `task` picks one of the tasks created so far (modulo their number); with
/// none yet, the step targets an id the service never issued.
#[derive(Clone, Debug)]
pub(super) enum Op {
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

pub(super) fn op() -> impl Strategy<Value = Op> {
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

impl World {
    pub(super) async fn apply(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
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
}
