//! The rules of every change to a task, as pure functions over a task value.
//!
//! Each takes the task as it stands and either changes it (returning what the audit trail
//! records) or refuses with a message that says why. The registry applies them under its guard
//! in one process; with `--store postgres` the database applies the very same functions to the
//! row it holds locked, so several instances follow one set of rules.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;

use super::{
    audit::{AuditEntry, AuditEvent, Digest},
    status::MAX_TIMEOUT_SECS,
    task::{
        AttemptRecord, Decision, Feedback, Outcome as Ended, Task, TaskStatus, TimeoutPolicy, now,
        same_text,
    },
};

mod outside;
mod refused;
pub use outside::*;
pub use refused::Refused;

/// What a change records in the audit trail, or why it was refused.
pub type Change = Result<Vec<AuditEvent>, Refused>;

/// A change to apply to a task, boxed so changes of every kind can travel together (to a
/// shared database's write queue, say).
pub type BoxedChange = Box<dyn FnOnce(&mut Task) -> Change + Send>;

/// `pending -> running` for `attempt`; nothing (no entries) if it is already running.
pub fn start_attempt(task: &mut Task, attempt: u32) -> Change {
    if task.status == TaskStatus::Running && task.attempt == attempt {
        return Ok(Vec::new());
    }
    expect(task, &[TaskStatus::Pending], attempt)?;
    task.status = TaskStatus::Running;
    Ok(vec![AuditEvent::AttemptStarted { attempt }])
}

/// May a progress report for `attempt` be published?
pub fn progress(task: &Task, attempt: u32) -> Result<(), Refused> {
    if task.status != TaskStatus::Running || task.attempt != attempt {
        return Err(Refused::NotRunning { attempt });
    }
    Ok(())
}

/// `running -> waiting_for_review` with the attempt's output.
pub fn finish_attempt(task: &mut Task, attempt: u32, output: Arc<str>) -> Change {
    expect(task, &[TaskStatus::Running], attempt)?;
    Ok(vec![open_review(task, output, false)])
}

/// The task waits for review of its current attempt's `output` (made `outside` hitl or not),
/// with the review's deadline set: what the audit trail records.
fn open_review(task: &mut Task, output: Arc<str>, outside: bool) -> AuditEvent {
    task.status = TaskStatus::WaitingForReview;
    task.claim = None;
    task.review_deadline = task
        .review_timeout
        .map(|timeout| now() + Duration::from_secs(timeout.seconds.min(MAX_TIMEOUT_SECS)));
    let finished = AuditEvent::AttemptFinished {
        attempt: task.attempt,
        output_sha256: Digest::of_text(&output),
        output_bytes: output.len(),
        outside,
    };
    task.output = Some(output);
    finished
}

/// What a new task's first event records: its submission and, for an outside task handed in
/// with its output, attempt 1 (then open for review, in the same event).
pub fn submitted(task: &mut Task) -> Vec<AuditEvent> {
    let mut happened = vec![AuditEvent::Submitted {
        input_sha256: Digest::of_text(&task.input),
        max_attempts: task.max_attempts,
    }];
    if let Some(output) = task.output.clone() {
        happened.push(open_review(task, output, true));
    }
    happened
}

/// Would a decision be accepted now? Only while the task waits for review of exactly that
/// attempt, and (when the reviewer's client says what it showed) of exactly that text.
pub fn check_decision(task: &Task, feedback: &Feedback) -> Result<(), Refused> {
    if task.status != TaskStatus::WaitingForReview {
        return Err(Refused::NotUnderReview {
            status: task.status,
        });
    }
    if feedback.attempt != task.attempt {
        return Err(Refused::WrongAttempt {
            decided: feedback.attempt,
            under_review: task.attempt,
        });
    }
    if let Some(seen) = feedback.output_sha256
        && seen != Digest::of_text(task.output.as_deref().unwrap_or_default())
    {
        return Err(Refused::NotWhatWasSeen {
            attempt: feedback.attempt,
        });
    }
    Ok(())
}

/// Where a decision leads.
pub enum Outcome {
    /// Approved: this becomes the final result.
    Complete(Arc<str>),
    /// Changes requested, and another attempt is allowed.
    Retry,
    /// Rejected for good, or at the attempt limit: the task fails for this reason.
    Fail(String),
}

/// Where `feedback` on `attempt` of `max_attempts` leads, given the output under review.
pub fn outcome(feedback: &Feedback, attempt: u32, max_attempts: u32, output: &Arc<str>) -> Outcome {
    match feedback.decision {
        // An unedited output sent back by a browser differs only in line endings.
        Decision::Approved => Outcome::Complete(match &feedback.output {
            Some(edit) if !same_text(edit, output) => edit.clone(),
            _ => output.clone(),
        }),
        Decision::Rejected if attempt < max_attempts => Outcome::Retry,
        Decision::Rejected => Outcome::Fail(format!(
            "Changes were requested on the last allowed attempt ({attempt} of {max_attempts})."
        )),
        Decision::RejectedFinal => Outcome::Fail(match &feedback.comment {
            Some(comment) if feedback.timed_out => comment.to_string(),
            Some(comment) => format!("Rejected by the reviewer: {comment}"),
            None => "Rejected by the reviewer.".to_owned(),
        }),
    }
}

/// Checks a decision and applies where it leads, in one step: how the shared database decides
/// (the in-process flow applies the same pieces one node at a time).
pub fn decide(task: &mut Task, feedback: &Feedback) -> Change {
    check_decision(task, feedback)?;
    let output = task.output.clone().unwrap_or_default();
    match outcome(feedback, task.attempt, task.max_attempts, &output) {
        Outcome::Complete(result) => complete(task, feedback, result),
        Outcome::Retry => request_changes(task, feedback),
        Outcome::Fail(reason) => reject(task, feedback, reason),
    }
}

/// `waiting_for_review -> running`, the next attempt: the reviewer asked for changes.
pub fn request_changes(task: &mut Task, feedback: &Feedback) -> Change {
    let decided = record_decision(task, feedback, None)?;
    task.attempt += 1;
    task.output = None;
    task.failed_tries = 0;
    if task.processor.is_outside() {
        // Made outside: the revision waits for the agent (or a worker) to hand it in.
        task.status = TaskStatus::Pending;
        return Ok(vec![decided]);
    }
    task.status = TaskStatus::Running;
    Ok(vec![
        decided,
        AuditEvent::AttemptStarted {
            attempt: task.attempt,
        },
    ])
}

/// `waiting_for_review -> completed` with the final result.
pub fn complete(task: &mut Task, feedback: &Feedback, final_result: Arc<str>) -> Change {
    let decided = record_decision(task, feedback, Some(&final_result))?;
    task.final_result = Some(final_result);
    task.status = TaskStatus::Completed;
    task.outcome = Some(if feedback.timed_out {
        Ended::TimedOut
    } else {
        Ended::Approved
    });
    Ok(vec![decided])
}

/// `waiting_for_review -> failed`: rejected for good, or at the attempt limit.
pub fn reject(task: &mut Task, feedback: &Feedback, reason: String) -> Change {
    let decided = record_decision(task, feedback, None)?;
    task.error = Some(reason.into());
    task.status = TaskStatus::Failed;
    task.outcome = Some(match feedback.decision {
        _ if feedback.timed_out => Ended::TimedOut,
        Decision::RejectedFinal => Ended::Rejected,
        _ => Ended::ChangesExhausted,
    });
    Ok(vec![decided])
}

/// Any non-terminal status `-> failed`: processing could not produce an output.
pub fn fail(task: &mut Task, message: String) -> Change {
    expect_live(task)?;
    let error: Arc<str> = message.into();
    task.error = Some(error.clone());
    task.status = TaskStatus::Failed;
    task.outcome = Some(Ended::ProcessingFailed);
    task.review_deadline = None;
    task.claim = None;
    Ok(vec![AuditEvent::Failed {
        attempt: task.attempt,
        error,
        outside: false,
    }])
}

/// Any non-terminal status `-> cancelled`.
pub fn cancel(task: &mut Task, by: Option<Arc<str>>) -> Change {
    expect_live(task)?;
    task.status = TaskStatus::Cancelled;
    task.outcome = Some(Ended::Cancelled);
    task.cancelled_by = by;
    task.review_deadline = None;
    task.claim = None;
    Ok(vec![AuditEvent::Cancelled {
        attempt: task.attempt,
    }])
}

/// Moves the deadline of the review open on `attempt` (the one under review, if `None`)
/// `secs` later, counted from now if it has passed.
pub fn extend_deadline(task: &mut Task, attempt: Option<u32>, secs: u64) -> Change {
    let attempt = attempt.unwrap_or(task.attempt);
    if task.status != TaskStatus::WaitingForReview || task.attempt != attempt {
        return Err(Refused::NoOpenReview { attempt });
    }
    let Some(deadline) = task.review_deadline else {
        return Err(Refused::NoDeadline);
    };
    let latest = now() + Duration::from_secs(MAX_TIMEOUT_SECS);
    let deadline = deadline
        .max(now())
        .checked_add(time::Duration::seconds(secs.min(MAX_TIMEOUT_SECS) as i64))
        .filter(|deadline| *deadline <= latest)
        .ok_or(Refused::BeyondAYear)?;
    task.review_deadline = Some(deadline);
    Ok(vec![AuditEvent::DeadlineExtended { attempt, deadline }])
}

pub const DEADLINE_PASSED: &str = "The review deadline passed with no decision.";

/// What the review deadline `due` of `attempt` decides when it passes: `None` when its policy
/// decides nothing. Refused when the deadline is no longer `due` (it was extended).
pub fn deadline_decision(
    task: &Task,
    attempt: u32,
    due: OffsetDateTime,
) -> Result<Option<Feedback>, Refused> {
    if task.review_deadline != Some(due) {
        return Err(Refused::DeadlineMoved);
    }
    let policy = task.review_timeout.map(|t| t.policy);
    let (decision, comment) = match policy.unwrap_or_default() {
        TimeoutPolicy::None => return Ok(None),
        TimeoutPolicy::Approve => (Decision::Approved, None),
        TimeoutPolicy::Reject => (
            Decision::Rejected,
            Some(format!("{DEADLINE_PASSED} Try again, more carefully.")),
        ),
        TimeoutPolicy::Fail => (Decision::RejectedFinal, Some(DEADLINE_PASSED.to_owned())),
    };
    Ok(Some(Feedback {
        attempt,
        decision,
        comment: comment.map(Into::into),
        output: None,
        at: now(),
        by: None,
        output_sha256: None,
        timed_out: true,
    }))
}

/// The deadline of `attempt` passed and its policy decides nothing: recorded as such.
pub fn deadline_passed(task: &mut Task, attempt: u32, due: OffsetDateTime) -> Change {
    expect(task, &[TaskStatus::WaitingForReview], attempt)?;
    if task.review_deadline != Some(due) {
        return Err(Refused::DeadlineMoved);
    }
    Ok(vec![AuditEvent::DeadlinePassed { attempt }])
}

/// The deadline `due` of `attempt` passed: applies its policy in one step (the shared
/// database's way; see [`decide`]). `Ok` with no entries changes nothing.
pub fn time_out(task: &mut Task, attempt: u32, due: OffsetDateTime) -> Change {
    expect(task, &[TaskStatus::WaitingForReview], attempt)?;
    match deadline_decision(task, attempt, due)? {
        None => deadline_passed(task, attempt, due),
        Some(feedback) => decide(task, &feedback),
    }
}

pub(super) fn expect(task: &Task, statuses: &[TaskStatus], attempt: u32) -> Result<(), Refused> {
    if !statuses.contains(&task.status) || task.attempt != attempt {
        return Err(Refused::OutOfTurn {
            status: task.status,
            attempt: task.attempt,
            expected: statuses.to_vec(),
            wanted: attempt,
        });
    }
    Ok(())
}

fn expect_live(task: &Task) -> Result<(), Refused> {
    if task.status.is_terminal() {
        return Err(Refused::Ended {
            status: task.status,
        });
    }
    Ok(())
}

/// Moves the output under review into the attempt history with its decision, and says what
/// the audit trail records: the decision, the text decided on and, for an approval, the result.
/// Refuses an approval whose result is not the output or the reviewer's edit of it.
fn record_decision(
    task: &mut Task,
    feedback: &Feedback,
    result: Option<&Arc<str>>,
) -> Result<AuditEvent, Refused> {
    expect(task, &[TaskStatus::WaitingForReview], feedback.attempt)?;
    let output = task.output.clone().unwrap_or_default();
    let reviewed = Digest::of_text(&output);
    if result.is_some()
        && let Some(seen) = feedback.output_sha256
        && seen != reviewed
    {
        return Err(Refused::NotWhatWasReviewed {
            attempt: feedback.attempt,
        });
    }
    let edited_output = match (&feedback.decision, &feedback.output) {
        (Decision::Approved, Some(edit)) if !same_text(edit, &output) => Some(edit.clone()),
        _ => None,
    };
    if let Some(result) = result
        && **result != **edited_output.as_ref().unwrap_or(&output)
    {
        return Err(Refused::NotTheResult);
    }
    let decided = AuditEvent::Decided {
        attempt: feedback.attempt,
        decision: feedback.decision,
        comment: feedback.comment.clone(),
        reviewed_sha256: reviewed,
        result_sha256: result.map(|r| Digest::of_text(r)),
        edited: edited_output.is_some(),
        timed_out: feedback.timed_out,
    };
    task.attempts.push(AttemptRecord {
        attempt: feedback.attempt,
        output,
        decision: Some(feedback.decision),
        comment: feedback.comment.clone(),
        edited_output,
        decided_at: Some(feedback.at),
        decided_by: feedback.by.clone(),
        timed_out: feedback.timed_out,
        // Set once the change has its event's number (see `record`).
        seq: 0,
    });
    task.review_deadline = None;
    Ok(decided)
}

/// Adds what happened to the task's audit trail, each entry chained to the one before.
pub fn record(task: &mut Task, by: Option<Arc<str>>, happened: Vec<AuditEvent>) {
    for event in happened {
        // A lease renewed is saved with the task (its event carries it) but not kept in the
        // trail: a worker renews every few seconds, and the trail would grow without bound.
        if matches!(event, AuditEvent::ClaimRenewed { .. }) {
            continue;
        }
        if let AuditEvent::Decided { attempt, .. } = event
            && let Some(decided) = task
                .attempts
                .iter_mut()
                .rev()
                .find(|a| a.attempt == attempt)
        {
            decided.seq = task.seq;
        }
        let entry = AuditEntry::chain(
            task.history.last().map(|e| &**e),
            task.id,
            task.seq,
            task.updated_at,
            event,
            task.status,
            by.clone(),
        );
        task.history.push(Arc::new(entry));
    }
}

#[cfg(test)]
mod tests;
