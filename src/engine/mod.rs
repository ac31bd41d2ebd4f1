//! A small workflow engine in the PocketFlow style.
//!
//! A [`Node`] does one step in three phases: `prep` reads the shared store, `exec` does the work
//! (and may fail: a retryable failure is tried up to `max_retries` times in all, waiting
//! `retry_wait` before each new try, then `exec_fallback` gets the last error), and `post` writes the shared store and returns an
//! action. A [`Flow`] links nodes by action; it runs from its start node until a node returns an
//! action with no successor. Links are checked when the flow is built, so a flow that was built
//! can only fail at run time because a node failed. Everything is async: a node that waits (for a
//! person, a model, a timer) holds no thread.

mod flow;
#[cfg(test)]
mod tests;

use std::{fmt::Debug, future::Future, hash::Hash, time::Duration};

pub use flow::{BuildError, Flow, FlowBuilder, FlowError};

/// The labels on a flow's edges: a typed enum per flow.
pub trait Action: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// The label as written in the flow's diagram.
    fn label(&self) -> &'static str;
}

/// Why a node's step failed, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    pub message: String,
    /// Might another try succeed (a timeout, a refused connection, a busy server)? Only then
    /// is `exec` tried again.
    pub retryable: bool,
    /// The step could not be recorded, but the work is not at fault: the store did not answer,
    /// or the run no longer owns the work. The run stops, and whoever owns the work resumes it;
    /// whether the task fails instead is the flow's owner's choice.
    pub suspend: bool,
}

impl NodeError {
    /// A failure another try may get past.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            suspend: false,
        }
    }

    /// A failure no retry can fix (a bad key, a malformed request): `exec` is not tried again.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            suspend: false,
        }
    }
}

/// One step of a flow over the shared store `S`.
pub trait Node<S: Send + Sync>: Send + Sync + 'static {
    /// What `prep` hands to `exec`.
    type Prep: Send + Sync;
    /// What `exec` produces for `post`.
    type Output: Send;
    /// The actions this node's `post` can return.
    type Action: Action;

    /// How many times `exec` is tried before `exec_fallback` (at least once).
    fn max_retries(&self) -> u32 {
        1
    }

    /// How long to wait before try number `next` (2 or more) of `exec`: a node may back off.
    fn retry_wait(&self, _next: u32) -> Duration {
        Duration::ZERO
    }

    /// Reads what the step needs from the shared store.
    fn prep(&self, store: &S) -> impl Future<Output = Result<Self::Prep, NodeError>> + Send;

    /// Does the work. Must not touch the store, so it can be retried.
    fn exec(
        &self,
        prep: &Self::Prep,
    ) -> impl Future<Output = Result<Self::Output, NodeError>> + Send;

    /// Runs when every try of `exec` failed; by default it passes the last error on.
    fn exec_fallback(
        &self,
        _prep: &Self::Prep,
        error: NodeError,
    ) -> impl Future<Output = Result<Self::Output, NodeError>> + Send {
        async move { Err(error) }
    }

    /// Writes the result into the store and chooses the next action.
    fn post(
        &self,
        store: &mut S,
        prep: Self::Prep,
        output: Self::Output,
    ) -> impl Future<Output = Result<Self::Action, NodeError>> + Send;

    /// prep, exec with retries and fallback, post: one whole step.
    fn run(&self, store: &mut S) -> impl Future<Output = Result<Self::Action, NodeError>> + Send {
        async move {
            let prep = self.prep(store).await?;
            let tries = self.max_retries().max(1);
            let mut attempt = 1;
            let output = loop {
                match self.exec(&prep).await {
                    Ok(output) => break output,
                    Err(error) if attempt >= tries || !error.retryable => {
                        break self.exec_fallback(&prep, error).await?;
                    }
                    Err(error) => {
                        attempt += 1;
                        let wait = self.retry_wait(attempt);
                        tracing::warn!(%error, attempt, tries, ?wait, "exec failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            self.post(store, prep, output).await
        }
    }
}
