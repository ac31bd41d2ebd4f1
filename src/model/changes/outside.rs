//! The rules of work done outside hitl: an agent hands in an attempt, a worker claims one,
//! renews its lease, gives it up, or loses it when the lease runs out; and a task whose
//! processing failed is started again.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Change, Refused, expect, open_review};
use crate::model::{
    audit::{AuditEvent, Digest},
    task::{Claim, Outcome, Task, TaskStatus, now},
};

/// Could a worker claim this task's attempt now? An outside task, pending, held by nobody.
pub fn claimable(task: &Task) -> bool {
    task.processor.is_outside() && task.status == TaskStatus::Pending && task.claim.is_none()
}

/// Is `token_sha256` the claim on the attempt now running, with its lease not yet run out?
pub fn holds(task: &Task, token_sha256: &Digest) -> Result<(), Refused> {
    match &task.claim {
        Some(claim)
            if task.status == TaskStatus::Running
                && claim.token_sha256 == *token_sha256
                && claim.lease_expires_at >= now() =>
        {
            Ok(())
        }
        _ => Err(Refused::ClaimLost),
    }
}

/// An outside attempt's output handed in: the task waits for review of it. Taken only for the
/// attempt the task waits for, while it is `pending` (no claim may be given then), or `running`
/// under the claim given.
pub fn post_attempt(
    task: &mut Task,
    attempt: u32,
    output: Arc<str>,
    claim: Option<&Digest>,
) -> Change {
    if !task.processor.is_outside() {
        return Err(Refused::NotOutside);
    }
    let awaited = matches!(task.status, TaskStatus::Pending | TaskStatus::Running);
    if !awaited || task.attempt != attempt {
        // A claim on an attempt that moved on is lost, whatever else is wrong.
        if claim.is_some()
            && !task
                .claim
                .as_ref()
                .is_some_and(|c| Some(&c.token_sha256) == claim)
        {
            return Err(Refused::ClaimLost);
        }
        return Err(Refused::NotAwaitingAttempt {
            attempt,
            status: task.status,
            current: task.attempt,
        });
    }
    match (claim, task.status) {
        (Some(claim), _) => holds(task, claim)?,
        (None, TaskStatus::Running) => return Err(Refused::ClaimHeld { attempt }),
        (None, _) => {}
    }
    task.failed_tries = 0;
    Ok(vec![open_review(task, output, true)])
}

/// A worker claims the attempt the task waits for, until `lease_expires_at`: the task is
/// `running` under the claim.
pub fn claim(
    task: &mut Task,
    attempt: u32,
    token_sha256: Digest,
    by: Option<Arc<str>>,
    lease_expires_at: OffsetDateTime,
) -> Change {
    if !task.processor.is_outside() {
        return Err(Refused::NotOutside);
    }
    expect(task, &[TaskStatus::Pending], attempt)?;
    if task.claim.is_some() {
        return Err(Refused::ClaimHeld { attempt });
    }
    task.status = TaskStatus::Running;
    task.claim = Some(Claim {
        attempt,
        token_sha256,
        by,
        claimed_at: now(),
        lease_expires_at,
    });
    Ok(vec![AuditEvent::Claimed {
        attempt,
        token_sha256,
        lease_expires_at,
    }])
}

/// The worker holding the claim keeps it until `lease_expires_at`.
pub fn renew(task: &mut Task, token_sha256: &Digest, lease_expires_at: OffsetDateTime) -> Change {
    holds(task, token_sha256)?;
    let claim = task.claim.as_mut().expect("held, so present");
    claim.lease_expires_at = lease_expires_at;
    Ok(vec![AuditEvent::ClaimRenewed {
        attempt: claim.attempt,
        lease_expires_at,
    }])
}

/// The claim's lease, due at `due`, ran out without renewal: the attempt is `pending` again,
/// for another worker. Refused if the claim was renewed (or let go) meanwhile.
pub fn expire_claim(task: &mut Task, token_sha256: &Digest, due: OffsetDateTime) -> Change {
    let Some(claim) = task
        .claim
        .as_ref()
        .filter(|c| task.status == TaskStatus::Running && c.token_sha256 == *token_sha256)
    else {
        return Err(Refused::ClaimLost);
    };
    // Renewed meanwhile, or (timers and clocks differ, and with several instances another
    // one may apply this) not yet run out.
    if claim.lease_expires_at != due || claim.lease_expires_at > now() {
        return Err(Refused::DeadlineMoved);
    }
    let attempt = claim.attempt;
    task.claim = None;
    task.status = TaskStatus::Pending;
    Ok(vec![AuditEvent::ClaimReleased {
        attempt,
        token_sha256: *token_sha256,
        expired: true,
        error: None,
    }])
}

/// The worker holding the claim gives up with `error`. With `retry`, and fewer than
/// `max_retries` tries given up on this attempt, the attempt is `pending` again for another
/// worker; otherwise the task ends `failed` (processing failed).
pub fn give_up(
    task: &mut Task,
    token_sha256: &Digest,
    error: Arc<str>,
    retry: bool,
    max_retries: u32,
) -> Change {
    holds(task, token_sha256)?;
    if retry && task.failed_tries < max_retries {
        let attempt = task.attempt;
        task.claim = None;
        task.status = TaskStatus::Pending;
        task.failed_tries += 1;
        return Ok(vec![AuditEvent::ClaimReleased {
            attempt,
            token_sha256: *token_sha256,
            expired: false,
            error: Some(error),
        }]);
    }
    let message = if retry {
        format!("{error} (given up after {max_retries} retries)")
    } else {
        error.to_string()
    };
    let mut failed = super::fail(task, message)?;
    for event in &mut failed {
        if let AuditEvent::Failed { outside, .. } = event {
            *outside = true;
        }
    }
    Ok(failed)
}

/// A task that failed because processing failed starts its attempt again (`pending`).
pub fn retry(task: &mut Task) -> Change {
    if task.status != TaskStatus::Failed || task.outcome != Some(Outcome::ProcessingFailed) {
        return Err(Refused::NotRetryable {
            status: task.status,
        });
    }
    task.status = TaskStatus::Pending;
    task.outcome = None;
    task.error = None;
    task.failed_tries = 0;
    task.claim = None;
    Ok(vec![AuditEvent::Retried {
        attempt: task.attempt,
    }])
}
