//! The service handle every route shares: submit, decide, cancel, and what they need.
//!
//! [`open`] builds it for the configured store, restores what the store holds, and closes it;
//! this file is what requests ask of it.

mod deliveries;
mod open;
mod outside;
pub use outside::{Claimed, Waiting};
mod submit;

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Actor, Auth, Role},
    cluster::Shared,
    config::{Limits, WebhookConfig},
    delivery::Deliveries,
    events::Scope,
    input::DecisionRequest,
    model::changes::Refused,
    model::task::{Feedback, Maker, ReviewTimeout, Task, TaskId, now},
    registry::{Denied, Registry, TransitionError},
    review::ReviewFlow,
    store::{History, Store, journal::Journal},
    submissions::SubmitKeys,
};

/// How long a request waits for its change to reach the disk before it is answered 503.
const DURABLE_PATIENCE: Duration = Duration::from_secs(10);

/// Cheap-clone handle to the running service: every request's handler gets a clone, so it is
/// one reference count, not one per field (profiles showed the field-by-field clone and drop).
#[derive(Clone)]
pub struct Hitl(Arc<Service>);

impl std::ops::Deref for Hitl {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.0
    }
}

/// The state of the running service, shared behind [`Hitl`].
pub struct Service {
    /// The live tasks, their guarded transitions and the event log.
    pub registry: Registry,
    /// The review flow every task runs.
    pub flow: Arc<ReviewFlow>,
    /// Attempts allowed when a submission names none.
    pub default_max_attempts: u32,
    /// Cancelled when the server shuts down: ends every stream and every task's flow.
    pub shutdown: CancellationToken,
    /// What keeps the tasks: nothing, a journal of this process's, or a shared database.
    pub backing: Backing,
    /// What clients may ask of the service at once.
    pub limits: Limits,
    /// Users and sessions; `None` without sign-in (`--auth none`).
    pub auth: Option<Arc<Auth>>,
    /// May a reviewer decide on their own task?
    pub allow_self_review: bool,
    /// The review deadline of a task whose submission sets none.
    pub review_timeout: Option<ReviewTimeout>,
    /// Submission keys seen lately, so a repeated submission makes no second task.
    pub submit_keys: SubmitKeys,
    /// What makes the attempts of a task not made outside (`--processor`).
    pub maker: Maker,
    /// Tries of one attempt a worker may give up on, asking for another (`--max-retries`).
    pub max_retries: u32,
    /// The outbox of webhooks and notifications (`None` when nothing is delivered).
    pub deliveries: Option<Arc<Deliveries>>,
    /// The webhook flags: which callback hosts a submission may name.
    pub webhooks: WebhookConfig,
}

/// What keeps the tasks: one value for the three modes, matched where they behave differently
/// (where a change is decided, how long an answer waits, where a task that left memory is read).
pub enum Backing {
    /// Nothing is kept (`--store memory`): demos and tests.
    Memory,
    /// This process decides every change and journals it to a store only it writes (SQLite).
    Journal(Arc<Durable>),
    /// Several instances on one PostgreSQL database, which decides every change; this
    /// instance's registry is a replica of its journal.
    Shared(Arc<Shared>),
}

impl Backing {
    /// Is nothing kept (every page says so)?
    pub fn keeps_nothing(&self) -> bool {
        matches!(self, Self::Memory)
    }

    /// The store a task that left memory is read back from.
    fn history(&self) -> Option<Arc<dyn History>> {
        match self {
            Self::Memory => None,
            Self::Journal(durable) => Some(durable.store.clone()),
            Self::Shared(shared) => Some(shared.store.clone()),
        }
    }
}

/// The store behind a durable service, and the journal that writes to it.
pub struct Durable {
    pub store: Arc<dyn Store>,
    pub journal: Journal,
}

impl Hitl {
    /// The largest input, comment or edit accepted, in bytes.
    pub fn max_text(&self) -> usize {
        usize::try_from(self.limits.max_text_bytes).unwrap_or(usize::MAX)
    }

    /// Waits until every change up to `seq` (all made so far, if `None`) is durable, so a read
    /// shows nothing a crash could take back (nor a sequence number it could reuse). A store
    /// that does not answer within two seconds is not waited for: reads go on while writes are
    /// refused.
    pub async fn settle(&self, seq: Option<u64>) {
        if seq.is_none()
            && let Backing::Shared(shared) = &self.backing
        {
            // Whatever any instance committed before this read is shown: one service.
            shared.catch_up().await;
            return;
        }
        let seq = seq.unwrap_or_else(|| self.registry.events.issued());
        self.registry
            .events
            .wait_durable(seq, Duration::from_secs(2))
            .await;
    }

    /// A task as it stands once its latest change is durable: from memory, or for a finished
    /// task that has left it (`--keep-finished`), from the store.
    pub async fn settled(&self, id: TaskId) -> Option<Arc<Task>> {
        if let Backing::Shared(shared) = &self.backing {
            // Whatever any instance committed before this read is shown: one service.
            shared.catch_up().await;
        }
        let Some(task) = self.find(id).await else {
            return self.stored(id).await;
        };
        self.settle(Some(task.seq)).await;
        Some(task)
    }

    /// The task with this id. With a shared database, a task this instance has not heard of
    /// yet (just submitted elsewhere) is looked for again once its replica has caught up with
    /// the database, so a client sent from one instance to another finds what it just saw.
    pub async fn find(&self, id: TaskId) -> Option<Arc<Task>> {
        if let Some(task) = self.registry.get(id) {
            return Some(task);
        }
        let Backing::Shared(shared) = &self.backing else {
            return None;
        };
        shared.catch_up().await;
        self.registry.get(id)
    }

    /// With a shared database: before a stream starts, makes sure this instance's replica is
    /// as far as the client has seen elsewhere (the task it asks for, the last event it got).
    pub async fn reach(&self, scope: Scope, last_event_id: Option<u64>) {
        let Backing::Shared(shared) = &self.backing else {
            return;
        };
        let missing = matches!(scope, Scope::Task(id) if self.registry.get(id).is_none());
        let behind = last_event_id.is_some_and(|seq| seq > self.registry.events.head());
        if missing || behind {
            shared.catch_up().await;
        }
    }

    /// A task read back from the durable store (`None` in memory mode, or if the store cannot
    /// be read: it is logged).
    async fn stored(&self, id: TaskId) -> Option<Arc<Task>> {
        match self.backing.history()?.task(id).await {
            Ok(task) => task,
            Err(error) => {
                tracing::warn!(%error, %id, "cannot read a task back from the store");
                None
            }
        }
    }

    /// The live task, or why it cannot change: unknown, or finished and gone from memory.
    async fn live(&self, id: TaskId) -> Result<Arc<Task>, TransitionError> {
        if let Some(task) = self.find(id).await {
            return Ok(task);
        }
        match self.stored(id).await {
            Some(task) => Err(TransitionError::Conflict {
                refused: Refused::NoLongerChanges {
                    status: task.status,
                },
                task,
            }),
            None => Err(TransitionError::NotFound(id)),
        }
    }

    /// Waits until `task`'s latest change is durable, so the caller may answer.
    async fn saved(&self, task: Arc<Task>) -> Result<Arc<Task>, TransitionError> {
        if let Backing::Shared(_) = self.backing {
            // Committed in the shared database already (the transition waited for that, and
            // briefly for the replica): it is saved, even if this replica is slow to show it.
            return Ok(task);
        }
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

    /// Applies a reviewer's decision and returns the task once the flow has acted on it.
    #[tracing::instrument(level = "debug", skip(self, request, by), fields(decision = request.decision.as_str(), by = %by.name))]
    pub async fn decide(
        &self,
        id: TaskId,
        request: DecisionRequest,
        by: &Actor,
    ) -> Result<Arc<Task>, TransitionError> {
        let task = self.live(id).await?;
        if by.role != Role::Reviewer {
            return Err(TransitionError::Forbidden(Denied::DecideAsSubmitter));
        }
        let self_review = !by.anonymous && task.submitted_by.as_deref() == Some(&*by.name);
        if self_review && !self.allow_self_review {
            return Err(TransitionError::Forbidden(Denied::OwnTask));
        }
        let attempt = request.attempt.unwrap_or(task.attempt);
        let feedback = Feedback {
            attempt,
            decision: request.decision,
            comment: request.comment,
            output: request.output,
            at: now(),
            by: by.recorded(),
            output_sha256: request.output_sha256,
            timed_out: false,
        };
        let task = self.registry.decide(id, feedback).await?;
        self.saved(task).await
    }

    /// Moves the open review's deadline `secs` later (from now, if it has passed).
    #[tracing::instrument(level = "debug", skip(self, by), fields(by = %by.name))]
    pub async fn extend_deadline(
        &self,
        id: TaskId,
        attempt: Option<u32>,
        secs: u64,
        by: &Actor,
    ) -> Result<Arc<Task>, TransitionError> {
        if by.role != Role::Reviewer {
            return Err(TransitionError::Forbidden(Denied::ExtendAsSubmitter));
        }
        self.live(id).await?;
        let task = self
            .registry
            .extend_deadline(id, attempt, secs, by.recorded())
            .await?;
        self.saved(task).await
    }

    #[tracing::instrument(level = "debug", skip(self, by), fields(by = %by.name))]
    pub async fn cancel(&self, id: TaskId, by: &Actor) -> Result<Arc<Task>, TransitionError> {
        let task = self.live(id).await?;
        let own = by.anonymous || task.submitted_by.as_deref() == Some(&*by.name);
        if by.role != Role::Reviewer && !own {
            return Err(TransitionError::Forbidden(Denied::CancelOthers));
        }
        let task = self.registry.cancel(id, by.recorded()).await?;
        self.saved(task).await
    }
}
