//! Tasks and journal rows as the tables hold them.

use std::sync::Arc;

use super::*;

pub(super) fn encode_task(task: &Task) -> Result<(String, String), StoreError> {
    let encode = |e: serde_json::Error| StoreError::Decode(e.to_string());
    Ok((
        serde_json::to_string(task).map_err(encode)?,
        serde_json::to_string(&task.history).map_err(encode)?,
    ))
}

pub(super) fn decode_task(seq: u64, body: &str, history: Option<&str>) -> Result<Task, StoreError> {
    let mut task = crate::store::decode_task(seq, body)?;
    if let Some(history) = history {
        task.history = serde_json::from_str(history)
            .map_err(|e| StoreError::Decode(format!("the audit trail of task {}: {e}", task.id)))?;
    }
    Ok(task)
}

pub(super) fn decode_event(row: &Row) -> Result<JournalRow, StoreError> {
    let seq = row.get::<_, i64>(0) as u64;
    let kind: &str = row.get(1);
    let at_ms: i64 = row.get(2);
    let attempt: Option<i32> = row.get(3);
    let text: Option<&str> = row.get(4);
    let at = from_unix_ms(seq, at_ms)?;
    let kind = event_kind(seq, kind, attempt.map(|a| a as u32), text)?;
    let task = decode_task(row.get::<_, i64>(6) as u64, row.get(5), None)?;
    let fresh = match row.get::<_, Option<&str>>(7) {
        Some(audit) => serde_json::from_str(audit)
            .map_err(|e| StoreError::Decode(format!("event {seq}'s audit entries: {e}")))?,
        None => Vec::new(),
    };
    Ok(JournalRow {
        event: Event {
            seq,
            at,
            kind,
            task: Arc::new(task),
            json: Default::default(),
        },
        fresh,
    })
}
