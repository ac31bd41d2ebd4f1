//! The process step of a task made outside hitl: no processor runs; the step waits, holding no
//! thread, for the agent or a worker to hand the attempt in, and lets a worker's claim go when
//! its lease runs out (here, where the task's workflow runs: one instance for each task, also
//! with a shared database; after a restart a lease that ran out meanwhile is let go at once).

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    engine::NodeError,
    model::task::{TaskId, TaskStatus, now},
    registry::{Registry, TransitionError, changes},
};

/// Waits until an attempt of task `id`, `attempt` or a later one, is handed in, and returns
/// which and its output. The task may be ahead of its workflow (an attempt handed in and
/// decided before the workflow got here): it is followed to where it is. Fails (fatally:
/// nothing to retry) only when the task ended or is gone.
pub async fn handed_in(
    registry: &Registry,
    id: TaskId,
    attempt: u32,
) -> Result<(u32, Arc<str>), NodeError> {
    let gone = || NodeError::fatal("the task is gone");
    let mut changes = registry.watch(id).ok_or_else(gone)?;
    loop {
        let task = registry.get(id).ok_or_else(gone)?;
        if task.status.is_terminal() || task.attempt < attempt {
            return Err(NodeError::fatal("the task moved on"));
        }
        if task.status == TaskStatus::WaitingForReview {
            return Ok((task.attempt, task.output.clone().unwrap_or_default()));
        }
        // A claim's lease, on the runtime's clock (rounded up: never early).
        let lease = task
            .claim
            .as_ref()
            .filter(|_| task.status == TaskStatus::Running)
            .map(|claim| {
                // Rounded up, a millisecond past: never early (`expire_claim` refuses early).
                let millis = (claim.lease_expires_at - now()).whole_milliseconds().max(0) + 1;
                let after = Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX));
                (
                    Instant::now() + after,
                    claim.token_sha256,
                    claim.lease_expires_at,
                )
            });
        let sleep = async {
            match lease {
                Some((at, ..)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(gone());
                }
            }
            () = sleep => {
                let (_, token, due) = lease.expect("slept on a lease");
                let expired = registry
                    .apply(id, None, true, move |task| changes::expire_claim(task, &token, due))
                    .await;
                match expired {
                    Ok(_) => tracing::info!(%id, attempt = task.attempt, "a worker's lease ran out; the attempt is pending again"),
                    // Renewed, handed in or given up at the same moment: that stands.
                    Err(TransitionError::Conflict { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
}
