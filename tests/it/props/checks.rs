//! The invariants checked after every step, over every task created so far and the whole event
//! journal: the audit trails, the counts, no event lost or rewritten, each task's status events a
//! walk along the lifecycle, and each task where the model says its operations lead.

use std::collections::HashSet;

use hitl::{
    events::{Event, EventKind, Scope, Since},
    task::{Decision, Task, TaskId, TaskStatus},
};
use proptest::{prelude::*, test_runner::TestCaseError};

use super::{WAIT, bounded, fail, model::World};

impl World {
    /// Every invariant, over every task created so far and the whole journal.
    pub(super) async fn check(&mut self) -> Result<(), TestCaseError> {
        let registry = &self.hitl.registry;
        prop_assert_eq!(
            registry.len(),
            self.tasks.len(),
            "every task is there, no other"
        );
        let (tasks, _) = self.state()?;
        for task in &tasks {
            let breaks = hitl::audit::verify_chain(
                task.id,
                &task
                    .history
                    .iter()
                    .map(|e| (**e).clone())
                    .collect::<Vec<_>>(),
            );
            prop_assert!(
                breaks.is_empty(),
                "task {}'s audit trail: {:?}",
                task.id,
                breaks
            );
            let last = task
                .history
                .last()
                .ok_or_else(|| fail(format!("task {} has no audit trail", task.id)))?;
            prop_assert_eq!(
                last.status,
                task.status,
                "the trail ends in the task's status"
            );
            let decided = task
                .history
                .iter()
                .filter(|e| matches!(e.event, hitl::audit::AuditEvent::Decided { .. }))
                .count();
            prop_assert_eq!(
                decided,
                task.attempts.len(),
                "one decided entry per decided attempt"
            );
        }
        let unfinished = tasks.iter().filter(|t| !t.status.is_terminal()).count();
        prop_assert_eq!(
            registry.unfinished(),
            unfinished,
            "the count of unfinished tasks"
        );
        let by_status = TaskStatus::ALL.map(|s| tasks.iter().filter(|t| t.status == s).count());
        prop_assert_eq!(
            registry.count_by_status(),
            by_status,
            "the counts per status, kept as tasks change"
        );

        // Every task's latest event is durable (all tasks are settled: nothing more is coming).
        let newest = tasks.iter().map(|t| t.seq).max().unwrap_or(0);
        prop_assert!(
            registry.events.wait_durable(newest, WAIT).await,
            "event {} never became durable",
            newest
        );

        // 5. No event lost: the journal is 1..=head, and only ever grows at its end.
        let since = bounded("replay", registry.events.replay(0, Scope::All)).await?;
        let Since::Events { events, head } = since else {
            return Err(fail("replay from 0 is gone, with nothing pruned"));
        };
        prop_assert_eq!(head, registry.events.head());
        prop_assert_eq!(
            head,
            newest,
            "the newest event is some task's latest status event"
        );
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        prop_assert!(
            seqs.iter().copied().eq(1..=head),
            "the journal is not exactly 1..={}: {:?}",
            head,
            seqs
        );
        prop_assert!(
            events.len() >= self.journal.len(),
            "the journal shrank from {} to {} events",
            self.journal.len(),
            events.len()
        );
        for (old, new) in self.journal.iter().zip(&events) {
            prop_assert!(
                same_event(old, new),
                "event {} was rewritten: {:?} became {:?}",
                old.seq,
                old,
                new
            );
        }

        // 3. Each task's new status events walk along the lifecycle from where it was.
        let known: HashSet<TaskId> = self.tasks.iter().map(|t| t.id).collect();
        for event in &events[self.journal.len()..] {
            prop_assert!(
                known.contains(&event.task_id()),
                "an event for a task nobody created: {:?}",
                event
            );
            if event.kind != EventKind::Status {
                continue;
            }
            prop_assert_eq!(
                event.task.seq,
                event.seq,
                "a status event's task knows its seq"
            );
            let tracked = self
                .tasks
                .iter_mut()
                .find(|t| t.id == event.task_id())
                .expect("checked above");
            let to = (event.task.status, event.task.attempt);
            match tracked.last_event {
                None => prop_assert_eq!(
                    to,
                    (TaskStatus::Pending, 1),
                    "a task's first event is pending at attempt 1"
                ),
                Some((status, attempt, _)) => prop_assert!(
                    allowed((status, attempt), to),
                    "task {} moved {:?} -> {:?} (event {})",
                    tracked.id,
                    (status, attempt),
                    to,
                    event.seq
                ),
            }
            tracked.last_event = Some((to.0, to.1, event.seq));
        }

        for (tracked, task) in self.tasks.iter_mut().zip(&tasks) {
            let id = tracked.id;
            // 5. The latest status event is the task as it is now.
            let Some((status, attempt, seq)) = tracked.last_event else {
                return Err(fail(format!("task {id} has no status event")));
            };
            prop_assert_eq!(
                (status, attempt, seq),
                (task.status, task.attempt, task.seq)
            );
            let latest = &events[seq as usize - 1];
            prop_assert!(
                journalled(&latest.task) == journalled(task),
                "task {}'s latest event {:?} disagrees with the task {:?}",
                id,
                latest,
                task
            );

            // 1. At most one decision per attempt: records 1..n, each decided once.
            let numbers: Vec<u32> = task.attempts.iter().map(|a| a.attempt).collect();
            prop_assert!(
                numbers.iter().copied().eq(1..=numbers.len() as u32),
                "task {}'s attempt records are not 1..n: {:?}",
                id,
                numbers
            );
            prop_assert!(task.attempts.iter().all(|a| a.decision.is_some()));

            // 2. Never past the limit.
            prop_assert_eq!(task.max_attempts, tracked.max_attempts);
            prop_assert!(
                (1..=task.max_attempts).contains(&task.attempt),
                "task {} is on attempt {} of {}",
                id,
                task.attempt,
                task.max_attempts
            );
            prop_assert!(task.attempts.len() as u32 <= task.max_attempts);
            prop_assert!(
                numbers.len() as u32 + 1 == task.attempt || numbers.len() as u32 == task.attempt,
                "task {} on attempt {} has {} decided attempts",
                id,
                task.attempt,
                numbers.len()
            );

            // 3. Terminal statuses never change, nor anything else of the task.
            if tracked.seen.status.is_terminal() {
                prop_assert_eq!(task, &tracked.seen, "a finished task changed");
            }

            // 4. The model: the status and attempt the operations lead to, and every accepted
            // decision recorded as given.
            prop_assert_eq!(
                (task.status, task.attempt),
                tracked.expected,
                "task {} is not where its operations lead",
                id
            );
            let decisions: Vec<(Decision, Option<String>)> = task
                .attempts
                .iter()
                .map(|a| {
                    (
                        a.decision.expect("checked above"),
                        a.comment.as_deref().map(str::to_owned),
                    )
                })
                .collect();
            prop_assert_eq!(&decisions, &tracked.decisions);
            match task.status {
                TaskStatus::Completed => {
                    prop_assert!(task.final_result.is_some());
                    prop_assert_eq!(
                        task.attempts.last().and_then(|a| a.decision),
                        Some(Decision::Approved)
                    );
                }
                TaskStatus::Failed => prop_assert!(task.error.is_some()),
                TaskStatus::WaitingForReview => prop_assert!(task.output.is_some()),
                _ => {}
            }
            tracked.seen = task.clone();
        }
        self.journal = events;
        Ok(())
    }
}

/// The contract's lifecycle: may a task's status event go from `from` to `to`?
fn allowed(from: (TaskStatus, u32), to: (TaskStatus, u32)) -> bool {
    use TaskStatus::*;
    let ((from, attempt), (to, next)) = (from, to);
    match (from, to) {
        (WaitingForReview, Running) => next == attempt + 1,
        (Pending, Running)
        | (Running, WaitingForReview)
        | (WaitingForReview, Completed | Failed)
        | (Pending | Running | WaitingForReview, Cancelled)
        | (Pending | Running, Failed) => next == attempt,
        _ => false,
    }
}

/// A task as the journal keeps it: without its audit trail, which the store keeps apart.
fn journalled(task: &Task) -> Task {
    Task {
        history: Vec::new(),
        submit_key: None,
        ..task.clone()
    }
}

/// The same event, as far as the journal keeps it.
fn same_event(a: &Event, b: &Event) -> bool {
    a.seq == b.seq && a.at == b.at && a.kind == b.kind && journalled(&a.task) == journalled(&b.task)
}
