//! `hitl verify`: every task's audit trail checked link by link, and each task's stored texts
//! against the hashes its trail recorded. Reads only; runs beside a live service.

use std::path::Path;

use super::{DB_FILE, files, rows::*, schema::*};
use crate::{
    model::{
        audit::{AuditEntry, AuditEvent, Break, Digest, verify_chain},
        task::{Decision, Task, TaskId},
    },
    store::StoreError,
};

/// What `hitl verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub tasks: usize,
    pub entries: usize,
    pub breaks: Vec<Break>,
    /// Tasks written before the audit trail existed, which have none to check.
    pub without_trail: usize,
}

/// Checks every task's audit trail in the store at `dir`, and that each task's stored texts are
/// the ones its trail recorded. Reads only; works beside a running hitl.
pub fn verify(dir: &Path) -> Result<Verification, StoreError> {
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Config(format!(
            "there is no hitl database at {}",
            path.display()
        )));
    }
    // The same checks as a start: a directory hitl would refuse is reported damaged, never
    // "intact" because SQLite showed an empty store.
    let marker = files::inspect(dir)?;
    let conn = open_read_only(&path)?;
    let (version, id) = identity(&conn, &path)?;
    files::check_marker(dir, marker, version, id)?;
    if version < 2 {
        return Err(StoreError::Config(format!(
            "the database {} has no audit trail yet (schema version {version}); start this hitl on it once to add one",
            path.display()
        )));
    }
    // One read transaction: a commit by a running hitl between reading the trails and the
    // tasks would otherwise look like a task ahead of its trail.
    let conn = conn.unchecked_transaction()?;
    let mut trails = read_trails(&conn)?;
    let mut report = Verification::default();
    let mut rows = conn.prepare("SELECT id, seq, body FROM tasks ORDER BY id")?;
    let tasks = rows.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u64>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    for row in tasks {
        let (id, seq, body) = row?;
        report.tasks += 1;
        let Ok(id) = id.parse::<TaskId>() else {
            report.breaks.push(Break {
                task_id: TaskId(uuid::Uuid::nil()),
                n: 0,
                problem: format!("a task row has the id {id:?}, which is not a task id"),
            });
            continue;
        };
        let trail = trails.remove(&id).unwrap_or_default();
        report.entries += trail.len();
        if trail.is_empty() {
            report.without_trail += 1;
            continue;
        }
        let mut entries = Vec::with_capacity(trail.len());
        for (n, line) in &trail {
            match serde_json::from_str::<AuditEntry>(line) {
                Ok(entry) if entry.n == *n => entries.push(entry),
                Ok(entry) => report.breaks.push(Break {
                    task_id: id,
                    n: *n,
                    problem: format!("the row for entry {n} holds entry {}", entry.n),
                }),
                Err(e) => report.breaks.push(Break {
                    task_id: id,
                    n: *n,
                    problem: format!("it is not a readable entry ({e})"),
                }),
            }
        }
        report.breaks.extend(verify_chain(id, &entries));
        match decode_task(seq, &body) {
            Ok(task) => report.breaks.extend(check_task(&task, &entries)),
            Err(e) => report.breaks.push(Break {
                task_id: id,
                n: 0,
                problem: format!("the task's row cannot be read: {e}"),
            }),
        }
    }
    for (id, trail) in trails {
        report.entries += trail.len();
        report.breaks.push(Break {
            task_id: id,
            n: trail.first().map_or(0, |(n, _)| *n),
            problem: "its task is missing from the tasks table".into(),
        });
    }
    Ok(report)
}

/// Does the task as stored say what its trail recorded: the same input, outputs, result and
/// status?
fn check_task(task: &Task, entries: &[AuditEntry]) -> Vec<Break> {
    let mut breaks = Vec::new();
    let mut problem = |n: u32, problem: String| {
        breaks.push(Break {
            task_id: task.id,
            n,
            problem,
        })
    };
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return breaks;
    };
    // A task already under way when the trail was added (schema version 2) has a trail that
    // starts part-way: only what happened after its start can be checked.
    let whole = matches!(first.event, AuditEvent::Submitted { .. });
    if last.status != task.status {
        problem(
            last.n,
            format!(
                "the task is stored as {} but its trail ends with it {}",
                task.status.as_str(),
                last.status.as_str()
            ),
        );
    }
    let finished = |attempt: u32| {
        entries.iter().rev().find_map(|e| match &e.event {
            AuditEvent::AttemptFinished {
                attempt: a,
                output_sha256,
                ..
            } if *a == attempt => Some((e.n, *output_sha256)),
            _ => None,
        })
    };
    for entry in entries {
        match &entry.event {
            AuditEvent::Submitted { input_sha256, .. }
                if *input_sha256 != Digest::of_text(&task.input) =>
            {
                problem(entry.n, "the task's input is not the one submitted".into());
            }
            AuditEvent::Decided {
                decision: Decision::Approved,
                result_sha256: Some(result),
                ..
            } if task.final_result.as_deref().map(Digest::of_text) != Some(*result) => {
                problem(
                    entry.n,
                    "the task's final result is not the text that was approved".into(),
                );
            }
            _ => {}
        }
    }
    for record in &task.attempts {
        match finished(record.attempt) {
            Some((n, hash)) if hash != Digest::of_text(&record.output) => problem(
                n,
                format!(
                    "the stored output of attempt {} is not the one the processor produced",
                    record.attempt
                ),
            ),
            None if whole => problem(
                last.n,
                format!("attempt {} has no finished entry", record.attempt),
            ),
            _ => {}
        }
    }
    if let Some(output) = &task.output
        && let Some((n, hash)) = finished(task.attempt)
        && hash != Digest::of_text(output)
    {
        problem(
            n,
            "the output under review is not the one the processor produced".into(),
        );
    }
    breaks
}
