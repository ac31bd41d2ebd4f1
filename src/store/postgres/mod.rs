//! The shared store: one PostgreSQL database that several hitl instances use at once.
//!
//! The database decides. Every change is one transaction that locks the task's row, applies the
//! registry's rules ([`crate::model::changes`]) to the task as the database has it, takes the
//! next number from a one-row counter (whose row lock makes transactions commit in sequence
//! order, so a reader never sees event N+1 before N), writes the event, the task and its audit
//! trail, and announces the number with `NOTIFY` (ids only, never payloads). Every instance reads
//! the journal in order from there (the `cluster` module).
//!
//! Changes queue up and are written in batches ([`batch`]), one transaction (and one fsync) for
//! whatever queued while the previous batch was committing.
//!
//! Tables (`hitl_` prefixed, in the connection's schema): `hitl_seq` the counter, `hitl_tasks`
//! each task's state, audit trail and work claim (`owner`, `lease_until`), `hitl_events` the
//! journal, `hitl_migrations` the schema versions applied (under an advisory lock, so instances
//! starting together migrate once).

use std::{str::FromStr, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sha2::Digest as _;
use tokio_postgres::{NoTls, Row};

mod batch;
mod claims;
mod outbox;
mod read;
mod rows;
mod write;

use rows::*;

pub use batch::{BoxedChange, Changed, Request};
pub use outbox::{PgOutbox, PgOutgoing};

use futures_util::future::BoxFuture;

use super::{History, Recovered, Retention, StoreError, event_kind, from_unix_ms, unix_ms};
use crate::{
    model::audit::AuditEntry,
    model::event::{Event, Scope},
    model::task::{StoredKey, Task, TaskId, now},
};

/// Schema versions, applied in order inside one transaction each.
const MIGRATIONS: &[&str] = &[
    // 1: the counter, the tasks with their claims, the journal.
    "CREATE TABLE hitl_seq (
         one boolean PRIMARY KEY DEFAULT true CHECK (one),
         seq bigint NOT NULL
     );
     INSERT INTO hitl_seq (one, seq) VALUES (true, 0);
     CREATE TABLE hitl_tasks (
         id          text PRIMARY KEY,
         seq         bigint NOT NULL,
         status      text NOT NULL,
         body        text NOT NULL,
         history     text NOT NULL,
         owner       text,
         lease_until timestamptz
     );
     CREATE INDEX hitl_tasks_live ON hitl_tasks (lease_until)
         WHERE status IN ('pending', 'running', 'waiting_for_review');
     CREATE TABLE hitl_events (
         seq      bigint PRIMARY KEY,
         task_id  text NOT NULL,
         kind     text NOT NULL,
         at_ms    bigint NOT NULL,
         attempt  integer,
         text     text,
         task     text NOT NULL,
         task_seq bigint NOT NULL,
         audit    text
     );
     CREATE INDEX hitl_events_task ON hitl_events (task_id, seq);",
    // 2: submission keys, each written with the task it made (pruned after a day).
    "CREATE TABLE hitl_submit_keys (
         owner   text NOT NULL,
         key     text NOT NULL,
         scope   text NOT NULL,
         task_id text NOT NULL,
         digest  text NOT NULL,
         at_ms   bigint NOT NULL,
         PRIMARY KEY (owner, key, scope)
     );
     CREATE INDEX hitl_submit_keys_at ON hitl_submit_keys (at_ms);",
    // 3: the outbox: deliveries, each written with the event that made it, taken for sending
    // by one instance at a time.
    "CREATE TABLE hitl_deliveries (
         id               text PRIMARY KEY,
         task_id          text NOT NULL,
         event_seq        bigint NOT NULL,
         kind             text NOT NULL,
         url              text NOT NULL,
         host             text NOT NULL,
         chain            text,
         body             text NOT NULL,
         status           text NOT NULL,
         attempts         integer NOT NULL,
         last_status_code integer,
         last_error       text,
         created_ms       bigint NOT NULL,
         next_ms          bigint,
         done_ms          bigint,
         while_waiting    integer,
         round            integer NOT NULL DEFAULT 0,
         owner            text,
         lease_until      timestamptz
     );
     CREATE INDEX hitl_deliveries_task ON hitl_deliveries (task_id, event_seq);
     CREATE INDEX hitl_deliveries_due ON hitl_deliveries (next_ms) WHERE status = 'pending';
     CREATE INDEX hitl_deliveries_chain ON hitl_deliveries (chain, task_id, event_seq)
         WHERE status = 'pending';
     CREATE INDEX hitl_deliveries_done ON hitl_deliveries (done_ms) WHERE status <> 'pending';",
];

/// Settings of every pooled session hitl opens, set as it is opened (so a session cut and
/// opened again has them too). `SET`, not the `options` startup parameter, which poolers such as
/// PgBouncer refuse; a setting the URL's own `options` names is left as the URL says.
///
/// An instance that freezes (SIGSTOP, a VM paused, a network that silently drops its packets)
/// in the middle of a transaction would hold its row locks, the event counter's among them,
/// for as long as it stays frozen, and every other instance's writes would wait on it. hitl's
/// transactions never wait on anything between statements but a round trip, so the server
/// cuts a session idle in one for 5 s (rolling it back and freeing its locks); a statement
/// that runs 30 s is stopped; and the server's keepalives find a vanished client in about 16 s.
/// The instance whose session was cut finds it closed, opens another, and catches up.
const SESSION: &[(&str, &str)] = &[
    ("idle_in_transaction_session_timeout", "5000"),
    ("statement_timeout", "30000"),
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "2"),
    ("tcp_keepalives_count", "3"),
];

/// The `SET` statements for [`SESSION`] that the URL's `options` do not override.
fn session_settings(config: &tokio_postgres::Config) -> String {
    let theirs = config.get_options().unwrap_or_default();
    SESSION
        .iter()
        .filter(|(name, _)| !theirs.contains(name))
        .map(|(name, value)| format!("SET {name} = {value};"))
        .collect::<Vec<_>>()
        .join(" ")
}

const LIVE: &str = "('pending', 'running', 'waiting_for_review')";
const EVENT_COLUMNS: &str = "seq, kind, at_ms, attempt, text, task, task_seq, audit";

/// Why a change was not made.
#[derive(Debug)]
pub enum WriteError {
    NotFound,
    /// The rules refused it; the task as the database has it.
    Conflict(crate::model::changes::Refused, Arc<Task>),
    /// The change is the workflow's, and another instance holds the task's claim.
    NotClaimed,
    /// The new task's submission key made task `0` first, a submission with digest `1`.
    KeyBound(TaskId, Box<str>),
    Store(StoreError),
}

impl<E: Into<StoreError>> From<E> for WriteError {
    fn from(error: E) -> Self {
        Self::Store(error.into())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(describe(&error))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => StoreError::Postgres(format!("no connection to the database: {other}")),
        }
    }
}

/// The error with its cause: tokio-postgres says only "db error" at the top.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// A pool of at most `connections` to `config`, each step bounded in time; it connects when
/// first asked for a connection.
fn pool(config: &tokio_postgres::Config, connections: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let settings: Arc<str> = session_settings(config).into();
    Pool::builder(manager)
        .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
            let settings = settings.clone();
            Box::pin(async move {
                if !settings.is_empty() {
                    client
                        .batch_execute(&settings)
                        .await
                        .map_err(deadpool_postgres::HookError::Backend)?;
                }
                Ok(())
            })
        }))
        .max_size(connections.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Config(format!("cannot set up the connection pool: {e}")))
}

/// One journal row, read back: the event (its task without an audit trail) and the audit
/// entries its change added.
pub struct JournalRow {
    pub event: Event,
    pub fresh: Vec<Arc<AuditEntry>>,
}

pub struct PgStore {
    pool: Pool,
    /// How to open the listener's own connection (a pooled one cannot `LISTEN`).
    config: tokio_postgres::Config,
    /// The `NOTIFY` channel: one per schema, so databases shared by tests do not cross.
    pub channel: String,
    /// Who the batches' events are delivered to (set once, when anything is delivered).
    outgoing: std::sync::OnceLock<PgOutgoing>,
}

impl PgStore {
    /// Connects to `url` with at most `connections` at once, and brings the schema up to date.
    pub async fn connect(url: &str, connections: usize) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Config(format!("--database-url is not a PostgreSQL URL: {e}"))
        })?;
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        if config.get_tcp_user_timeout().is_none() {
            // A connection whose peer stopped acknowledging (a cut network) fails within this,
            // rather than hanging a query until the kernel gives up minutes later.
            config.tcp_user_timeout(Duration::from_secs(20));
        }
        if config.get_application_name().is_none() {
            config.application_name("hitl");
        }
        let pool = pool(&config, connections)?;
        let client = pool.get().await?;
        let schema: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .await?
            .get(0);
        let Some(schema) = schema else {
            return Err(StoreError::Config(
                "the database has no schema to use: create the one in search_path, or use public"
                    .into(),
            ));
        };
        drop(client);
        let digest = sha2::Sha256::digest(schema.as_bytes());
        let channel = format!("hitl_{}", hex::encode(&digest[..8]));
        let store = Self {
            pool,
            config,
            channel,
            outgoing: std::sync::OnceLock::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A store that has not connected, pointing where nothing listens: for tests of what
    /// happens before any query is made.
    #[cfg(test)]
    pub(crate) fn unconnected() -> Self {
        let config = tokio_postgres::Config::from_str("postgresql://hitl@127.0.0.1:1/none")
            .expect("a valid URL");
        Self {
            pool: pool(&config, 1).expect("a pool"),
            config,
            channel: "hitl_test".into(),
            outgoing: std::sync::OnceLock::new(),
        }
    }

    /// From now on, the events this instance writes make deliveries to `outgoing`'s receivers.
    pub fn deliver(&self, outgoing: PgOutgoing) {
        let _ = self.outgoing.set(outgoing);
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Instances starting at once wait here for each other: the schema migrates once.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('hitl migrations ' || current_schema()))",
            &[],
        )
        .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS hitl_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
        let found: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM hitl_migrations", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if found > known {
            return Err(StoreError::TooNew {
                path: "the PostgreSQL schema".into(),
                found: found.into(),
                known: known.into(),
            });
        }
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO hitl_migrations (version) VALUES ($1)",
                &[&(version as i32 + 1)],
            )
            .await?;
            tracing::info!(version = version + 1, "database schema migrated");
        }
        tx.commit().await?;
        Ok(())
    }

    /// A connection of its own for `LISTEN`, and the driver future that delivers its
    /// notifications (it ends when the connection does).
    pub async fn listener(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        StoreError,
    > {
        Ok(self.config.connect(NoTls).await?)
    }
}

/// Replays and tasks that left memory, read straight from the database.
impl History for PgStore {
    fn events_between(
        self: Arc<Self>,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> BoxFuture<'static, Result<Option<Vec<Arc<Event>>>, StoreError>> {
        Box::pin(async move { self.events_between_async(after, upto, scope).await })
    }

    fn task(
        self: Arc<Self>,
        id: TaskId,
    ) -> BoxFuture<'static, Result<Option<Arc<Task>>, StoreError>> {
        Box::pin(async move { self.task_async(id).await })
    }
}
