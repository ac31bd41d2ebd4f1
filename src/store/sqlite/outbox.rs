//! The SQLite outbox: the `deliveries` table, written in the journal's transactions (the rows an
//! event makes in the event's own commit, a try's result in a later one), read on the reader
//! connection.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::SqliteStore;
use crate::{
    model::{
        delivery::{Delivery, DeliveryStatus, Kind, NewDelivery, OutboxWrite, receiver_of, shown},
        task::TaskId,
    },
    store::{
        StoreError, blocking, from_unix_ms,
        journal::JournalSender,
        outbox::{Due, OVERFLOW, Outbox},
        unix_ms,
    },
};

/// The columns [`decode`] reads, in its order.
const COLUMNS: &str = "id, task_id, event_seq, kind, url, body, status, attempts, last_status_code, \
                       last_error, created_ms, next_ms, done_ms, while_waiting, round";

/// Finished deliveries are kept this long, for the task page and redelivery.
const KEEP_FINISHED_MS: i64 = 7 * 24 * 3600 * 1000;

/// Inserts the deliveries events made, in their transaction.
pub(super) fn insert(tx: &Transaction<'_>, new: &[NewDelivery]) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries (id, task_id, event_seq, kind, url, chain, body, status, attempts,
                                 last_error, created_ms, next_ms, done_ms, while_waiting, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for d in new {
        let (status, error, next, done) = if d.overflow {
            ("failed", Some(OVERFLOW), None, Some(unix_ms(d.created)))
        } else {
            ("pending", None, Some(unix_ms(d.due)), None)
        };
        insert.execute(params![
            d.id.to_string(),
            d.task_id.to_string(),
            d.event_seq,
            d.kind.as_str(),
            &*d.url,
            d.kind.ordered().then_some(&*d.url),
            &*d.body,
            status,
            error,
            unix_ms(d.created),
            next,
            done,
            d.while_waiting,
            receiver_of(&d.url),
        ])?;
    }
    Ok(())
}

/// Applies tries' results and people's requests, in the journal's transaction.
pub(super) fn apply(tx: &Transaction<'_>, writes: &[OutboxWrite]) -> Result<(), StoreError> {
    for write in writes {
        match write {
            OutboxWrite::Tried {
                id,
                round,
                status,
                attempts,
                code,
                error,
                next,
                at,
            } => {
                let done = (*status != DeliveryStatus::Pending).then(|| unix_ms(*at));
                // A Redeliver since the try began keeps the delivery pending, to be sent again.
                tx.prepare_cached(
                    "UPDATE deliveries SET attempts = ?3, last_status_code = ?4, last_error = ?5,
                            status = CASE WHEN round = ?8 THEN ?2 ELSE 'pending' END,
                            next_ms = CASE WHEN round = ?8 THEN ?6 ELSE next_ms END,
                            done_ms = CASE WHEN round = ?8 THEN ?7 ELSE NULL END
                     WHERE id = ?1",
                )?
                .execute(params![
                    id.to_string(),
                    status.as_str(),
                    attempts,
                    code,
                    error.as_deref(),
                    next.map(unix_ms),
                    done,
                    round,
                ])?;
            }
            OutboxWrite::Drop { id } => {
                tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?
                    .execute([id.to_string()])?;
            }
            OutboxWrite::Redeliver { id, at } => {
                tx.prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_ms = ?2, done_ms = NULL,
                            round = round + 1
                     WHERE id = ?1",
                )?
                .execute(params![id.to_string(), unix_ms(*at)])?;
            }
        }
    }
    Ok(())
}

/// Drops finished deliveries older than a week.
pub(super) fn prune(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let cutoff = unix_ms(OffsetDateTime::now_utc()) - KEEP_FINISHED_MS;
    conn.execute(
        "DELETE FROM deliveries WHERE status <> 'pending' AND done_ms < ?1",
        [cutoff],
    )?;
    Ok(())
}

fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Delivery, StoreError>> {
    let id: String = row.get(0)?;
    let task: String = row.get(1)?;
    let seq: u64 = row.get(2)?;
    let kind: String = row.get(3)?;
    let url: String = row.get(4)?;
    let body: String = row.get(5)?;
    let status: String = row.get(6)?;
    let attempts: u32 = row.get(7)?;
    let code: Option<u16> = row.get(8)?;
    let error: Option<String> = row.get(9)?;
    let created: i64 = row.get(10)?;
    let next: Option<i64> = row.get(11)?;
    let done: Option<i64> = row.get(12)?;
    let while_waiting: Option<u32> = row.get(13)?;
    let round: u32 = row.get(14)?;
    Ok((|| {
        let bad = |what: &str| StoreError::Decode(format!("delivery {id}: {what}"));
        let kind = Kind::parse(&kind).ok_or_else(|| bad("its kind"))?;
        Ok(Delivery {
            shown_url: shown(&url, kind),
            id: id.parse().map_err(|_| bad("its id"))?,
            task_id: task.parse().map_err(|_| bad("its task id"))?,
            url: url.into(),
            kind,
            event_seq: seq,
            status: DeliveryStatus::parse(&status).ok_or_else(|| bad("its status"))?,
            attempts,
            last_status_code: code,
            last_error: error.map(Into::into),
            next_try_at: next
                .filter(|_| status == "pending")
                .map(|ms| from_unix_ms(seq, ms))
                .transpose()?,
            created_at: from_unix_ms(seq, created)?,
            finished_at: done.map(|ms| from_unix_ms(seq, ms)).transpose()?,
            body: body.into(),
            while_waiting,
            round,
        })
    })())
}

/// The SQLite store's outbox: reads on its reader connection, writes through the journal, so
/// a try's result shares the journal's commits and never contends with them.
pub struct SqliteOutbox {
    store: Arc<SqliteStore>,
    journal: JournalSender,
}

impl SqliteOutbox {
    pub fn new(store: Arc<SqliteStore>, journal: JournalSender) -> Self {
        Self { store, journal }
    }

    /// How many deliveries are pending now (read once at start; counted from there).
    pub fn pending(&self) -> Result<u64, StoreError> {
        Ok(self.store.reader().query_row(
            "SELECT count(*) FROM deliveries WHERE status = 'pending'",
            [],
            |row| row.get(0),
        )?)
    }
}

impl Outbox for SqliteOutbox {
    fn due(
        self: Arc<Self>,
        now: OffsetDateTime,
        limit: usize,
        busy: Arc<HashSet<Uuid>>,
        full: Arc<Vec<String>>,
    ) -> BoxFuture<'static, Result<Due, StoreError>> {
        Box::pin(blocking(move || {
            let conn = self.store.reader();
            // The earliest pending delivery of each chain (receiver and task), in the order
            // they come due; those in flight are left out here rather than in SQL.
            let mut select = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries AS d
                 WHERE status = 'pending'
                   AND host NOT IN (SELECT value FROM json_each(?2))
                   AND id NOT IN (SELECT value FROM json_each(?3))
                   AND (chain IS NULL OR NOT EXISTS (
                        SELECT 1 FROM deliveries AS e
                        WHERE e.status = 'pending' AND e.chain = d.chain
                          AND e.task_id = d.task_id AND e.event_seq < d.event_seq))
                 ORDER BY next_ms LIMIT ?1"
            ))?;
            let full = serde_json::to_string(&*full).unwrap_or_else(|_| "[]".into());
            let ids: Vec<String> = busy.iter().map(Uuid::to_string).collect();
            let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
            let rows = select.query_map(params![(limit + 1) as i64, full, ids], decode)?;
            Due::gather(rows.map(|row| row?), now, limit, &busy)
        }))
    }

    fn take(
        self: Arc<Self>,
        ids: Vec<Uuid>,
        _lease: Duration,
    ) -> BoxFuture<'static, Result<Vec<Uuid>, StoreError>> {
        // One process sends: what it holds in flight is its claim.
        Box::pin(async move { Ok(ids) })
    }

    fn write(
        self: Arc<Self>,
        writes: Vec<OutboxWrite>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let done = self.journal.outbox(writes).ok_or_else(|| {
                StoreError::Config("the journal has stopped: shutting down".into())
            })?;
            done.await
                .map_err(|_| StoreError::Config("the journal stopped before writing".into()))
        })
    }

    fn of_task(
        self: Arc<Self>,
        id: TaskId,
    ) -> BoxFuture<'static, Result<Vec<Delivery>, StoreError>> {
        Box::pin(blocking(move || {
            let conn = self.store.reader();
            let mut select = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE task_id = ?1 ORDER BY event_seq, created_ms, id"
            ))?;
            select
                .query_map([id.to_string()], decode)?
                .map(|row| row.map_err(StoreError::from).and_then(|d| d))
                .collect()
        }))
    }

    fn get(self: Arc<Self>, id: Uuid) -> BoxFuture<'static, Result<Option<Delivery>, StoreError>> {
        Box::pin(blocking(move || {
            let conn = self.store.reader();
            let found = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"))?
                .query_row([id.to_string()], decode)
                .optional()?;
            found.transpose()
        }))
    }

    fn fill(
        self: Arc<Self>,
    ) -> BoxFuture<'static, Result<(u64, Option<OffsetDateTime>), StoreError>> {
        Box::pin(blocking(move || {
            let conn = self.store.reader();
            let (count, oldest): (u64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT count(*), min(created_ms) FROM deliveries WHERE status = 'pending'",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok((count, oldest.map(|ms| from_unix_ms(0, ms)).transpose()?))
        }))
    }
}
