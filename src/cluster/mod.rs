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
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod replicate;
mod work;

pub use replicate::replicate;
pub use work::{keep_claims, write};

use crate::model::audit::Digest;
use crate::{
    events::EventLog,
    model::{
        changes::BoxedChange,
        task::{Task, TaskId},
    },
    registry::{Authority, Change, TransitionError},
    store::{
        StoreError,
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

    /// Applies `change` in the database (see `Registry::apply`) and waits until this
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
            Err(TransitionError::Conflict { refused, task }) => {
                // Refused for the state the database holds: show it here too before answering.
                self.seen(task.seq).await;
                Err(TransitionError::Conflict { refused, task })
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
            Err(WriteError::Conflict(refused, task)) => {
                self.worked();
                Err(TransitionError::Conflict { refused, task })
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
    pub fn progress(&self, id: TaskId, attempt: u32, text: Arc<str>, claim: Option<Digest>) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.writes.try_send(Request::Progress {
            id,
            attempt,
            text,
            claim,
        }) {
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

    fn progress(&self, id: TaskId, attempt: u32, text: Arc<str>, claim: Option<Digest>) {
        Shared::progress(self, id, attempt, text, claim);
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

#[cfg(test)]
mod tests;
