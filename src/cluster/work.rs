//! The work an instance does for the cluster: its write queue drained in batches, its claims
//! renewed (and those lost given up), expired claims taken over, and the journal pruned.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::{
    model::task::TaskId,
    registry::Registry,
    review::ReviewFlow,
    store::{Retention, postgres::Request},
};

/// The longest a change may take in the database before the request is answered 503.
use super::*;

/// Writes what this instance queues, each batch in one transaction.
///
/// It runs until the instance is gone (its queue closes), not until shutdown: a request still
/// in flight when shutdown begins is written, not refused.
pub async fn write(shared: std::sync::Weak<Shared>, mut writes: Writes) {
    while let Some(first) = writes.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // While the database is failing, progress reports (nobody waits on them) are dropped
        // rather than piled up, and requests whose requester gave up are not sent.
        let keep = |request: &Request| {
            let stale = match request {
                Request::Progress { .. } => shared.failing.load(Ordering::Relaxed),
                _ => request.abandoned(),
            };
            !stale
        };
        let mut batch: Vec<Request> = Vec::new();
        if keep(&first) {
            batch.push(first);
        }
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(request) if keep(&request) => batch.push(request),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let size = batch.len();
        let committed = shared.store.commit(&shared.instance, shared.lease, batch);
        match tokio::time::timeout(WRITE_PATIENCE, committed).await {
            Ok(Ok(written)) => {
                shared.worked();
                metrics::histogram!("hitl_pg_batch_requests").record(size as f64);
                if written.is_some() {
                    shared.kick.notify_one();
                }
            }
            Ok(Err(error)) => shared.failed(&error),
            // The requests' answers were dropped with the batch: each is told of the outage.
            Err(_) => shared.failed(&"a batch of changes took longer than 10 s"),
        }
    }
}

/// Renews this instance's claims, stops the workflows whose claims are lost, and takes over
/// the work whose claims ran out, until `shutdown`.
pub async fn keep_claims(
    shared: Arc<Shared>,
    registry: Registry,
    flow: Arc<ReviewFlow>,
    retention: Retention,
    shutdown: CancellationToken,
) {
    let every = shared.lease / 3;
    let mut last_renewed = tokio::time::Instant::now();
    let pruning = tokio::spawn(prune(shared.clone(), retention, shutdown.clone()));
    loop {
        // Renew what is held.
        let held: Vec<TaskId> = shared
            .claims
            .iter()
            .filter(|held| !held.is_cancelled())
            .map(|held| *held.key())
            .collect();
        let names: Vec<String> = held.iter().map(ToString::to_string).collect();
        // The lease counts from when the renewal was sent: the database's clock starts it
        // after that.
        let sent = tokio::time::Instant::now();
        let renewed = shared.store.renew(&shared.instance, &names, shared.lease);
        match tokio::time::timeout(every, renewed).await {
            Ok(Ok(kept)) => {
                shared.worked();
                last_renewed = sent;
                lost_claims(&shared.claims, &held, &kept);
            }
            Ok(Err(error)) => {
                shared.failed(&error);
                if last_renewed.elapsed() + every >= shared.lease {
                    // The lease runs out before the next renewal: another instance may take
                    // these over. Stop, and claim them again (if they are still free) once the
                    // database is back.
                    drop_claims(&shared);
                }
            }
            Err(_) => {
                // A renewal that hangs may never be applied, and nothing says how long the
                // database will take: stop at once rather than run on past the lease.
                shared.failed(&"renewing the claims took longer than a third of the lease");
                drop_claims(&shared);
            }
        }
        // Take over what nobody holds.
        if shared.failing.load(Ordering::Relaxed) {
            // Wait for the database to answer again.
        } else {
            let claimed = shared
                .store
                .claim_expired(&shared.instance, shared.lease, 100);
            match tokio::time::timeout(every, claimed).await {
                Ok(Ok(ids)) => {
                    if !ids.is_empty() {
                        // The replica may not have these tasks yet if they are brand new, or
                        // may show them as they were before their last change (a workflow
                        // resumed from a stale state would have its first change refused):
                        // catch up with everything committed before the claim first.
                        shared.catch_up().await;
                    }
                    for id in ids {
                        take_over(&shared, &registry, &flow, id).await;
                    }
                }
                Ok(Err(error)) => shared.failed(&error),
                // Any claims it took run out unrenewed, and are claimed again.
                Err(_) => {
                    shared.failed(&"claiming expired work took longer than a third of the lease")
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    pruning.abort();
}

/// Stops every workflow this instance runs: their claims may be lost.
fn drop_claims(shared: &Shared) {
    for held in shared.claims.iter() {
        held.cancel();
    }
    shared.claims.clear();
}

/// Prunes old events every 30 s until `shutdown`, apart from the claims' heartbeat, which a
/// slow prune must not hold up.
async fn prune(shared: Arc<Shared>, retention: Retention, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        if let Err(error) = shared.store.prune_async(retention).await {
            tracing::warn!(%error, "cannot prune old events");
        }
    }
}

/// Stops the workflows whose claims a renewal of `held` did not keep, and forgets the ones
/// that ended. A claim taken while the renewal was under way (a task submitted here, or taken
/// over) was not in `held`, and is kept: its lease is new.
pub(super) fn lost_claims(
    claims: &DashMap<TaskId, CancellationToken>,
    held: &[TaskId],
    kept: &[TaskId],
) {
    let kept: std::collections::HashSet<&TaskId> = kept.iter().collect();
    for id in held {
        if !kept.contains(id) {
            claims.remove_if(id, |_, token| {
                token.cancel();
                true
            });
        }
    }
    claims.retain(|_, token| !token.is_cancelled());
}

/// Resumes the work of a task whose claim this instance just took.
async fn take_over(shared: &Shared, registry: &Registry, flow: &Arc<ReviewFlow>, id: TaskId) {
    // The replica caught up with the claim (see `keep_claims`).
    let Some(handle) = registry.claimed_handle(id) else {
        tracing::warn!(%id, "claimed a task this instance does not know yet; it will run out and be claimed again");
        return;
    };
    if handle.task.status.is_terminal() {
        return;
    }
    if shared.hold(id, handle.cancel.clone()) {
        tracing::info!(%id, attempt = handle.task.attempt, status = handle.task.status.as_str(), "took over a task's work");
        flow.resume(handle);
    }
}
