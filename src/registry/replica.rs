//! The registry as a replica of a shared database's journal: each event taken in, in order,
//! and the handles of workflows this instance runs under its claims.

use std::sync::{Arc, atomic::Ordering};

use tokio_util::sync::CancellationToken;

use super::{LiveTask, Registry, TaskHandle};
use crate::{
    events::{Event, EventKind},
    model::{
        audit::AuditEntry,
        task::{TaskId, TaskStatus},
    },
};

impl Registry {
    /// Takes in one event from the shared journal, the next in sequence: the task's new state
    /// (its audit trail grown by `fresh`), or a progress report. False if it is not the next
    /// (the caller reads the journal again).
    pub fn replicate(
        &self,
        mut event: Event,
        fresh: Vec<Arc<AuditEntry>>,
        shutdown: &CancellationToken,
    ) -> bool {
        let id = event.task_id();
        let mut finished = None;
        match self.tasks.entry(id) {
            dashmap::Entry::Occupied(mut slot) => {
                let live = slot.get_mut();
                if event.kind == EventKind::Status {
                    let mut task = (*event.task).clone();
                    task.history = live.task.history.clone();
                    task.history.extend(fresh);
                    event.task = Arc::new(task);
                } else {
                    event.task = live.task.clone();
                }
                let event = Arc::new(event);
                if !self.events.replicate(event.clone()) {
                    return false;
                }
                if event.kind == EventKind::Status {
                    let (old, new) = (live.task.status, event.task.status);
                    if new.is_terminal() && !old.is_terminal() {
                        self.unfinished.fetch_sub(1, Ordering::AcqRel);
                        finished = Some((event.at, event.seq));
                    } else if old.is_terminal() && !new.is_terminal() {
                        self.unfinished.fetch_add(1, Ordering::AcqRel);
                    }
                    self.by_status.moved(old, new);
                    self.count_claimable(Some(&live.task), Some(&event.task));
                    live.task = event.task.clone();
                    if new == TaskStatus::Cancelled {
                        live.cancel.cancel();
                    }
                }
                live.changed.send_replace(event.seq);
            }
            dashmap::Entry::Vacant(slot) => {
                let mut task = (*event.task).clone();
                task.history = fresh;
                event.task = Arc::new(task);
                let event = Arc::new(event);
                if !self.events.replicate(event.clone()) {
                    return false;
                }
                if event.task.status.is_terminal() {
                    finished = Some((event.at, event.seq));
                } else {
                    self.unfinished.fetch_add(1, Ordering::AcqRel);
                }
                let (live, _) = LiveTask::new(event.task.clone(), shutdown);
                self.by_status.add(live.task.status);
                self.count_claimable(None, Some(&live.task));
                slot.insert(live);
            }
        }
        // Once the shard is let go: eviction looks tasks up.
        if let Some(at) = finished {
            self.finished_order().order.push_back((id, at.0, at.1));
            self.evict_finished();
        }
        true
    }

    /// A handle to follow a task with, for a workflow this instance runs because it holds the
    /// task's claim: `stop` ends that workflow (the claim was lost) without touching the task.
    pub fn claimed_handle(&self, id: TaskId) -> Option<TaskHandle> {
        let live = self.tasks.get(&id)?;
        Some(TaskHandle {
            task: live.task.clone(),
            cancel: live.cancel.child_token(),
        })
    }
}
