//! The shared outbox: `hitl_deliveries`, written in the batch's transaction with the events
//! that made the deliveries, and taken for sending by one instance at a time (a lease, as work
//! is claimed): if that instance dies, another takes the delivery when the lease runs out.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::PgStore;
use crate::{
    model::{
        delivery::{Delivery, DeliveryStatus, Kind, OutboxWrite, Receivers, shown},
        task::TaskId,
    },
    store::{
        StoreError, from_unix_ms,
        outbox::{Due, Fill, Outbox},
        unix_ms,
    },
};

const COLUMNS: &str = "id, task_id, event_seq, kind, url, body, status, attempts, last_status_code, \
                       last_error, created_ms, next_ms, done_ms, while_waiting, round";

/// Finished deliveries are kept this long, for the task page and redelivery.
const KEEP_FINISHED_MS: i64 = 7 * 24 * 3600 * 1000;

/// Who this instance's batches deliver to, set once at start.
pub struct PgOutgoing {
    pub receivers: Receivers,
    pub fill: Arc<Fill>,
    pub wake: Arc<Notify>,
}

fn decode(row: &tokio_postgres::Row) -> Result<Delivery, StoreError> {
    let id: &str = row.get(0);
    let seq = row.get::<_, i64>(2) as u64;
    let status: &str = row.get(6);
    let bad = |what: &str| StoreError::Decode(format!("delivery {id}: {what}"));
    let kind = Kind::parse(row.get(3)).ok_or_else(|| bad("its kind"))?;
    Ok(Delivery {
        shown_url: shown(row.get(4), kind),
        id: id.parse().map_err(|_| bad("its id"))?,
        task_id: row
            .get::<_, &str>(1)
            .parse()
            .map_err(|_| bad("its task id"))?,
        url: row.get::<_, &str>(4).into(),
        kind,
        event_seq: seq,
        status: DeliveryStatus::parse(status).ok_or_else(|| bad("its status"))?,
        attempts: row.get::<_, i32>(7) as u32,
        last_status_code: row.get::<_, Option<i32>>(8).map(|c| c as u16),
        last_error: row.get::<_, Option<&str>>(9).map(Into::into),
        next_try_at: row
            .get::<_, Option<i64>>(11)
            .filter(|_| status == "pending")
            .map(|ms| from_unix_ms(seq, ms))
            .transpose()?,
        created_at: from_unix_ms(seq, row.get(10))?,
        finished_at: row
            .get::<_, Option<i64>>(12)
            .map(|ms| from_unix_ms(seq, ms))
            .transpose()?,
        body: row.get::<_, &str>(5).into(),
        while_waiting: row.get::<_, Option<i32>>(13).map(|a| a as u32),
        round: row.get::<_, i32>(14) as u32,
    })
}

impl PgStore {
    /// Drops finished deliveries older than a week.
    pub(super) async fn prune_deliveries(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<(), StoreError> {
        let cutoff = unix_ms(OffsetDateTime::now_utc()) - KEEP_FINISHED_MS;
        client
            .execute(
                "DELETE FROM hitl_deliveries WHERE status <> 'pending' AND done_ms < $1",
                &[&cutoff],
            )
            .await?;
        Ok(())
    }
}

/// The shared store's outbox, as one instance (`owner`) sends from it.
pub struct PgOutbox {
    store: Arc<PgStore>,
    owner: String,
}

impl PgOutbox {
    pub fn new(store: Arc<PgStore>, owner: String) -> Self {
        Self { store, owner }
    }
}

impl Outbox for PgOutbox {
    fn due(
        self: Arc<Self>,
        now: OffsetDateTime,
        limit: usize,
        busy: Arc<HashSet<Uuid>>,
        full: Arc<Vec<String>>,
    ) -> BoxFuture<'static, Result<Due, StoreError>> {
        Box::pin(async move {
            let client = self.store.pool.get().await?;
            let select = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM hitl_deliveries AS d
                     WHERE status = 'pending'
                       AND (lease_until IS NULL OR lease_until < now())
                       AND host <> ALL($2::text[])
                       AND id <> ALL($3::text[])
                       AND (chain IS NULL OR NOT EXISTS (
                            SELECT 1 FROM hitl_deliveries AS e
                            WHERE e.status = 'pending' AND e.chain = d.chain
                              AND e.task_id = d.task_id AND e.event_seq < d.event_seq))
                     ORDER BY next_ms LIMIT $1"
                ))
                .await?;
            let rows = client
                .query(
                    &select,
                    &[
                        &((limit + 1) as i64),
                        &*full,
                        &busy.iter().map(Uuid::to_string).collect::<Vec<_>>(),
                    ],
                )
                .await?;
            Due::gather(rows.iter().map(decode), now, limit, &busy)
        })
    }

    fn take(
        self: Arc<Self>,
        ids: Vec<Uuid>,
        lease: Duration,
    ) -> BoxFuture<'static, Result<Vec<Uuid>, StoreError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            let client = self.store.pool.get().await?;
            // A row another instance takes at the same moment is locked: this UPDATE waits for
            // it, then finds its lease running and leaves it.
            let rows = client
                .query(
                    "UPDATE hitl_deliveries
                     SET owner = $2, lease_until = now() + make_interval(secs => $3)
                     WHERE id = ANY($1) AND status = 'pending' AND next_ms <= $4
                       AND (lease_until IS NULL OR lease_until < now())
                     RETURNING id",
                    &[
                        &ids,
                        &self.owner,
                        &lease.as_secs_f64(),
                        &unix_ms(OffsetDateTime::now_utc()),
                    ],
                )
                .await?;
            Ok(rows
                .iter()
                .filter_map(|row| row.get::<_, &str>(0).parse().ok())
                .collect())
        })
    }

    fn write(
        self: Arc<Self>,
        writes: Vec<OutboxWrite>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            // In id order, as `take` locks them: two transactions never wait on each other.
            let mut writes = writes;
            writes.sort_by_key(OutboxWrite::id);
            let mut client = self.store.pool.get().await?;
            let tx = client.transaction().await?;
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
                        let done = (status != DeliveryStatus::Pending).then(|| unix_ms(at));
                        let update = tx
                            .prepare_cached(
                                // Only while this instance holds it: a lease that ran out may
                                // have let another instance take it (and finish it) since. A
                                // Redeliver since the try began keeps it pending.
                                "UPDATE hitl_deliveries
                                 SET attempts = $3, last_status_code = $4, last_error = $5,
                                     status = CASE WHEN round = $9 THEN $2::text ELSE 'pending' END,
                                     next_ms = CASE WHEN round = $9 THEN $6::bigint ELSE next_ms END,
                                     done_ms = CASE WHEN round = $9 THEN $7::bigint ELSE NULL END,
                                     owner = NULL, lease_until = NULL
                                 WHERE id = $1 AND owner = $8",
                            )
                            .await?;
                        tx.execute(
                            &update,
                            &[
                                &id.to_string(),
                                &status.as_str(),
                                &(attempts as i32),
                                &code.map(i32::from),
                                &error.as_deref(),
                                &next.map(unix_ms),
                                &done,
                                &self.owner,
                                &(round as i32),
                            ],
                        )
                        .await?;
                    }
                    OutboxWrite::Drop { id } => {
                        tx.execute(
                            "DELETE FROM hitl_deliveries WHERE id = $1",
                            &[&id.to_string()],
                        )
                        .await?;
                    }
                    OutboxWrite::Redeliver { id, at } => {
                        tx.execute(
                            "UPDATE hitl_deliveries
                             SET status = 'pending', next_ms = $2, done_ms = NULL,
                                 owner = NULL, lease_until = NULL, round = round + 1
                             WHERE id = $1",
                            &[&id.to_string(), &unix_ms(at)],
                        )
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn of_task(
        self: Arc<Self>,
        id: TaskId,
    ) -> BoxFuture<'static, Result<Vec<Delivery>, StoreError>> {
        Box::pin(async move {
            let client = self.store.pool.get().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM hitl_deliveries WHERE task_id = $1
                         ORDER BY event_seq, created_ms, id"
                    ),
                    &[&id.to_string()],
                )
                .await?;
            rows.iter().map(decode).collect()
        })
    }

    fn get(self: Arc<Self>, id: Uuid) -> BoxFuture<'static, Result<Option<Delivery>, StoreError>> {
        Box::pin(async move {
            let client = self.store.pool.get().await?;
            let row = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM hitl_deliveries WHERE id = $1"),
                    &[&id.to_string()],
                )
                .await?;
            row.as_ref().map(decode).transpose()
        })
    }

    fn fill(
        self: Arc<Self>,
    ) -> BoxFuture<'static, Result<(u64, Option<OffsetDateTime>), StoreError>> {
        Box::pin(async move {
            let client = self.store.pool.get().await?;
            let row = client
                .query_one(
                    "SELECT count(*), min(created_ms) FROM hitl_deliveries WHERE status = 'pending'",
                    &[],
                )
                .await?;
            let oldest: Option<i64> = row.get(1);
            Ok((
                row.get::<_, i64>(0) as u64,
                oldest.map(|ms| from_unix_ms(0, ms)).transpose()?,
            ))
        })
    }
}
