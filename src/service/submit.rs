//! Submissions: a task made once (under a key, whoever retries and wherever), started, and
//! answered once it is durable.

use std::sync::Arc;

use super::{Backing, Hitl};
use crate::{
    auth::Actor,
    input::NewTask,
    model::task::{Maker, ReviewTimeout, StoredKey, Task, TaskId, now},
    registry::TransitionError,
    store::StoreError,
    submissions::{SubmitKey, Submitted},
};

impl Hitl {
    /// Accepts a task once under `key`: a repeat (by the same person, within a day) gets the
    /// task the first one made, as it is now, and says it was repeated.
    pub async fn submit_once(
        &self,
        new: NewTask,
        by: &Actor,
        key: Option<SubmitKey>,
    ) -> Result<(Arc<Task>, bool), TransitionError> {
        let Some(key) = key else {
            return Ok((self.submit(new, by).await?, false));
        };
        // Run apart from the request, so a client that goes away (a form posted again aborts
        // the first post) cannot leave a task made but its key unbound. The key is bound once
        // the task exists, not once it is saved: a retry after a 503 `store_unavailable` gets
        // the task that was made.
        let (hitl, by) = (self.clone(), by.clone());
        let keyed = tokio::spawn(async move {
            let stored = |key| hitl.stored_key(key);
            let create = |key| hitl.create(new.clone(), &by, Some(key));
            hitl.submit_keys
                .once(&by.name, key, &new, stored, create)
                .await
        });
        let (task, repeated) = match keyed.await {
            Ok(keyed) => match keyed? {
                Submitted::Fresh(task) => (task, false),
                Submitted::Repeated(id) => {
                    let task = self.find(id).await;
                    let task = match task {
                        Some(task) => task,
                        None => self.stored(id).await.ok_or(TransitionError::NotFound(id))?,
                    };
                    (task, true)
                }
            },
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => return Err(TransitionError::Stopped),
        };
        Ok((self.saved(task).await?, repeated))
    }

    /// Accepts a task and starts its flow.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn submit(&self, new: NewTask, by: &Actor) -> Result<Arc<Task>, TransitionError> {
        let task = self.create(new, by, None).await?;
        self.saved(task).await
    }

    /// The task a submission key made, as the store keeps it (`None` in memory mode): how a
    /// retry after a restart, or on another instance, finds the first submission.
    async fn stored_key(
        &self,
        key: Arc<StoredKey>,
    ) -> Result<Option<(TaskId, Box<str>)>, TransitionError> {
        let found = match &self.backing {
            Backing::Memory => return Ok(None),
            Backing::Journal(durable) => {
                let store = durable.store.clone();
                tokio::task::spawn_blocking(move || store.submit_key(&key))
                    .await
                    .unwrap_or_else(|e| Err(StoreError::Config(e.to_string())))
            }
            Backing::Shared(shared) => shared.store.submit_key_async(&key).await,
        };
        found.map_err(|error| {
            tracing::warn!(%error, "cannot look up a submission key");
            TransitionError::Unavailable
        })
    }

    /// Makes the task and starts its flow; [`Service::saved`] then waits for it to be durable.
    async fn create(
        &self,
        new: NewTask,
        by: &Actor,
        key: Option<Arc<StoredKey>>,
    ) -> Result<Arc<Task>, TransitionError> {
        let max_attempts = new.max_attempts.unwrap_or(self.default_max_attempts);
        let default = self.review_timeout;
        let seconds = new
            .review_timeout_secs
            .or(default.map(|t| t.seconds))
            .filter(|secs| *secs > 0);
        let policy = new
            .review_timeout_policy
            .or(default.map(|t| t.policy))
            .unwrap_or_default();
        let task = Task {
            submitted_by: by.recorded(),
            review_timeout: seconds.map(|seconds| ReviewTimeout { seconds, policy }),
            submit_key: key,
            processor: if new.outside {
                Maker::External
            } else {
                self.maker
            },
            metadata: new.metadata,
            callback_url: new.callback_url,
            // Handed in with the submission: attempt 1, open for review in the first event.
            output: new.output,
            ..Task::new(TaskId::new(), new.input, max_attempts, now())
        };
        if let Backing::Shared(shared) = &self.backing {
            // The live-task limit is this instance's, counted in its replica.
            if self.registry.unfinished() >= self.limits.max_live_tasks as usize {
                return Err(TransitionError::Full {
                    max: self.limits.max_live_tasks as usize,
                });
            }
            let task = shared.submit(task).await?;
            tracing::info!(task_id = %task.id, "task submitted");
            if let Some(handle) = self.registry.claimed_handle(task.id)
                && shared.hold(task.id, handle.cancel.clone())
            {
                self.flow.spawn(handle);
            }
            return Ok(self.registry.get(task.id).unwrap_or(task));
        }
        self.registry.reserve(self.limits.max_live_tasks as usize)?;
        let handle = self.registry.insert(task, &self.shutdown);
        let task = handle.task.clone();
        tracing::debug!(task_id = %task.id, "task submitted");
        self.flow.spawn(handle);
        Ok(task)
    }
}
