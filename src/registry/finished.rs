//! What the registry keeps count of: tasks per status (for the inbox's counts at any size), and
//! finished tasks in the order they finished, so the oldest leave memory first
//! (`--keep-finished`).

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicUsize, Ordering},
};

use time::OffsetDateTime;

use super::Registry;
use crate::model::{
    event::Retention,
    task::{TaskId, TaskStatus, now},
};

#[derive(Default)]
pub(super) struct Finished {
    /// Each finished task, when, and the event that finished it: a task started again and
    /// finished once more is queued again, and its earlier place is passed over.
    pub(super) order: VecDeque<(TaskId, OffsetDateTime, u64)>,
    pub(super) keep: Option<Retention>,
}

impl Registry {
    /// Keeps only the newest (or youngest) finished tasks in memory; see
    /// [`Self::evict_finished`].
    pub fn keep_finished(self, keep: Option<Retention>) -> Self {
        self.finished_order().keep = keep;
        self
    }

    pub(super) fn finished_order(&self) -> std::sync::MutexGuard<'_, Finished> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the oldest finished tasks go from memory once more are kept than `--keep-finished`
    /// allows (or they finished longer ago): out of the map, the counts and the log's latest
    /// states. A durable store still has them. A task goes only once its last event is durable,
    /// so the log cannot bring its state back afterwards.
    pub fn evict_finished(&self) {
        let head = self.events.head();
        let now = now();
        let mut finished = self.finished_order();
        let Some(keep) = finished.keep else {
            return;
        };
        while let Some(&(id, at, seq)) = finished.order.front() {
            let over = match keep {
                Retention::Count(n) => finished.order.len() as u64 > n,
                Retention::Age(age) => now - at > age,
            };
            if !over || self.tasks.get(&id).is_some_and(|live| live.task.seq > head) {
                break;
            }
            finished.order.pop_front();
            if let Some((_, live)) = self.tasks.remove_if(&id, |_, live| {
                live.task.status.is_terminal() && live.task.seq == seq
            }) {
                self.by_status.remove(live.task.status);
                self.events.forget(id);
            }
        }
    }
}

/// One counter per status, in the order of [`TaskStatus::ALL`]. Changed under the task's shard
/// lock; a reader may see a task counted in both its old and new status for an instant.
#[derive(Default)]
pub(super) struct StatusCounts([AtomicUsize; TaskStatus::ALL.len()]);

impl StatusCounts {
    pub(super) fn slot(&self, status: TaskStatus) -> &AtomicUsize {
        &self.0[status.index()]
    }

    pub(super) fn add(&self, status: TaskStatus) {
        self.slot(status).fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn remove(&self, status: TaskStatus) {
        self.slot(status).fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn moved(&self, from: TaskStatus, to: TaskStatus) {
        if from != to {
            self.add(to);
            self.remove(from);
        }
    }

    pub(super) fn read(&self) -> [usize; TaskStatus::ALL.len()] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Acquire))
    }
}
