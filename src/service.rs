//! The service handle every route shares: submit, decide, cancel, and what they need.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, Limits, StoreKind},
    events::EventLog,
    input::{DecisionRequest, NewTask},
    registry::{Registry, TransitionError},
    review::{Processor, ReviewFlow, SimulatedProcessor},
    store::{
        Retention, Store, StoreError,
        journal::{self, Journal},
        sqlite::SqliteStore,
    },
    task::{Feedback, Task, TaskId, now},
    web::protect::StreamGate,
};

/// How long a request waits for its change to reach the disk before it is answered 503.
const DURABLE_PATIENCE: Duration = Duration::from_secs(10);

/// Cheap-clone state of the running service.
#[derive(Clone)]
pub struct Hitl {
    /// The live tasks, their guarded transitions and the event log.
    pub registry: Registry,
    /// The review flow every task runs.
    pub flow: Arc<ReviewFlow>,
    /// Attempts allowed when a submission names none.
    pub default_max_attempts: u32,
    /// Cancelled when the server shuts down: ends every stream and every task's flow.
    pub shutdown: CancellationToken,
    /// The durable store and its writer; `None` in memory mode.
    pub durable: Option<Arc<Durable>>,
    /// What clients may ask of the service at once.
    pub limits: Limits,
    /// Counts open event streams against the limits.
    pub streams: StreamGate,
}

/// The store behind a durable service, and the journal that writes to it.
pub struct Durable {
    pub store: Arc<dyn Store>,
    pub journal: Journal,
}

impl Hitl {
    /// Opens the configured store, rebuilds the tasks it holds and resumes their work, with the
    /// simulated processor.
    pub fn open(config: &Config, shutdown: CancellationToken) -> Result<Self, StoreError> {
        let processor = SimulatedProcessor {
            delay: Duration::from_millis(config.process_delay_ms),
        };
        Self::with_processor(config, Arc::new(processor), shutdown)
    }

    pub fn with_processor(
        config: &Config,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        crate::metrics::install();
        let (events, durable, tasks) = match config.store {
            StoreKind::Memory => (EventLog::in_memory(config.retain_events), None, Vec::new()),
            StoreKind::Sqlite => {
                let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir)?);
                let recovered = store.load(Retention::DURABLE_MEMORY_CAP)?;
                let (sender, receiver) = journal::channel();
                let events = EventLog::durable(
                    config.retain_events,
                    store.clone(),
                    sender.clone(),
                    &recovered,
                );
                let journal = Journal::spawn(
                    store.clone(),
                    events.clone(),
                    &sender,
                    receiver,
                    config.retain_events,
                )
                .map_err(|source| StoreError::DataDir {
                    path: config.data_dir.clone(),
                    source,
                })?;
                let durable = Arc::new(Durable { store, journal });
                (events, Some(durable), recovered.tasks)
            }
        };
        let registry = Registry::new(events);
        let hitl = Self {
            flow: Arc::new(ReviewFlow::new(registry.clone(), processor)),
            registry,
            default_max_attempts: config.max_attempts,
            shutdown,
            durable,
            limits: config.limits,
            streams: StreamGate::new(
                config.limits.max_streams,
                config.limits.max_streams_per_client,
            ),
        };
        hitl.resume(tasks);
        Ok(hitl)
    }

    /// Puts recovered tasks back and carries on with the unfinished ones where they were: an
    /// attempt that was being processed runs again under the same number, and a review stays
    /// open on the same attempt.
    fn resume(&self, tasks: Vec<Arc<Task>>) {
        let (mut resumed, total) = (0, tasks.len());
        for task in tasks {
            let live = !task.status.is_terminal();
            let handle = self.registry.restore(task, &self.shutdown);
            if live {
                resumed += 1;
                self.flow.resume(handle);
            }
        }
        if total > 0 {
            tracing::info!(tasks = total, resumed, "tasks recovered from the store");
        }
    }

    /// Writes out every accepted change, stops the journal and lets the data directory go: the
    /// last step of a shutdown. Cancel `shutdown` first, so no flow is still making changes.
    pub async fn close(&self) {
        if let Some(durable) = &self.durable {
            durable.journal.close().await;
            durable.store.release();
        }
    }

    /// Is the service able to accept changes? In durable mode: the store answers and its
    /// last write succeeded.
    pub async fn ready(&self) -> Result<(), String> {
        let Some(durable) = self.durable.clone() else {
            return Ok(());
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

    /// Waits until `task`'s latest change is durable, so the caller may answer.
    async fn saved(&self, task: Arc<Task>) -> Result<Arc<Task>, TransitionError> {
        if self
            .registry
            .events
            .wait_durable(task.seq, DURABLE_PATIENCE)
            .await
        {
            Ok(task)
        } else {
            Err(TransitionError::NotSaved)
        }
    }

    /// Accepts a task and starts its flow.
    #[tracing::instrument(skip_all)]
    pub async fn submit(&self, new: NewTask) -> Result<Arc<Task>, TransitionError> {
        let max_attempts = new.max_attempts.unwrap_or(self.default_max_attempts);
        self.registry.reserve(self.limits.max_live_tasks as usize)?;
        let task = Task::new(TaskId::new(), new.input, max_attempts, now());
        let handle = self.registry.insert(task, &self.shutdown);
        let task = handle.task.clone();
        tracing::info!(task_id = %task.id, "task submitted");
        self.flow.spawn(handle);
        self.saved(task).await
    }

    /// Applies a reviewer's decision and returns the task once the flow has acted on it.
    #[tracing::instrument(skip(self, request), fields(decision = request.decision.as_str()))]
    pub async fn decide(
        &self,
        id: TaskId,
        request: DecisionRequest,
    ) -> Result<Arc<Task>, TransitionError> {
        let attempt = match request.attempt {
            Some(attempt) => attempt,
            None => {
                self.registry
                    .get(id)
                    .ok_or(TransitionError::NotFound(id))?
                    .attempt
            }
        };
        let feedback = Feedback {
            attempt,
            decision: request.decision,
            comment: request.comment,
            output: request.output,
            at: now(),
        };
        let pending = self.registry.decide(id, feedback)?;
        let task = self.registry.decision_applied(id, pending).await?;
        self.saved(task).await
    }

    #[tracing::instrument(skip(self))]
    pub async fn cancel(&self, id: TaskId) -> Result<Arc<Task>, TransitionError> {
        let task = self.registry.cancel(id)?;
        self.saved(task).await
    }
}
