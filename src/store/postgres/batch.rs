//! Group commit for the shared store: every change an instance makes queues here, and one
//! transaction carries whatever has queued while the previous one was committing.
//!
//! The sequence counter's row lock makes transactions commit one after another (that is what
//! keeps event numbers in commit order), so one change per transaction would pay one fsync per
//! change, and the instances would queue behind each other's. Batched, a busy instance pays one
//! fsync for many changes. Within a batch the task rows are locked in id order (so two
//! instances' batches never deadlock), then the counter; each change is decided against the
//! task as the batch has left it, by the registry's rules.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::sync::oneshot;

use super::{
    PgStore, WriteError,
    write::{Events, Keys, NewRows},
};
use crate::store::unix_ms;
use crate::{
    model::audit::Digest,
    model::changes,
    model::task::{Task, TaskId, now},
    store::StoreError,
};

pub use crate::model::changes::BoxedChange;

/// What a change answers: the task after it (and whether it changed), or why it was refused.
pub type Changed = Result<(Arc<Task>, bool), WriteError>;

/// One queued write.
pub enum Request {
    /// Apply `change` to task `id`; `claimed`: only if this instance holds the task's claim.
    Change {
        id: TaskId,
        by: Option<Arc<str>>,
        claimed: bool,
        change: BoxedChange,
        reply: oneshot::Sender<Changed>,
    },
    /// Add a new task, with this instance holding the claim on its work.
    Insert {
        task: Box<Task>,
        reply: oneshot::Sender<Result<Arc<Task>, WriteError>>,
    },
    /// An intermediate result of a running attempt (nobody waits on it).
    Progress {
        id: TaskId,
        attempt: u32,
        text: Arc<str>,
        /// Reported by the worker holding this claim, on whichever instance it asked.
        claim: Option<Digest>,
    },
}

impl Request {
    /// Did its requester stop waiting (and was told nothing changed)? Then it must not be
    /// applied. A progress report has nobody waiting.
    pub fn abandoned(&self) -> bool {
        match self {
            Request::Change { reply, .. } => reply.is_closed(),
            Request::Insert { reply, .. } => reply.is_closed(),
            Request::Progress { .. } => false,
        }
    }
}

/// An answer held until the batch's fate is known.
enum Reply {
    Change(oneshot::Sender<Changed>, Changed),
    Insert(
        oneshot::Sender<Result<Arc<Task>, WriteError>>,
        Result<Arc<Task>, WriteError>,
    ),
}

impl PgStore {
    /// Writes `batch` in one transaction as `owner`, then answers every request in it. Returns
    /// the newest event number written (`None` if the batch wrote none), or why it failed (every
    /// request is then answered with that failure).
    pub async fn commit(
        &self,
        owner: &str,
        lease: Duration,
        batch: Vec<Request>,
    ) -> Result<Option<u64>, StoreError> {
        let mut replies = Vec::with_capacity(batch.len());
        let written = self.write_batch(owner, lease, batch, &mut replies).await;
        match &written {
            Ok(_) => {
                for reply in replies {
                    match reply {
                        Reply::Change(reply, changed) => drop(reply.send(changed)),
                        Reply::Insert(reply, task) => drop(reply.send(task)),
                    }
                }
            }
            Err(error) => {
                let failed = || WriteError::Store(StoreError::Postgres(error.to_string()));
                for reply in replies {
                    match reply {
                        Reply::Change(reply, _) => drop(reply.send(Err(failed()))),
                        Reply::Insert(reply, _) => drop(reply.send(Err(failed()))),
                    }
                }
            }
        }
        written
    }

    async fn write_batch(
        &self,
        owner: &str,
        lease: Duration,
        batch: Vec<Request>,
        replies: &mut Vec<Reply>,
    ) -> Result<Option<u64>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut ids: Vec<String> = batch
            .iter()
            .filter_map(|request| match request {
                Request::Change { id, .. } | Request::Progress { id, .. } => Some(id.to_string()),
                Request::Insert { .. } => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        // The task rows in id order, then the counter: the same order in every transaction.
        let mut tasks: HashMap<TaskId, (Task, Option<String>)> = HashMap::new();
        if !ids.is_empty() {
            let lock = tx
                .prepare_cached(
                    "SELECT id, seq, body, history, owner FROM hitl_tasks
                     WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                )
                .await?;
            let rows = tx.query(&lock, &[&ids]).await?;
            for row in rows {
                let task =
                    super::decode_task(row.get::<_, i64>(1) as u64, row.get(2), Some(row.get(3)))?;
                tasks.insert(task.id, (task, row.get(4)));
            }
        }
        let counter = tx
            .prepare_cached("SELECT seq FROM hitl_seq FOR UPDATE")
            .await?;
        let head: i64 = tx.query_one(&counter, &[]).await?.get(0);
        // With the counter held, every other batch has committed or waits: a submission key
        // found unbound here stays so until this batch commits it.
        let mut asked = Keys::default();
        for request in &batch {
            if let Request::Insert { task, .. } = request
                && let Some(key) = &task.submit_key
            {
                asked.push(key, task.id);
            }
        }
        let mut keys = self.bound_keys(&tx, &asked).await?;
        let mut new_keys = Keys::default();
        let mut seq = head as u64;
        let mut events = Events::default();
        let mut made = NewRows::default();
        let (mut touched, mut inserted) = (HashSet::new(), Vec::new());
        for request in batch {
            if request.abandoned() {
                // Its requester gave up waiting and was told nothing changed: so nothing does.
                continue;
            }
            match request {
                Request::Change {
                    id,
                    by,
                    claimed,
                    change,
                    reply,
                } => {
                    let changed = match tasks.get_mut(&id) {
                        None => Err(WriteError::NotFound),
                        Some((_, holder)) if claimed && holder.as_deref() != Some(owner) => {
                            Err(WriteError::NotClaimed)
                        }
                        Some((task, _)) => {
                            let mut next = task.clone();
                            match change(&mut next) {
                                Err(refused) => {
                                    Err(WriteError::Conflict(refused, Arc::new(task.clone())))
                                }
                                Ok(happened) if happened.is_empty() => {
                                    Ok((Arc::new(task.clone()), false))
                                }
                                Ok(happened) => {
                                    seq += 1;
                                    next.updated_at = now();
                                    next.seq = seq;
                                    let before = next.history.len();
                                    changes::record(&mut next, by, happened);
                                    let at = now();
                                    events.push(seq, at, &next, None, &next.history[before..])?;
                                    made.plan(self.outgoing.get(), seq, at, &next);
                                    *task = next.clone();
                                    touched.insert(id);
                                    Ok((Arc::new(next), true))
                                }
                            }
                        }
                    };
                    replies.push(Reply::Change(reply, changed));
                }
                Request::Insert { task, reply } => {
                    if let Some(key) = &task.submit_key {
                        let held = (key.owner.clone(), key.key.clone(), key.scope.clone());
                        if let Some((id, digest)) = keys.get(&held) {
                            let bound = WriteError::KeyBound(*id, digest.clone());
                            replies.push(Reply::Insert(reply, Err(bound)));
                            continue;
                        }
                        keys.insert(held, (task.id, key.digest.clone()));
                        new_keys.push(key, task.id);
                    }
                    seq += 1;
                    let mut task = Task { seq, ..*task };
                    let by = task.submitted_by.clone();
                    let submitted = changes::submitted(&mut task);
                    changes::record(&mut task, by, submitted);
                    let at = now();
                    events.push(seq, at, &task, None, &task.history)?;
                    made.plan(self.outgoing.get(), seq, at, &task);
                    inserted.push(task.id);
                    tasks.insert(task.id, (task.clone(), Some(owner.to_owned())));
                    replies.push(Reply::Insert(reply, Ok(Arc::new(task))));
                }
                Request::Progress {
                    id,
                    attempt,
                    text,
                    claim,
                } => {
                    // A report after its attempt ended, or from a workflow (or a worker) that
                    // lost its claim, has nowhere to go: it is dropped.
                    let held = match &claim {
                        Some(claim) => tasks
                            .get(&id)
                            .is_some_and(|(task, _)| changes::holds(task, claim).is_ok()),
                        None => tasks
                            .get(&id)
                            .is_some_and(|(_, holder)| holder.as_deref() == Some(owner)),
                    };
                    if let Some((task, _)) = tasks.get(&id)
                        && held
                        && changes::progress(task, attempt).is_ok()
                    {
                        seq += 1;
                        events.push(seq, now(), task, Some((attempt, &text)), &[])?;
                    }
                }
            }
        }
        if seq == head as u64 {
            tx.commit().await?;
            return Ok(None);
        }
        self.write_rows(&tx, owner, lease, &tasks, &touched, &inserted, &events, seq)
            .await?;
        let delivers = !made.is_empty();
        made.insert(&tx, self.outgoing.get()).await?;
        if !new_keys.owner.is_empty() {
            let insert = tx
                .prepare_cached(
                    // A key past its day but not yet pruned is taken over (`bound_keys` did
                    // not count it); a live one never reaches here.
                    "INSERT INTO hitl_submit_keys AS k (owner, key, scope, task_id, digest, at_ms)
                     SELECT *, $6::bigint FROM UNNEST($1::text[], $2::text[], $3::text[],
                                                      $4::text[], $5::text[])
                     ON CONFLICT (owner, key, scope) DO UPDATE
                         SET task_id = excluded.task_id, digest = excluded.digest,
                             at_ms = excluded.at_ms
                         WHERE k.at_ms < $7",
                )
                .await?;
            let k = &new_keys;
            tx.execute(
                &insert,
                &[
                    &k.owner,
                    &k.key,
                    &k.scope,
                    &k.task_id,
                    &k.digest,
                    &unix_ms(now()),
                    &crate::store::oldest_key_ms(),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        if delivers && let Some(outgoing) = self.outgoing.get() {
            outgoing.wake.notify_one();
        }
        Ok(Some(seq))
    }
}
