//! The live tasks: a `DashMap` from id to task, and the guarded transitions that change them.
//!
//! Every change goes through [`Registry::transition`]: it holds the task's shard lock while it
//! checks the status the change expects, swaps in the new task and publishes the event, so no two
//! changes to one task interleave and each task's events are in sequence order. The lock is never
//! held across an `.await`. Lock order is always map shard, then event log.
//!
//! The rules themselves are pure functions in [`changes`]. With `--store postgres` the same rules
//! run in the shared database instead (`Registry::apply` sends them there), and the map is a
//! replica that [`Registry::replicate`] fills from the database's journal, in order.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use dashmap::DashMap;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod authority;
mod error;
mod finished;
mod replica;

pub use error::{Denied, TransitionError};
use finished::{Finished, StatusCounts};

pub use authority::Authority;

use crate::{
    events::{EventKind, EventLog},
    model::audit::Digest,
    model::task::{Feedback, Task, TaskId, TaskStatus, now},
};

pub use crate::model::changes::{self, Change};

type Result<T, E = TransitionError> = std::result::Result<T, E>;

/// Cheap-clone handle to the live tasks and the event log.
#[derive(Clone)]
pub struct Registry {
    tasks: Arc<DashMap<TaskId, LiveTask>>,
    /// How many tasks are not finished (or are reserved to be submitted): what the live-task
    /// limit counts, kept here so a submission need not scan the map.
    unfinished: Arc<AtomicUsize>,
    /// How many tasks are in each status, kept as they change so the inbox can show the counts
    /// on every page and every live update without scanning the map.
    by_status: Arc<StatusCounts>,
    /// Finished tasks in the order they finished, and how many (or how old) stay in memory.
    finished: Arc<Mutex<Finished>>,
    /// How many outside attempts wait for a worker to claim them: waiting claims look for one
    /// only when there is one.
    claimable: Arc<AtomicUsize>,
    /// Where every transition is published.
    pub events: EventLog,
    /// With `--store postgres`: the database every change is decided in; the map is then a
    /// replica, filled in order from the shared journal.
    authority: Option<Arc<dyn Authority>>,
}

struct LiveTask {
    task: Arc<Task>,
    /// Sequence number of this task's newest event: one-task streams and waiters watch it.
    changed: watch::Sender<u64>,
    /// Cancelled when the task is cancelled or the server shuts down; stops its workflow.
    cancel: CancellationToken,
}

impl LiveTask {
    /// A task's slot in the map and the handle its workflow follows it by.
    fn new(task: Arc<Task>, shutdown: &CancellationToken) -> (Self, TaskHandle) {
        let cancel = shutdown.child_token();
        let live = Self {
            task: task.clone(),
            changed: watch::Sender::new(task.seq),
            cancel: cancel.clone(),
        };
        let handle = TaskHandle { task, cancel };
        (live, handle)
    }
}

/// What a task's workflow needs to follow its task.
pub struct TaskHandle {
    pub task: Arc<Task>,
    pub cancel: CancellationToken,
}

impl Registry {
    pub fn new(events: EventLog) -> Self {
        Self {
            tasks: Arc::new(DashMap::new()),
            unfinished: Arc::default(),
            by_status: Arc::default(),
            finished: Arc::default(),
            claimable: Arc::default(),
            events,
            authority: None,
        }
    }

    /// A replica of the tasks in a shared database: changes are decided there, and `events`
    /// is filled from its journal by [`Self::replicate`].
    pub fn with_authority(events: EventLog, authority: Arc<dyn Authority>) -> Self {
        Self {
            authority: Some(authority),
            ..Self::new(events)
        }
    }

    /// Adds a new pending task and publishes its first event. Its place among the unfinished
    /// tasks was taken with [`Self::reserve`].
    pub fn insert(&self, task: Task, shutdown: &CancellationToken) -> TaskHandle {
        // The vacant entry holds the shard lock while the event is published, so whoever reads
        // the event and looks the task up finds it.
        let dashmap::Entry::Vacant(slot) = self.tasks.entry(task.id) else {
            unreachable!("task ids are fresh UUID v7s");
        };
        let by = task.submitted_by.clone();
        let event = self.events.publish(EventKind::Status, |seq| {
            let mut task = Task { seq, ..task };
            let submitted = changes::submitted(&mut task);
            changes::record(&mut task, by, submitted);
            Arc::new(task)
        });
        let (live, handle) = LiveTask::new(event.task.clone(), shutdown);
        self.by_status.add(live.task.status);
        self.count_claimable(None, Some(&live.task));
        slot.insert(live);
        handle
    }

    /// Keeps the count of claimable attempts as a task changes from `old` to `new` (`None`:
    /// absent).
    pub(super) fn count_claimable(&self, old: Option<&Task>, new: Option<&Task>) {
        let was = old.is_some_and(changes::claimable);
        let is = new.is_some_and(changes::claimable);
        match (was, is) {
            (false, true) => self.claimable.fetch_add(1, Ordering::AcqRel),
            (true, false) => self.claimable.fetch_sub(1, Ordering::AcqRel),
            _ => 0,
        };
    }

    /// How many outside attempts wait for a worker to claim them.
    pub fn claimable(&self) -> usize {
        self.claimable.load(Ordering::Acquire)
    }

    /// Holds a place for one more unfinished task, if fewer than `max` exist; the place is the
    /// new task's once [`Self::insert`] adds it.
    pub fn reserve(&self, max: usize) -> Result<()> {
        if self.unfinished.fetch_add(1, Ordering::AcqRel) >= max {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
            return Err(TransitionError::Full { max });
        }
        Ok(())
    }

    /// Tasks not yet finished.
    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    /// Puts back a task recovered from the store, publishing nothing: its events are already in
    /// the log.
    pub fn restore(&self, task: Arc<Task>, shutdown: &CancellationToken) -> TaskHandle {
        if task.status.is_terminal() {
            self.finished_order()
                .order
                .push_back((task.id, task.updated_at, task.seq));
        } else {
            self.unfinished.fetch_add(1, Ordering::AcqRel);
        }
        let (live, handle) = LiveTask::new(task, shutdown);
        self.by_status.add(live.task.status);
        self.count_claimable(None, Some(&live.task));
        if let Some(replaced) = self.tasks.insert(handle.task.id, live) {
            self.by_status.remove(replaced.task.status);
            self.count_claimable(Some(&replaced.task), None);
        }
        handle
    }

    /// How many tasks are in each status, in the order of [`TaskStatus::ALL`]: read from counters
    /// kept as tasks change, so it costs the same with 10 tasks or 100,000.
    pub fn count_by_status(&self) -> [usize; TaskStatus::ALL.len()] {
        self.by_status.read()
    }

    pub fn get(&self, id: TaskId) -> Option<Arc<Task>> {
        self.tasks.get(&id).map(|live| live.task.clone())
    }

    /// Calls `visit` with every task and its id, in no particular order: how the inbox filters
    /// and pages without copying the map. `visit` runs under a shard's read lock, so it must be
    /// quick and must not call back into the registry.
    pub fn for_each(&self, mut visit: impl FnMut(TaskId, &Arc<Task>)) {
        for live in self.tasks.iter() {
            visit(*live.key(), &live.task);
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// A handle to follow a task by, for a workflow started again (a retry).
    pub fn handle(&self, id: TaskId) -> Option<TaskHandle> {
        let live = self.tasks.get(&id)?;
        Some(TaskHandle {
            task: live.task.clone(),
            cancel: live.cancel.clone(),
        })
    }

    /// A receiver that changes with every event of this task.
    pub fn watch(&self, id: TaskId) -> Option<watch::Receiver<u64>> {
        self.tasks.get(&id).map(|live| live.changed.subscribe())
    }

    /// Applies `change` to the task if it allows it, then publishes the new state with what
    /// `change` says happened added to the task's audit trail, as done `by` someone. A change
    /// that records nothing publishes nothing.
    fn transition(
        &self,
        id: TaskId,
        by: Option<Arc<str>>,
        change: impl FnOnce(&mut Task) -> Change,
    ) -> Result<Arc<Task>> {
        let mut live = self
            .tasks
            .get_mut(&id)
            .ok_or(TransitionError::NotFound(id))?;
        let mut task = (*live.task).clone();
        let happened = match change(&mut task) {
            Ok(happened) if happened.is_empty() => return Ok(live.task.clone()),
            Ok(happened) => happened,
            Err(refused) => {
                return Err(TransitionError::Conflict {
                    refused,
                    task: live.task.clone(),
                });
            }
        };
        task.updated_at = now();
        let finishes = task.status.is_terminal() && !live.task.status.is_terminal();
        if finishes {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
        } else if live.task.status.is_terminal() && !task.status.is_terminal() {
            // Started again (a retry after processing failed).
            self.unfinished.fetch_add(1, Ordering::AcqRel);
        }
        self.by_status.moved(live.task.status, task.status);
        self.count_claimable(Some(&live.task), Some(&task));
        let event = self.events.publish(EventKind::Status, |seq| {
            let mut task = Task { seq, ..task };
            changes::record(&mut task, by, happened);
            Arc::new(task)
        });
        live.task = event.task.clone();
        live.changed.send_replace(event.seq);
        if live.task.status == TaskStatus::Cancelled {
            // Stops the task's workflow (a running attempt is dropped at once).
            live.cancel.cancel();
        }
        drop(live);
        if finishes {
            self.finished_order()
                .order
                .push_back((id, event.at, event.seq));
            self.evict_finished();
        }
        Ok(event.task.clone())
    }

    /// Applies `change` where this service's tasks are decided: here, under the task's guard,
    /// or (with `--store postgres`) in the shared database, where a change `claimed` for the
    /// task's workflow is refused unless this instance holds the task's claim. Returns once the
    /// change is visible here.
    pub async fn apply<F>(
        &self,
        id: TaskId,
        by: Option<Arc<str>>,
        claimed: bool,
        change: F,
    ) -> Result<Arc<Task>>
    where
        F: FnOnce(&mut Task) -> Change + Send + 'static,
    {
        match &self.authority {
            None => self.transition(id, by, change),
            Some(authority) => {
                authority
                    .transition(id, by, claimed, Box::new(change))
                    .await
            }
        }
    }

    /// `pending -> running` for the attempt about to be processed by this instance's workflow
    /// (already `running` after a request for changes, which is fine and publishes nothing).
    pub async fn start_attempt(&self, id: TaskId, attempt: u32) -> Result<Arc<Task>> {
        if self.authority.is_none()
            && let Some(task) = self.get(id)
            && task.status == TaskStatus::Running
            && task.attempt == attempt
        {
            // In one process: seen under a read lock, with nothing copied.
            return Ok(task);
        }
        self.apply(id, None, true, move |task| {
            changes::start_attempt(task, attempt)
        })
        .await
    }

    /// A task's workflow on this instance has ended (`suspended`: stopped without finishing
    /// its task, which is not at fault). With a shared database its claim is given up, so the
    /// work is resumed at once; in one process nothing is left to do.
    pub async fn workflow_ended(&self, id: TaskId, token: CancellationToken, suspended: bool) {
        if let Some(authority) = &self.authority {
            authority.ended(id, token, suspended).await;
        }
    }

    /// Does a workflow whose own change was refused for a reason that is not the task's (the
    /// database did not answer, another instance took the work over) stop and leave the task
    /// to be resumed, rather than fail it? Only where another instance can resume it.
    pub fn suspends_work(&self) -> bool {
        self.authority.is_some()
    }

    /// Publishes an intermediate result of a running attempt.
    /// `claim`: reported by the worker holding that claim (not this instance's workflow).
    pub fn progress(
        &self,
        id: TaskId,
        attempt: u32,
        text: Arc<str>,
        claim: Option<Digest>,
    ) -> Result<()> {
        if let Some(authority) = &self.authority {
            authority.progress(id, attempt, text, claim);
            return Ok(());
        }
        let live = self.tasks.get(&id).ok_or(TransitionError::NotFound(id))?;
        if let Err(refused) = changes::progress(&live.task, attempt)
            .and_then(|()| claim.map_or(Ok(()), |claim| changes::holds(&live.task, &claim)))
        {
            return Err(TransitionError::Conflict {
                refused,
                task: live.task.clone(),
            });
        }
        let event = self
            .events
            .publish(EventKind::Progress { attempt, text }, |_| live.task.clone());
        live.changed.send_replace(event.seq);
        Ok(())
    }

    /// `running -> waiting_for_review` with the attempt's output.
    pub fn finish_attempt(&self, id: TaskId, attempt: u32, output: Arc<str>) -> Result<Arc<Task>> {
        self.transition(id, None, |task| {
            changes::finish_attempt(task, attempt, output)
        })
    }

    /// Decides the attempt under review: one guarded compare-and-set that applies the whole
    /// decision (approved: completed; changes requested: the next attempt, or failed at the
    /// limit; rejected: failed), here under the task's guard or in the shared database. Of
    /// racing decisions exactly one passes; the task's workflow observes the result.
    pub async fn decide(&self, id: TaskId, feedback: Feedback) -> Result<Arc<Task>> {
        let by = feedback.by.clone();
        self.apply(id, by, false, move |task| changes::decide(task, &feedback))
            .await
    }

    /// The review deadline `due` of `attempt` passed: applies its policy through the same
    /// guard as a person's decision, so exactly one of them counts. Refused (a conflict) when a
    /// decision came first, or when the deadline is no longer `due` (it was extended at the same
    /// moment). `Ok(false)` when there was nothing to decide (policy `none`: recorded as passed).
    pub async fn time_out(&self, id: TaskId, attempt: u32, due: OffsetDateTime) -> Result<bool> {
        let task = self
            .apply(id, None, true, move |task| {
                changes::time_out(task, attempt, due)
            })
            .await?;
        Ok(!task.awaits_decision_on(attempt))
    }

    /// Moves the deadline of the review open on `attempt` (the one under review, if `None`)
    /// `secs` later, counted from now if it has passed.
    pub async fn extend_deadline(
        &self,
        id: TaskId,
        attempt: Option<u32>,
        secs: u64,
        by: Option<Arc<str>>,
    ) -> Result<Arc<Task>> {
        self.apply(id, by, false, move |task| {
            changes::extend_deadline(task, attempt, secs)
        })
        .await
    }

    /// Any non-terminal status `-> failed`: processing could not produce an output.
    pub fn fail(&self, id: TaskId, message: String) -> Result<Arc<Task>> {
        self.transition(id, None, |task| changes::fail(task, message))
    }

    /// Any non-terminal status `-> cancelled`; the task's workflow stops (here at once, on
    /// every instance as it learns of the cancel).
    pub async fn cancel(&self, id: TaskId, by: Option<Arc<str>>) -> Result<Arc<Task>> {
        let who = by.clone();
        self.apply(id, who, false, move |task| changes::cancel(task, by))
            .await
    }
}

#[cfg(test)]
mod tests;
