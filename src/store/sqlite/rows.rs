//! Rows in and out: tasks, journal events and audit entries as the tables hold them, and the
//! one transaction's worth of inserts an append makes.

use std::{collections::HashMap, sync::Arc};

use rusqlite::{Connection, Transaction, params};

use crate::{
    model::{
        audit::AuditEntry,
        event::{Event, EventKind},
        task::{Task, TaskId},
    },
    store::{StoreError, event_kind, from_unix_ms, unix_ms},
};

pub(super) fn decode_task(seq: u64, body: &str) -> Result<Arc<Task>, StoreError> {
    crate::store::decode_task(seq, body).map(Arc::new)
}

/// Every stored audit entry as text, by task, in chain order.
pub(super) fn read_trails(
    conn: &Connection,
) -> Result<HashMap<TaskId, Vec<(u32, String)>>, StoreError> {
    let mut trails: HashMap<TaskId, Vec<(u32, String)>> = HashMap::new();
    let mut rows = conn.prepare("SELECT task_id, n, entry FROM audit ORDER BY task_id, n")?;
    for row in rows.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u32>(1)?,
            row.get::<_, String>(2)?,
        ))
    })? {
        let (id, n, line) = row?;
        let id = id
            .parse()
            .map_err(|e| StoreError::Decode(format!("an audit entry's task id {id:?}: {e}")))?;
        trails.entry(id).or_default().push((n, line));
    }
    Ok(trails)
}

pub(super) fn decode_entry(task: TaskId, n: u32, line: &str) -> Result<AuditEntry, StoreError> {
    serde_json::from_str(line)
        .map_err(|e| StoreError::Decode(format!("audit entry {n} of task {task}: {e}")))
}

/// One `events` row, as selected by [`EVENT_COLUMNS`].
pub(super) fn decode_event(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<Arc<Event>, StoreError>> {
    let seq: u64 = row.get(0)?;
    let kind: String = row.get(1)?;
    let at_ms: i64 = row.get(2)?;
    let attempt: Option<u32> = row.get(3)?;
    let text: Option<String> = row.get(4)?;
    let body: String = row.get(5)?;
    let task_seq: u64 = row.get(6)?;
    Ok((|| {
        Ok(Arc::new(Event {
            seq,
            at: from_unix_ms(seq, at_ms)?,
            kind: event_kind(seq, &kind, attempt, text.as_deref())?,
            task: decode_task(task_seq, &body)?,
            json: Default::default(),
        }))
    })())
}

pub(super) const EVENT_COLUMNS: &str = "seq, kind, at_ms, attempt, text, task, task_seq";

/// The first sequence number still in the journal, if any.
pub(super) fn first_kept(conn: &Connection) -> Result<Option<u64>, StoreError> {
    Ok(conn.query_row("SELECT MIN(seq) FROM events", [], |row| row.get(0))?)
}

pub(super) fn head(conn: &Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'head'", [], |row| {
            row.get(0)
        })?,
    )
}

pub(super) fn insert_events(tx: &Transaction<'_>, events: &[Arc<Event>]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (seq, task_id, kind, at_ms, attempt, text, task, task_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut audit =
        tx.prepare_cached("INSERT INTO audit (task_id, n, entry) VALUES (?1, ?2, ?3)")?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO tasks (id, seq, status, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, status = excluded.status,
                                        body = excluded.body",
    )?;
    for event in events {
        let task = &event.task;
        let body = serde_json::to_string(&**task).map_err(|e| StoreError::Decode(e.to_string()))?;
        let (attempt, text) = match &event.kind {
            EventKind::Status => (None, None),
            EventKind::Progress { attempt, text } => (Some(*attempt), Some(&**text)),
        };
        insert.execute(params![
            event.seq,
            task.id.to_string(),
            event.name(),
            unix_ms(event.at),
            attempt,
            text,
            body,
            task.seq,
        ])?;
        if event.kind == EventKind::Status {
            upsert.execute(params![
                task.id.to_string(),
                task.seq,
                task.status.as_str(),
                body
            ])?;
            // The entries this change added are the newest ones, carried by this event.
            let fresh = task.history.iter().rev().take_while(|e| e.seq == event.seq);
            for entry in fresh {
                audit.execute(params![task.id.to_string(), entry.n, entry.to_line()])?;
            }
            // The key that made the task, with the event that made it.
            if let Some(key) = &task.submit_key
                && task.history.first().is_some_and(|e| e.seq == event.seq)
            {
                tx.prepare_cached(
                    // A key past its day but not yet pruned is taken over; a live one never
                    // is (the look-up before the submission found none).
                    "INSERT INTO submit_keys (owner, key, scope, task_id, digest, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (owner, key, scope) DO UPDATE
                         SET task_id = excluded.task_id, digest = excluded.digest,
                             at_ms = excluded.at_ms
                         WHERE submit_keys.at_ms < ?7",
                )?
                .execute(params![
                    &*key.owner,
                    &*key.key,
                    &*key.scope,
                    task.id.to_string(),
                    &*key.digest,
                    unix_ms(event.at),
                    crate::store::oldest_key_ms(),
                ])?;
            }
        }
    }
    Ok(())
}
