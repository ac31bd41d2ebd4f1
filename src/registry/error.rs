//! Why a change was refused, as a value the service and the web edge turn into answers.

use std::sync::Arc;

use crate::model::task::{Task, TaskId};

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no task with id {0}")]
    NotFound(TaskId),
    /// The task is not in a state that allows the change; `task` is its state now.
    #[error("{message}")]
    Conflict { message: String, task: Arc<Task> },
    /// The server is shutting down and the request stopped before it could act.
    #[error("The server is shutting down; nothing was changed. Try again when it is back.")]
    Stopped,
    /// As many tasks are unfinished as the service takes; nothing was submitted.
    #[error("the service already has {max} unfinished tasks")]
    Full { max: usize },
    /// The actor may not do this; the message says why.
    #[error("{0}")]
    Forbidden(String),
    /// The change was made but could not be written to the store in time.
    #[error(
        "The change could not be saved: the store is not answering. It may be lost if the server stops; try again shortly."
    )]
    NotSaved,
    /// The shared database did not answer, so nothing was changed.
    #[error(
        "The database is not answering, so nothing was changed. Try again shortly; this page keeps showing the latest it knows."
    )]
    Unavailable,
    /// A submission key was used before for another submission; nothing was submitted.
    #[error(
        "This Idempotency-Key was already used for a different submission. Use a new key for a new task."
    )]
    KeyReused,
    /// The submission key was bound to task `0` by another submission (on another instance)
    /// with the digest `1`; nothing was submitted.
    #[error("this submission key already made task {0}")]
    KeyBound(TaskId, Box<str>),
    /// Another instance holds the claim on this task's work: this one must not change it.
    #[error("another instance has taken over this task's work")]
    NotClaimed,
}
