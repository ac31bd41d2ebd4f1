//! Why a change was refused, as a value. The sentences people read are written at the edge
//! (`web::error`); these say what happened, for logs.

use std::sync::Arc;

use crate::model::{
    changes::Refused,
    task::{Task, TaskId},
};

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no task with id {0}")]
    NotFound(TaskId),
    /// The task is not in a state that allows the change; `task` is its state now.
    #[error("{refused}")]
    Conflict { refused: Refused, task: Arc<Task> },
    /// The server is shutting down and the request stopped before it finished (a submission
    /// may have been made all the same).
    #[error("the server is shutting down")]
    Stopped,
    /// As many tasks are unfinished as the service takes; nothing was submitted.
    #[error("the service already has {max} unfinished tasks")]
    Full { max: usize },
    /// The actor may not do this.
    #[error("forbidden: {0:?}")]
    Forbidden(Denied),
    /// The change was made but could not be written to the store in time.
    #[error("the change was not saved in time")]
    NotSaved,
    /// The shared database did not answer, so nothing was changed.
    #[error("the database is not answering")]
    Unavailable,
    /// A submission key was used before for another submission; nothing was submitted.
    #[error("the submission key was used for another submission")]
    KeyReused,
    /// The submission key was bound to task `0` by another submission (on another instance)
    /// with the digest `1`; nothing was submitted.
    #[error("this submission key already made task {0}")]
    KeyBound(TaskId, Box<str>),
    /// A worker's claim token that names no claim ever given.
    #[error("no such claim")]
    NoSuchClaim,
    /// Another instance holds the claim on this task's work: this one must not change it.
    #[error("another instance has taken over this task's work")]
    NotClaimed,
}

/// Why an actor may not do what they asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Only reviewers decide, and the actor is a submitter.
    DecideAsSubmitter,
    /// A reviewer decides on a task they submitted (without `--allow-self-review`).
    OwnTask,
    /// Only reviewers extend a review's deadline.
    ExtendAsSubmitter,
    /// Submitters cancel only the tasks they submitted.
    CancelOthers,
    /// Only a task's submitter (or the worker holding its claim) hands in its attempts.
    ReviseOthers,
    /// Only reviewers start a failed task again.
    RetryAsSubmitter,
    /// Only reviewers send a delivery again.
    RedeliverAsSubmitter,
}
