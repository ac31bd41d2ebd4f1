//! The service handle every route shares: submit, decide, cancel, and what they need.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    events::EventLog,
    input::{DecisionRequest, NewTask},
    registry::{Registry, TransitionError},
    review::{Processor, ReviewFlow, SimulatedProcessor},
    task::{Feedback, Task, TaskId, now},
};

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
}

impl Hitl {
    /// The service with the simulated processor.
    pub fn new(config: &Config, shutdown: CancellationToken) -> Self {
        let processor = SimulatedProcessor {
            delay: Duration::from_millis(config.process_delay_ms),
        };
        Self::with_processor(config, Arc::new(processor), shutdown)
    }

    pub fn with_processor(
        config: &Config,
        processor: Arc<dyn Processor>,
        shutdown: CancellationToken,
    ) -> Self {
        let events = EventLog::new(usize::try_from(config.retain_events).unwrap_or(usize::MAX));
        let registry = Registry::new(events);
        Self {
            flow: Arc::new(ReviewFlow::new(registry.clone(), processor)),
            registry,
            default_max_attempts: config.max_attempts,
            shutdown,
        }
    }

    /// Accepts a task and starts its flow.
    #[tracing::instrument(skip_all)]
    pub fn submit(&self, new: NewTask) -> Arc<Task> {
        let max_attempts = new.max_attempts.unwrap_or(self.default_max_attempts);
        let task = Task::new(TaskId::new(), new.input, max_attempts, now());
        let handle = self.registry.insert(task, &self.shutdown);
        let task = handle.task.clone();
        tracing::info!(task_id = %task.id, "task submitted");
        self.flow.spawn(handle);
        task
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
        self.registry.decision_applied(id, pending).await
    }

    #[tracing::instrument(skip(self))]
    pub fn cancel(&self, id: TaskId) -> Result<Arc<Task>, TransitionError> {
        self.registry.cancel(id)
    }
}
