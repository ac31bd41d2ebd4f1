//! What an instance reads from the shared database: everything at start-up, the journal after
//! a number, one task, the head, submission keys; and the pruning of old events.

use std::sync::Arc;

use super::*;

impl PgStore {
    /// Everything needed to start an instance: every task, the newest events, the head, read
    /// in one snapshot so nothing falls between them.
    pub async fn load_async(&self, recent: usize) -> Result<Recovered, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let head: i64 = tx.query_one("SELECT seq FROM hitl_seq", &[]).await?.get(0);
        let task_rows = tx
            .query("SELECT seq, body, history FROM hitl_tasks", &[])
            .await?;
        let event_rows = tx
            .query(
                &format!("SELECT {EVENT_COLUMNS} FROM hitl_events ORDER BY seq DESC LIMIT $1"),
                &[&(recent as i64)],
            )
            .await?;
        // Decoded after the commit: the session is never idle in a transaction for longer than
        // a round trip (the server cuts one that is, see [`SESSION`]).
        tx.commit().await?;
        let mut tasks = Vec::with_capacity(task_rows.len());
        for row in task_rows {
            tasks.push(Arc::new(decode_task(
                row.get::<_, i64>(0) as u64,
                row.get(1),
                Some(row.get(2)),
            )?));
        }
        let mut events = Vec::with_capacity(event_rows.len());
        for row in event_rows.iter().rev() {
            events.push(Arc::new(decode_event(row)?.event));
        }
        Ok(Recovered {
            tasks,
            recent: events,
            head: head as u64,
        })
    }
    /// Up to `limit` journal rows after `after`, in order.
    pub async fn events_after(
        &self,
        after: u64,
        limit: i64,
    ) -> Result<Vec<JournalRow>, StoreError> {
        let client = self.pool.get().await?;
        let read = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM hitl_events WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .await?;
        let rows = client.query(&read, &[&(after as i64), &limit]).await?;
        rows.iter().map(decode_event).collect()
    }
    /// One task as the database has it, with its audit trail.
    pub async fn task_async(&self, id: TaskId) -> Result<Option<Arc<Task>>, StoreError> {
        let client = self.pool.get().await?;
        let read = client
            .prepare_cached("SELECT seq, body, history FROM hitl_tasks WHERE id = $1")
            .await?;
        let Some(row) = client.query_opt(&read, &[&id.to_string()]).await? else {
            return Ok(None);
        };
        let task = decode_task(row.get::<_, i64>(0) as u64, row.get(1), Some(row.get(2)))?;
        Ok(Some(Arc::new(task)))
    }
    /// The newest sequence number committed.
    pub async fn head(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let read = client.prepare_cached("SELECT seq FROM hitl_seq").await?;
        let head: i64 = client.query_one(&read, &[]).await?.get(0);
        Ok(head as u64)
    }
    pub async fn check_async(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.query_one("SELECT seq FROM hitl_seq", &[]).await?;
        Ok(())
    }
    pub(super) async fn events_between_async(
        &self,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> Result<Option<Vec<Arc<Event>>>, StoreError> {
        if upto <= after {
            return Ok(Some(Vec::new()));
        }
        let client = self.pool.get().await?;
        let rows = match scope {
            Scope::All => {
                client
                    .query(
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM hitl_events
                             WHERE seq > $1 AND seq <= $2 ORDER BY seq"
                        ),
                        &[&(after as i64), &(upto as i64)],
                    )
                    .await?
            }
            Scope::Task(id) => {
                client
                    .query(
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM hitl_events
                             WHERE task_id = $3 AND seq > $1 AND seq <= $2 ORDER BY seq"
                        ),
                        &[&(after as i64), &(upto as i64), &id.to_string()],
                    )
                    .await?
            }
        };
        let events = rows
            .iter()
            .map(|row| decode_event(row).map(|row| Arc::new(row.event)))
            .collect::<Result<Vec<_>, _>>()?;
        let first: Option<i64> = client
            .query_one("SELECT min(seq) FROM hitl_events", &[])
            .await?
            .get(0);
        match first {
            Some(first) if first as u64 <= after + 1 => Ok(Some(events)),
            _ => Ok(None),
        }
    }
    /// The task a submission key made, and that submission's digest.
    pub async fn submit_key_async(
        &self,
        key: &StoredKey,
    ) -> Result<Option<(TaskId, Box<str>)>, StoreError> {
        let client = self.pool.get().await?;
        let read = client
            .prepare_cached(
                "SELECT task_id, digest FROM hitl_submit_keys
                 WHERE owner = $1 AND key = $2 AND scope = $3 AND at_ms >= $4",
            )
            .await?;
        let row = client
            .query_opt(
                &read,
                &[
                    &&*key.owner,
                    &&*key.key,
                    &&*key.scope,
                    &crate::store::oldest_key_ms(),
                ],
            )
            .await?;
        row.map(|row| {
            let id: &str = row.get(0);
            let id = id.parse().map_err(|e| {
                StoreError::Decode(format!("a submission key's task id {id:?}: {e}"))
            })?;
            Ok((id, row.get::<_, &str>(1).into()))
        })
        .transpose()
    }
    pub async fn prune_async(&self, retention: Retention) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM hitl_submit_keys WHERE at_ms < $1",
                &[&crate::store::oldest_key_ms()],
            )
            .await?;
        self.prune_deliveries(&client).await?;
        let deleted = match retention {
            Retention::Count(keep) => {
                client
                    .execute(
                        "DELETE FROM hitl_events WHERE seq <= (SELECT seq FROM hitl_seq) - $1",
                        &[&(keep.min(i64::MAX as u64) as i64)],
                    )
                    .await?
            }
            Retention::Age(age) => {
                let cutoff = unix_ms(now()) - age.as_millis().min(i64::MAX as u128) as i64;
                client
                    .execute(
                        "DELETE FROM hitl_events WHERE seq <= (
                             SELECT max(seq) FROM hitl_events WHERE at_ms < $1)",
                        &[&cutoff],
                    )
                    .await?
            }
        };
        Ok(deleted)
    }
}
