//! Several instances on one PostgreSQL database, behaving as one service (`--store postgres`).
//!
//! - Changes are decided in the database ([`Shared::transition`]): each instance queues its
//!   changes and [`write`]s them in batches, one transaction per batch that locks the rows it
//!   changes, so racing instances decide an attempt once; the database numbers every event.
//! - Every instance keeps a replica of the tasks and the event log, filled in sequence order
//!   from the shared journal ([`replicate`]): woken by `NOTIFY` (which carries only the new
//!   number), by its own writes, and by a periodic catch-up, and after reconnecting. Streams,
//!   pages and the inbox read the replica as they read the registry in one process.
//! - A task's work (processing, its review deadline) runs on the one instance that holds its
//!   claim: a lease on the task's row, renewed by a heartbeat ([`keep_claims`]). Work whose lease
//!   ran out (its instance died) is claimed by another and resumed under the same attempt number;
//!   a workflow's own changes are refused once its instance no longer holds the claim.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use futures_util::{StreamExt, future::BoxFuture};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    events::EventLog,
    model::{
        changes::BoxedChange,
        task::{Task, TaskId},
    },
    registry::{Authority, Change, Registry, TransitionError},
    review::ReviewFlow,
    store::{
        Retention, StoreError,
        postgres::{Changed, PgStore, Request, WriteError},
    },
};

/// The longest a change may take in the database before the request is answered 503.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);
/// How long a writer waits for its own change to reach this instance's replica.
const REPLICATION_PATIENCE: Duration = Duration::from_secs(5);
/// How often the journal is read even with no notification (one could be lost with a
/// connection).
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// Journal rows read per query while catching up.
const BATCH: i64 = 1000;

/// The most requests one transaction carries.
const MAX_BATCH: usize = 512;

/// The most requests waiting for the writer. A requester waits for room within its patience
/// (then hears of an outage); a progress report finding no room is dropped. This bounds the
/// memory a slow or hanging database can pin.
const QUEUE: usize = 4 * MAX_BATCH;

/// The writer's end of the queue of changes.
pub type Writes = mpsc::Receiver<Request>;

/// This instance's part in the shared service.
pub struct Shared {
    pub store: Arc<PgStore>,
    /// This instance's name in claims: unique per process.
    pub instance: String,
    /// How long a claim lasts unless renewed.
    pub lease: Duration,
    /// The replica's log: a writer waits on it to see its own change here.
    events: EventLog,
    /// The workflows this instance runs, by task: each holds the task's claim, and its token
    /// stops it when the claim is lost.
    claims: DashMap<TaskId, CancellationToken>,
    /// Every change this instance makes, written in batches by one task ([`write`]).
    writes: mpsc::Sender<Request>,
    /// Wakes the replicator: a change was just committed here.
    kick: Notify,
    /// Is the listener connected (so other instances' changes arrive at once)?
    listening: AtomicBool,
    /// Is the replica still being kept up to date (false once shutdown stopped it)?
    replicating: AtomicBool,
    /// Did this instance fall further behind than the journal keeps? Then only a restart
    /// brings its replica up to date, and readiness says so.
    behind: AtomicBool,
    /// Did the last database call fail? Errors are logged once per outage.
    failing: AtomicBool,
}

impl Shared {
    /// Connects this instance's part; `events` is the replica's log, filled by [`replicate`].
    pub fn new(store: Arc<PgStore>, lease: Duration, events: EventLog) -> (Arc<Self>, Writes) {
        let (writes, queued) = mpsc::channel(QUEUE);
        let instance = format!("{}/{}", std::process::id(), uuid::Uuid::now_v7());
        let shared = Arc::new(Self {
            store,
            instance,
            lease,
            events,
            claims: DashMap::new(),
            writes,
            kick: Notify::new(),
            listening: AtomicBool::new(false),
            replicating: AtomicBool::new(true),
            behind: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        });
        (shared, queued)
    }

    fn worked(&self) {
        self.failing.store(false, Ordering::Relaxed);
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, "the database is not answering");
        }
    }

    /// Applies `change` in the database (see [`Registry::apply`]) and waits until this
    /// instance's replica has it.
    pub async fn transition<F>(
        &self,
        id: TaskId,
        by: Option<Arc<str>>,
        claimed: bool,
        change: F,
    ) -> Result<Arc<Task>, TransitionError>
    where
        F: FnOnce(&mut Task) -> Change + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let request = Request::Change {
            id,
            by,
            claimed,
            change: Box::new(change),
            reply,
        };
        let written = self.queue(request, answer).await;
        match self.written(id, written) {
            Ok((task, changed)) => {
                if changed {
                    self.seen(task.seq).await;
                }
                Ok(task)
            }
            Err(TransitionError::Conflict { message, task }) => {
                // Refused for the state the database holds: show it here too before answering.
                self.seen(task.seq).await;
                Err(TransitionError::Conflict { message, task })
            }
            Err(error) => Err(error),
        }
    }

    /// Adds a new task, with this instance holding the claim on its work.
    pub async fn submit(&self, task: Task) -> Result<Arc<Task>, TransitionError> {
        let id = task.id;
        let (reply, answer) = oneshot::channel();
        let written = self
            .queue(
                Request::Insert {
                    task: Box::new(task),
                    reply,
                },
                answer,
            )
            .await
            .map(|task| (task, true));
        let (task, _) = self.written(id, written)?;
        self.seen(task.seq).await;
        Ok(task)
    }

    /// Queues `request` for the next batch and waits for its answer; a queue that has no room
    /// or does not answer in time (the database hangs), or has stopped, is an outage.
    async fn queue<T>(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<T, WriteError>>,
    ) -> Result<T, WriteError> {
        let outage = |why: &str| WriteError::Store(StoreError::Postgres(why.into()));
        let queued = async {
            if self.writes.send(request).await.is_err() {
                return Err(outage("this instance is stopping"));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(outage("the change was not written (the writer stopped)")))
        };
        tokio::time::timeout(WRITE_PATIENCE, queued)
            .await
            .unwrap_or_else(|_| Err(outage("a change took longer than 10 s")))
    }

    fn written(&self, id: TaskId, result: Changed) -> Result<(Arc<Task>, bool), TransitionError> {
        match result {
            Ok(written) => {
                self.worked();
                Ok(written)
            }
            Err(WriteError::Store(error)) => {
                self.failed(&error);
                Err(TransitionError::Unavailable)
            }
            Err(WriteError::NotFound) => Err(TransitionError::NotFound(id)),
            Err(WriteError::Conflict(message, task)) => {
                self.worked();
                Err(TransitionError::Conflict { message, task })
            }
            Err(WriteError::NotClaimed) => Err(TransitionError::NotClaimed),
            Err(WriteError::KeyBound(task, digest)) => {
                self.worked();
                Err(TransitionError::KeyBound(task, digest))
            }
        }
    }

    /// Waits until the replica holds event `seq` (it was committed, so it will).
    async fn seen(&self, seq: u64) {
        if !self.replicating.load(Ordering::Relaxed) {
            return;
        }
        self.kick.notify_one();
        if !self.events.wait_durable(seq, REPLICATION_PATIENCE).await {
            tracing::warn!(seq, "a committed change has not reached this instance yet");
        }
    }

    /// Waits (briefly) until this instance's replica holds every change committed so far.
    pub async fn catch_up(&self) {
        let head = tokio::time::timeout(Duration::from_secs(2), self.store.head()).await;
        if let Ok(Ok(head)) = head {
            self.seen(head).await;
        }
    }

    /// Queues a progress report of a running attempt, to be written in order; dropped when the
    /// queue is full (nobody waits on it, and the attempt's output follows).
    pub fn progress(&self, id: TaskId, attempt: u32, text: Arc<str>) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.writes
                .try_send(Request::Progress { id, attempt, text })
        {
            metrics::counter!("hitl_pg_progress_dropped_total").increment(1);
        }
    }

    /// Records that this instance runs `id`'s workflow under the claim it holds, stopped by
    /// `token`. False if it runs one already.
    pub fn hold(&self, id: TaskId, token: CancellationToken) -> bool {
        match self.claims.entry(id) {
            dashmap::Entry::Occupied(mut held) if held.get().is_cancelled() => {
                held.insert(token);
                true
            }
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(token);
                true
            }
        }
    }

    /// Lets the claim on `id` go in the database, if this instance still holds it and runs no
    /// workflow for it: after a workflow stopped without failing its task, so that whoever
    /// claims it next resumes the work without waiting for the lease to run out.
    pub async fn release(&self, id: TaskId) {
        if self.claims.contains_key(&id) {
            return;
        }
        let released = self.store.release_one(&self.instance, id);
        match tokio::time::timeout(self.lease / 3, released).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "cannot release the claim; it runs out"),
            Err(_) => tracing::debug!("cannot release the claim in time; it runs out"),
        }
    }

    /// A workflow ended (its token is cancelled): forget it, unless another took its place.
    fn forget(&self, id: TaskId) {
        self.claims.remove_if(&id, |_, token| token.is_cancelled());
    }

    /// Is the database there, and is this instance hearing of changes?
    pub async fn ready(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(3), self.store.check_async()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("the database is not answering ({error})")),
            Err(_) => return Err("the database is not answering (no reply in 3 s)".into()),
        }
        if self.behind.load(Ordering::Relaxed) {
            return Err(
                "this instance missed changes the journal no longer keeps; restart it".into(),
            );
        }
        if !self.listening.load(Ordering::Relaxed) {
            return Err("not yet listening for other instances' changes".into());
        }
        Ok(())
    }

    /// Lets every claim go, so other instances take the work over at once: the last step of a
    /// graceful shutdown.
    pub async fn close(&self) {
        for held in self.claims.iter() {
            held.cancel();
        }
        self.claims.clear();
        match tokio::time::timeout(Duration::from_secs(3), self.store.release(&self.instance)).await
        {
            Ok(Ok(n)) if n > 0 => tracing::info!(tasks = n, "claims released"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot release claims; they run out"),
            Err(_) => tracing::warn!("cannot release claims in time; they run out"),
        }
    }
}

/// The shared database is where this instance's registry sends its changes.
impl Authority for Shared {
    fn transition(
        &self,
        id: TaskId,
        by: Option<Arc<str>>,
        claimed: bool,
        change: BoxedChange,
    ) -> BoxFuture<'_, Result<Arc<Task>, TransitionError>> {
        Box::pin(Shared::transition(self, id, by, claimed, change))
    }

    fn progress(&self, id: TaskId, attempt: u32, text: Arc<str>) {
        Shared::progress(self, id, attempt, text);
    }

    fn ended(&self, id: TaskId, token: CancellationToken, suspended: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The workflow's own token (a child of the task's): its claim is let go.
            token.cancel();
            self.forget(id);
            if suspended {
                // Let the claim go in the database too, so the work is resumed at once if it
                // can be; if the database does not answer, the lease runs out.
                self.release(id).await;
            }
        })
    }
}

/// Keeps this instance's replica up to date with the shared journal until `shutdown`.
pub async fn replicate(shared: Arc<Shared>, registry: Registry, shutdown: CancellationToken) {
    replicate_until(&shared, &registry, &shutdown).await;
    shared.replicating.store(false, Ordering::Relaxed);
    shared.listening.store(false, Ordering::Relaxed);
}

/// After the listener failed to start: waits `wait` (doubled for next time, up to 2 s), then
/// catches up from the pool all the same, since the listener may be all that fails. False if
/// shutdown came first.
async fn back_off(
    shared: &Arc<Shared>,
    registry: &Registry,
    shutdown: &CancellationToken,
    wait: &mut Duration,
) -> bool {
    shared.listening.store(false, Ordering::Relaxed);
    tokio::select! {
        () = shutdown.cancelled() => return false,
        () = tokio::time::sleep(*wait) => {}
    }
    *wait = (*wait * 2).min(Duration::from_secs(2));
    catch_up(shared, registry, shutdown).await;
    true
}

async fn replicate_until(shared: &Arc<Shared>, registry: &Registry, shutdown: &CancellationToken) {
    let mut wait = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let (client, connection) = match shared.store.listener().await {
            Ok(listener) => listener,
            Err(error) => {
                shared.failed(&error);
                if back_off(shared, registry, shutdown, &mut wait).await {
                    continue;
                }
                return;
            }
        };
        let notified = Arc::new(Notify::new());
        let closed = CancellationToken::new();
        let driver = {
            let (notified, closed) = (notified.clone(), closed.clone());
            let mut connection = connection;
            tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => notified.notify_one(),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "the listener's connection failed");
                            break;
                        }
                    }
                }
                closed.cancel();
            })
        };
        let listen = format!("LISTEN \"{}\"", shared.store.channel);
        if let Err(error) = client.batch_execute(&listen).await {
            tracing::warn!(%error, "cannot listen for changes; retrying");
            driver.abort();
            if back_off(shared, registry, shutdown, &mut wait).await {
                continue;
            }
            return;
        }
        shared.listening.store(true, Ordering::Relaxed);
        wait = Duration::from_millis(100);
        tracing::debug!(channel = %shared.store.channel, "listening for changes");
        // Whatever happened while not listening is read now.
        catch_up(shared, registry, shutdown).await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = closed.cancelled() => break,
                () = notified.notified() => {}
                () = shared.kick.notified() => {}
                () = tokio::time::sleep(CATCH_UP_EVERY) => {}
            }
            catch_up(shared, registry, shutdown).await;
        }
        shared.listening.store(false, Ordering::Relaxed);
        driver.abort();
    }
}

/// Reads every journal row after the replica's head into the replica, in order.
async fn catch_up(shared: &Shared, registry: &Registry, shutdown: &CancellationToken) {
    loop {
        let head = registry.events.issued();
        let read = shared.store.events_after(head, BATCH);
        let rows = match tokio::time::timeout(WRITE_PATIENCE, read).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                shared.failed(&error);
                return;
            }
            Err(_) => {
                shared.failed(&"reading the journal took longer than 10 s");
                return;
            }
        };
        shared.worked();
        let full = rows.len() as i64 == BATCH;
        for row in rows {
            let seq = row.event.seq;
            if seq <= registry.events.issued() {
                continue;
            }
            if seq > registry.events.issued() + 1 {
                // The journal no longer holds what this instance missed (pruned by
                // --retain-events while it was cut off): its replica cannot be brought up to date.
                if !shared.behind.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        seq,
                        head = registry.events.issued(),
                        "this instance missed events the journal no longer keeps; restart it"
                    );
                }
                return;
            }
            if !registry.replicate(row.event, row.fresh, shutdown) {
                // A gap: the rows after it are read again next time.
                tracing::warn!(
                    seq,
                    head = registry.events.issued(),
                    "the journal skipped ahead; reading it again"
                );
                return;
            }
        }
        if !full {
            return;
        }
    }
}

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
fn lost_claims(claims: &DashMap<TaskId, CancellationToken>, held: &[TaskId], kept: &[TaskId]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TaskId {
        TaskId(uuid::Uuid::now_v7())
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_write_queue_holds_no_more_and_answers_an_outage() {
        let store = Arc::new(PgStore::unconnected());
        let (shared, mut queued) = Shared::new(store, Duration::from_secs(30), EventLog::new(16));
        // No writer runs: the database hangs.
        for n in 0..QUEUE {
            shared.progress(id(), 1, n.to_string().into());
        }
        shared.progress(id(), 1, "no room".into());
        assert_eq!(
            queued.len(),
            QUEUE,
            "a progress report finding no room is dropped"
        );

        let refused = |_: &mut Task| -> Change { unreachable!("never applied") };
        let waited = shared.transition(id(), None, false, refused).await;
        assert!(
            matches!(waited, Err(TransitionError::Unavailable)),
            "{waited:?}"
        );
        assert_eq!(
            queued.len(),
            QUEUE,
            "a change finding no room in time is not queued"
        );

        // With room again a change is queued, and its requester waits for the writer.
        queued.recv().await.expect("a queued report");
        let change = tokio::spawn({
            let shared = shared.clone();
            async move { shared.transition(id(), None, false, refused).await }
        });
        while queued.len() < QUEUE {
            tokio::task::yield_now().await;
        }
        assert!(!change.is_finished());
        // The writer never answers: its requester hears of an outage after its patience.
        let answer = change.await.expect("no panic");
        assert!(
            matches!(answer, Err(TransitionError::Unavailable)),
            "{answer:?}"
        );
    }

    #[test]
    fn a_claim_taken_during_renewal_is_kept() {
        let claims = DashMap::new();
        let (renewed, lost, during, ended) = (id(), id(), id(), id());
        let tokens: Vec<CancellationToken> = (0..4).map(|_| CancellationToken::new()).collect();
        claims.insert(renewed, tokens[0].clone());
        claims.insert(lost, tokens[1].clone());
        claims.insert(ended, tokens[3].clone());
        tokens[3].cancel();
        let held = vec![renewed, lost];
        // While the renewal is under way, a task is submitted here.
        claims.insert(during, tokens[2].clone());
        lost_claims(&claims, &held, &[renewed]);
        assert!(!tokens[0].is_cancelled() && claims.contains_key(&renewed));
        assert!(tokens[1].is_cancelled() && !claims.contains_key(&lost));
        assert!(!tokens[2].is_cancelled() && claims.contains_key(&during));
        assert!(!claims.contains_key(&ended));
    }
}
