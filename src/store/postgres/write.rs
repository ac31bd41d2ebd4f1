//! What one batch writes, column by column: its journal rows, its new and changed tasks, the
//! counter, the notification, the deliveries its events make, and the submission keys its new tasks bind (looked up under the
//! counter's lock, so two instances never bind one key twice).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, OnceLock},
    time::Duration,
};

use time::OffsetDateTime;

use super::{PgOutgoing, PgStore, encode_task};
use crate::store::unix_ms;
use crate::{
    model::audit::AuditEntry,
    model::delivery::{NewDelivery, receiver_of},
    model::event::{Event, EventKind},
    model::task::{StoredKey, Task, TaskId},
    store::{StoreError, outbox::OVERFLOW},
};

/// The journal rows a batch writes, column by column (one `INSERT … SELECT FROM UNNEST`).
#[derive(Default)]
pub(super) struct Events {
    pub(super) seq: Vec<i64>,
    pub(super) task_id: Vec<String>,
    pub(super) kind: Vec<&'static str>,
    pub(super) at_ms: Vec<i64>,
    pub(super) attempt: Vec<Option<i32>>,
    pub(super) text: Vec<Option<String>>,
    pub(super) task: Vec<String>,
    pub(super) task_seq: Vec<i64>,
    pub(super) audit: Vec<Option<String>>,
}

impl Events {
    pub(super) fn push(
        &mut self,
        seq: u64,
        at: time::OffsetDateTime,
        task: &Task,
        progress: Option<(u32, &str)>,
        fresh: &[Arc<AuditEntry>],
    ) -> Result<(), StoreError> {
        let encode = |e: serde_json::Error| StoreError::Decode(e.to_string());
        self.seq.push(seq as i64);
        self.task_id.push(task.id.to_string());
        self.kind.push(if progress.is_some() {
            "progress"
        } else {
            "status"
        });
        self.at_ms.push(unix_ms(at));
        self.attempt
            .push(progress.map(|(attempt, _)| attempt as i32));
        self.text.push(progress.map(|(_, text)| text.to_owned()));
        self.task.push(serde_json::to_string(task).map_err(encode)?);
        self.task_seq.push(task.seq as i64);
        self.audit.push(if fresh.is_empty() {
            None
        } else {
            Some(serde_json::to_string(fresh).map_err(encode)?)
        });
        Ok(())
    }
}

/// The submission keys a batch binds, column by column.
#[derive(Default)]
pub(super) struct Keys {
    pub(super) owner: Vec<String>,
    pub(super) key: Vec<String>,
    pub(super) scope: Vec<String>,
    pub(super) task_id: Vec<String>,
    pub(super) digest: Vec<String>,
}

impl Keys {
    pub(super) fn push(&mut self, key: &StoredKey, task: TaskId) {
        self.owner.push(key.owner.to_string());
        self.key.push(key.key.to_string());
        self.scope.push(key.scope.to_string());
        self.task_id.push(task.to_string());
        self.digest.push(key.digest.to_string());
    }
}

/// The deliveries one batch makes, column by column.
#[derive(Default)]
pub(super) struct NewRows {
    made: Vec<NewDelivery>,
}

impl NewRows {
    /// Plans the deliveries of a status event (`seq`, task as it left it).
    pub(super) fn plan(
        &mut self,
        outgoing: Option<&PgOutgoing>,
        seq: u64,
        at: OffsetDateTime,
        task: &Task,
    ) {
        let Some(outgoing) = outgoing else {
            return;
        };
        if !outgoing.receivers.any() {
            return;
        }
        let event = Event {
            seq,
            at,
            kind: EventKind::Status,
            task: Arc::new(task.clone()),
            json: OnceLock::new(),
        };
        self.made.extend(outgoing.receivers.plan(&event));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// Inserts them in the batch's transaction.
    pub(super) async fn insert(
        mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        outgoing: Option<&PgOutgoing>,
    ) -> Result<(), StoreError> {
        if self.made.is_empty() {
            return Ok(());
        }
        if let Some(outgoing) = outgoing {
            outgoing.fill.admit(&mut self.made);
        }
        let mut c = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut d = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut hosts = Vec::new();
        for made in &self.made {
            c.0.push(made.id.to_string());
            c.1.push(made.task_id.to_string());
            c.2.push(made.event_seq as i64);
            c.3.push(made.kind.as_str());
            c.4.push(made.url.to_string());
            c.5.push(made.kind.ordered().then(|| made.url.to_string()));
            c.6.push(made.body.to_string());
            let (status, error, next, done) = if made.overflow {
                ("failed", Some(OVERFLOW), None, Some(unix_ms(made.created)))
            } else {
                ("pending", None, Some(unix_ms(made.due)), None)
            };
            d.0.push(status);
            d.1.push(error);
            d.2.push(unix_ms(made.created));
            d.3.push(next);
            d.4.push(done);
            d.5.push(made.while_waiting.map(|a| a as i32));
            hosts.push(receiver_of(&made.url).to_owned());
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO hitl_deliveries (id, task_id, event_seq, kind, url, chain, body,
                     status, last_error, created_ms, next_ms, done_ms, while_waiting, host,
                     attempts)
                 SELECT u.*, 0 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[],
                     $11::bigint[], $12::bigint[], $13::int[], $14::text[]) AS u",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &c.0, &c.1, &c.2, &c.3, &c.4, &c.5, &c.6, &d.0, &d.1, &d.2, &d.3, &d.4, &d.5,
                &hosts,
            ],
        )
        .await?;
        Ok(())
    }
}

/// (owner, key, scope) of a submission key.
pub(super) type KeyId = (Arc<str>, Box<str>, Box<str>);

impl PgStore {
    /// The submission keys of the batch's new tasks that are bound already, to the task they
    /// made and its digest.
    pub(super) async fn bound_keys(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        asked: &Keys,
    ) -> Result<HashMap<KeyId, (TaskId, Box<str>)>, StoreError> {
        let mut bound = HashMap::new();
        if asked.owner.is_empty() {
            return Ok(bound);
        }
        let read = tx
            .prepare_cached(
                "SELECT k.owner, k.key, k.scope, k.task_id, k.digest
                 FROM hitl_submit_keys AS k
                 JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS a (owner, key, scope)
                   USING (owner, key, scope)
                 WHERE k.at_ms >= $4",
            )
            .await?;
        let oldest = crate::store::oldest_key_ms();
        for row in tx
            .query(&read, &[&asked.owner, &asked.key, &asked.scope, &oldest])
            .await?
        {
            let id: &str = row.get(3);
            let id = id.parse().map_err(|e| {
                StoreError::Decode(format!("a submission key's task id {id:?}: {e}"))
            })?;
            let key: KeyId = (
                row.get::<_, &str>(0).into(),
                row.get::<_, &str>(1).into(),
                row.get::<_, &str>(2).into(),
            );
            bound.insert(key, (id, row.get::<_, &str>(4).into()));
        }
        Ok(bound)
    }

    /// The batch's events, its new tasks, the final state of the tasks it changed, the counter
    /// at `head` and the notification: sent together (pipelined on the connection), with
    /// statements prepared once per connection, so the counter is held for about one round trip.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_rows(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        owner: &str,
        lease: Duration,
        tasks: &HashMap<TaskId, (Task, Option<String>)>,
        touched: &HashSet<TaskId>,
        inserted: &[TaskId],
        events: &Events,
        head: u64,
    ) -> Result<(), StoreError> {
        let rows = |ids: &mut dyn Iterator<Item = &TaskId>| -> Result<_, StoreError> {
            let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for id in ids {
                let (task, _) = &tasks[id];
                let (body, history) = encode_task(task)?;
                columns.0.push(id.to_string());
                columns.1.push(task.seq as i64);
                columns.2.push(task.status.as_str());
                columns.3.push(body);
                columns.4.push(history);
            }
            Ok(columns)
        };
        let new = rows(&mut inserted.iter())?;
        let fresh: HashSet<&TaskId> = inserted.iter().collect();
        let changed = rows(&mut touched.iter().filter(|id| !fresh.contains(id)))?;
        let (insert_new, update_changed) = (!new.0.is_empty(), !changed.0.is_empty());
        let (head, channel, seconds) = (head as i64, head.to_string(), lease.as_secs_f64());
        let statements = futures_util::future::try_join5(
            tx.prepare_cached(
                "INSERT INTO hitl_events (seq, task_id, kind, at_ms, attempt, text, task, task_seq, audit)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::int[],
                                      $6::text[], $7::text[], $8::bigint[], $9::text[])",
            ),
            tx.prepare_cached(
                "INSERT INTO hitl_tasks (id, seq, status, body, history, owner, lease_until)
                 SELECT u.*, $6, now() + make_interval(secs => $7)
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS u",
            ),
            tx.prepare_cached(
                "UPDATE hitl_tasks AS t
                 SET seq = u.seq, status = u.status, body = u.body, history = u.history
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])
                     AS u (id, seq, status, body, history)
                 WHERE t.id = u.id",
            ),
            tx.prepare_cached("UPDATE hitl_seq SET seq = $1"),
            tx.prepare_cached("SELECT pg_notify($1, $2)"),
        );
        let (insert_events, insert_tasks, update_tasks, counter, notify) = statements.await?;
        let events = [
            &events.seq as &(dyn tokio_postgres::types::ToSql + Sync),
            &events.task_id,
            &events.kind,
            &events.at_ms,
            &events.attempt,
            &events.text,
            &events.task,
            &events.task_seq,
            &events.audit,
        ];
        let new = [
            &new.0 as &(dyn tokio_postgres::types::ToSql + Sync),
            &new.1,
            &new.2,
            &new.3,
            &new.4,
            &owner,
            &seconds,
        ];
        let changed = [
            &changed.0 as &(dyn tokio_postgres::types::ToSql + Sync),
            &changed.1,
            &changed.2,
            &changed.3,
            &changed.4,
        ];
        futures_util::future::try_join5(
            tx.execute(&insert_events, &events),
            async {
                if insert_new {
                    tx.execute(&insert_tasks, &new).await
                } else {
                    Ok(0)
                }
            },
            async {
                if update_changed {
                    tx.execute(&update_tasks, &changed).await
                } else {
                    Ok(0)
                }
            },
            tx.execute(&counter, &[&head]),
            tx.execute(&notify, &[&self.channel, &channel]),
        )
        .await?;
        Ok(())
    }
}
