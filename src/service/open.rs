//! Building the service for the configured store: memory, a SQLite journal, or a shared
//! PostgreSQL database; restoring the tasks the store holds and resuming their work; and the
//! last steps of a shutdown.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{Backing, Durable, Hitl, Service};
use crate::{
    auth::{Auth, Users},
    cluster::{self, Shared},
    config::{AuthConfig, AuthMode, Config, ProcessorKind, StoreKind},
    delivery::{Deliveries, Sender},
    events::EventLog,
    model::delivery::Receivers,
    model::task::Maker,
    model::task::{ReviewTimeout, Task, now},
    registry::Registry,
    review::{ProcessOptions, Processor, ReviewFlow},
    store::{
        Retention, Store, StoreError,
        journal::{self, Journal, Outgoing},
        outbox::Fill,
        postgres::{PgOutbox, PgOutgoing, PgStore},
        sqlite::{SqliteOutbox, SqliteStore},
    },
    submissions::SubmitKeys,
};

impl Hitl {
    /// Opens the configured store, rebuilds the tasks it holds and resumes their work, with the
    /// simulated processor.
    pub fn open(config: &Config, shutdown: CancellationToken) -> Result<Self, StoreError> {
        let processor = crate::processors::build(config).map_err(StoreError::Config)?;
        Self::with_processor(config, processor, shutdown)
    }

    /// Opens the configured store, whichever it is: [`Self::open`], or for `--store postgres`
    /// (whose client is asynchronous) [`Self::connect`].
    pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Self, StoreError> {
        let processor = crate::processors::build(config).map_err(StoreError::Config)?;
        match config.store {
            StoreKind::Postgres => Self::connect(config, processor, shutdown).await,
            _ => Self::with_processor(config, processor, shutdown),
        }
    }

    /// Joins the service shared by every instance on `--database-url`: reads its tasks, starts
    /// replicating its journal, and takes over work whose claim has run out.
    pub async fn connect(
        config: &Config,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        crate::metrics::install();
        let url = config.database_url.as_deref().ok_or_else(|| {
            StoreError::Config(
                "--store postgres needs --database-url (or HITL_DATABASE_URL)".into(),
            )
        })?;
        let store = Arc::new(PgStore::connect(url, config.database_connections as usize).await?);
        let receivers = config.receivers().map_err(StoreError::Config)?;
        let recovered = store.load_async(Retention::DURABLE_MEMORY_CAP).await?;
        let events = EventLog::replicated(config.retain_events, store.clone(), &recovered);
        let lease = Duration::from_millis(config.claim_lease_ms);
        let (shared, writes) = Shared::new(store.clone(), lease, events.clone());
        let deliveries = config.webhooks.enabled().then(|| {
            let deliveries = Deliveries::new(
                Arc::new(PgOutbox::new(store.clone(), shared.instance.clone())),
                Fill::new(config.webhooks.max_pending, 0, true),
            );
            store.deliver(PgOutgoing {
                receivers: receivers.clone(),
                fill: deliveries.fill.clone(),
                wake: deliveries.wake.clone(),
            });
            deliveries
        });
        let registry =
            Registry::with_authority(events, shared.clone()).keep_finished(config.keep_finished);
        let backing = Backing::Shared(shared.clone());
        let hitl = Self::assemble(config, registry, backing, processor, shutdown, deliveries)?;
        // The tasks as they were; their work is resumed by whichever instance claims it.
        hitl.restore(recovered.tasks, false);
        // Other instances' deliveries are theirs to send; this one looks for any whose sender
        // died (a lease run out) this often.
        hitl.send_deliveries(config, &receivers, Duration::from_secs(1));
        let token = hitl.shutdown.clone();
        tokio::spawn(cluster::replicate(
            shared.clone(),
            hitl.registry.clone(),
            token.clone(),
        ));
        tokio::spawn(cluster::write(Arc::downgrade(&shared), writes));
        tokio::spawn(cluster::keep_claims(
            shared,
            hitl.registry.clone(),
            hitl.flow.clone(),
            config.retain_events,
            token,
        ));
        Ok(hitl)
    }

    pub fn with_processor(
        config: &Config,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        crate::metrics::install();
        match config.store {
            StoreKind::Memory => {
                config.receivers().map_err(StoreError::Config)?;
                let events = EventLog::in_memory(config.retain_events);
                let registry = Registry::new(events).keep_finished(config.keep_finished);
                Self::assemble(config, registry, Backing::Memory, processor, shutdown, None)
            }
            StoreKind::Postgres => Err(StoreError::Config(
                "--store postgres is opened with Hitl::start or Hitl::connect".into(),
            )),
            StoreKind::Sqlite => {
                let store = Arc::new(SqliteStore::open(&config.data_dir)?);
                Self::journaled(config, store.clone(), Some(store), processor, shutdown)
            }
        }
    }

    /// A durable service over `store` (the SQLite store, or in tests one that fails on cue):
    /// rebuilds the tasks it holds, resumes their work, and journals every change to it.
    pub fn with_store(
        config: &Config,
        store: Arc<dyn Store>,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        Self::journaled(config, store, None, processor, shutdown)
    }

    /// [`Self::with_store`], with the outbox of `sqlite` when it is the store (deliveries are
    /// sent only from it).
    fn journaled(
        config: &Config,
        store: Arc<dyn Store>,
        sqlite: Option<Arc<SqliteStore>>,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        crate::metrics::install();
        let recovered = store.load(Retention::DURABLE_MEMORY_CAP)?;
        let (sender, receiver) = journal::channel();
        let receivers = config.receivers().map_err(StoreError::Config)?;
        let deliveries = match sqlite {
            Some(sqlite) if config.webhooks.enabled() => {
                let outbox = SqliteOutbox::new(sqlite, sender.clone());
                let fill = Fill::new(config.webhooks.max_pending, outbox.pending()?, false);
                Some(Deliveries::new(Arc::new(outbox), fill))
            }
            _ => None,
        };
        let outgoing = match &deliveries {
            Some(deliveries) => {
                let wake = deliveries.wake.clone();
                Outgoing {
                    receivers: receivers.clone(),
                    fill: deliveries.fill.clone(),
                    wake: Box::new(move || wake.notify_one()),
                }
            }
            None => Outgoing::none(),
        };
        let events = EventLog::durable(
            config.retain_events,
            store.clone(),
            sender.clone(),
            &recovered,
        );
        let log = events.clone();
        let journal = Journal::spawn(
            store.clone(),
            Box::new(move |seq| log.mark_durable(seq)),
            &sender,
            receiver,
            config.retain_events,
            outgoing,
        )
        .map_err(|source| StoreError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let durable = Arc::new(Durable { store, journal });
        let hitl = Self::assemble(
            config,
            Registry::new(events).keep_finished(config.keep_finished),
            Backing::Journal(durable),
            processor,
            shutdown,
            deliveries,
        )?;
        hitl.restore(recovered.tasks, true);
        hitl.send_deliveries(config, &receivers, Duration::from_secs(30));
        Ok(hitl)
    }

    /// The service around its registry, whatever keeps the tasks.
    fn assemble(
        config: &Config,
        registry: Registry,
        backing: Backing,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
        deliveries: Option<Arc<Deliveries>>,
    ) -> Result<Self, StoreError> {
        let auth = auth_from(&config.auth)?.map(Arc::new);
        Ok(Self(Arc::new(Service {
            flow: Arc::new(ReviewFlow::new(
                registry.clone(),
                processor,
                ProcessOptions::from(&config.processing),
            )),
            registry,
            default_max_attempts: config.max_attempts,
            shutdown,
            backing,
            limits: config.limits,
            auth,
            allow_self_review: config.auth.allow_self_review,
            review_timeout: config.review_timeout.map(|timeout| ReviewTimeout {
                seconds: timeout.as_secs().max(1),
                policy: config.review_timeout_policy,
            }),
            submit_keys: SubmitKeys::default(),
            maker: match config.processing.processor {
                ProcessorKind::Simulated => Maker::Simulated,
                ProcessorKind::Command => Maker::Command,
                ProcessorKind::Openai => Maker::Openai,
            },
            max_retries: config.processing.max_retries,
            deliveries,
            webhooks: config.webhooks.clone(),
        })))
    }

    /// Starts the sender of the outbox, if anything is delivered; `poll` is how often it looks
    /// for deliveries nobody woke it for.
    fn send_deliveries(&self, config: &Config, receivers: &Receivers, poll: Duration) {
        let Some(deliveries) = &self.deliveries else {
            return;
        };
        let registry = self.registry.clone();
        let before = config.webhooks.notify_before;
        let sender = Sender::new(
            deliveries.clone(),
            &config.webhooks,
            receivers,
            poll,
            // A reminder goes only while its review is open and its deadline near: one that
            // was extended since has a reminder of its own, later.
            Box::new(move |id, attempt| {
                registry.get(id).is_some_and(|task| {
                    let near = match (before, task.review_deadline) {
                        (Some(before), Some(deadline)) => {
                            deadline - before <= now() + Duration::from_secs(2)
                        }
                        _ => false,
                    };
                    task.awaits_decision_on(attempt) && near
                })
            }),
        );
        tokio::spawn(Arc::new(sender).run(self.shutdown.clone()));
    }

    /// Puts recovered tasks back and, if `work` says this instance does their work (with several
    /// instances, whichever claims a task does), carries on with the unfinished ones where they
    /// were: an attempt that was being processed runs again under the same number, and a review
    /// stays open on the same attempt.
    fn restore(&self, mut tasks: Vec<Arc<Task>>, work: bool) {
        // In the order they last changed, so the finished ones queue up to leave memory
        // (`--keep-finished`) oldest first.
        tasks.sort_unstable_by_key(|task| task.seq);
        let (mut resumed, total) = (0, tasks.len());
        for task in tasks {
            let live = !task.status.is_terminal();
            let handle = self.registry.restore(task, &self.shutdown);
            if live && work {
                resumed += 1;
                self.flow.resume(handle);
            }
        }
        self.registry.evict_finished();
        if total > 0 {
            tracing::info!(
                tasks = total,
                resumed,
                in_memory = self.registry.len(),
                "tasks recovered from the store"
            );
        }
    }

    /// Writes out every accepted change, stops the journal and lets the data directory go: the
    /// last step of a shutdown. Cancel `shutdown` first, so no flow is still making changes.
    pub async fn close(&self) {
        match &self.backing {
            Backing::Memory => {}
            Backing::Journal(durable) => {
                durable.journal.close().await;
                durable.store.release();
            }
            Backing::Shared(shared) => shared.close().await,
        }
    }

    /// Is the service able to accept changes? In durable mode: the store answers and its
    /// last write succeeded.
    pub async fn ready(&self) -> Result<(), String> {
        let durable = match &self.backing {
            Backing::Memory => return Ok(()),
            Backing::Shared(shared) => return shared.ready().await,
            Backing::Journal(durable) => durable.clone(),
        };
        if !durable.journal.is_healthy() {
            return Err("the store's last write failed; changes are not being saved".into());
        }
        let store = durable.store.clone();
        match tokio::task::spawn_blocking(move || store.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Users and sessions for `--auth token`, or why they cannot be set up.
fn auth_from(config: &AuthConfig) -> Result<Option<Auth>, StoreError> {
    if config.mode == AuthMode::None {
        return Ok(None);
    }
    let mut spec = config.users.clone().unwrap_or_default();
    if let Some(path) = &config.users_file {
        let file = std::fs::read_to_string(path).map_err(|e| {
            StoreError::Config(format!(
                "cannot read the users file {}: {e}",
                path.display()
            ))
        })?;
        spec.push('\n');
        spec.push_str(&file);
    }
    let users: Users = spec
        .parse()
        .map_err(|e| StoreError::Config(format!("--auth token: {e}")))?;
    Ok(Some(Auth::new(
        users,
        config.session_key.as_deref(),
        Duration::from_secs(config.session_hours * 3600),
        config.allow_self_review,
    )))
}
