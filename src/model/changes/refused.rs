//! Why a rule refused a change, as a value, and plainly for logs.

use crate::model::task::TaskStatus;

/// Why a rule refused a change: a value. The sentences a person reads are written at the edge
/// (`web::error`); the `Debug` form is for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A workflow's own step out of turn: the task is `status` at `attempt`, not one of
    /// `expected` at `wanted`.
    OutOfTurn {
        status: TaskStatus,
        attempt: u32,
        expected: Vec<TaskStatus>,
        wanted: u32,
    },
    /// A progress report for an attempt that is not running.
    NotRunning { attempt: u32 },
    /// A decision while the task is `status`, not waiting for review.
    NotUnderReview { status: TaskStatus },
    /// A decision for attempt `decided` while `under_review` is.
    WrongAttempt { decided: u32, under_review: u32 },
    /// The output under review is not the text the reviewer saw (its SHA-256 differs).
    NotWhatWasSeen { attempt: u32 },
    /// A deadline extension for an attempt that is not under review.
    NoOpenReview { attempt: u32 },
    /// A deadline extension for a review that has no deadline.
    NoDeadline,
    /// The deadline was moved (extended) before it passed.
    DeadlineMoved,
    /// An extension that would put the deadline more than a year away.
    BeyondAYear,
    /// A change to a task that has already ended `status`.
    Ended { status: TaskStatus },
    /// The output to finalise is not the text that was reviewed.
    NotWhatWasReviewed { attempt: u32 },
    /// The result to record is neither the output nor the reviewer's edit.
    NotTheResult,
    /// A change to a task that finished `status` and has left memory.
    NoLongerChanges { status: TaskStatus },
    /// An outside change (an attempt posted, a claim) to a task hitl's processor makes.
    NotOutside,
    /// An attempt posted for `attempt` while the task is `status` at `current`: it takes
    /// exactly the attempt it waits for, while `pending` (or `running` under a claim).
    NotAwaitingAttempt {
        attempt: u32,
        status: TaskStatus,
        current: u32,
    },
    /// The claim given is no longer the attempt's: its lease ran out or the task moved on.
    ClaimLost,
    /// The claim given is none this task was ever given.
    NotTheClaim,
    /// The attempt is claimed by a worker, and the post did not give its claim.
    ClaimHeld { attempt: u32 },
    /// A retry of a task that did not fail in processing.
    NotRetryable { status: TaskStatus },
}

/// What was refused, plainly, for logs and a workflow's failure message (the words a person is
/// shown when they asked for the change are `web::error`'s).
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfTurn {
                status,
                attempt,
                expected,
                wanted,
            } => {
                let expected: Vec<&str> = expected.iter().map(|s| s.as_str()).collect();
                write!(
                    f,
                    "task is {} at attempt {attempt}, not {} at attempt {wanted}",
                    status.as_str(),
                    expected.join(" or ")
                )
            }
            Self::NotRunning { attempt } => write!(f, "attempt {attempt} is not running"),
            Self::NotUnderReview { status } => {
                write!(f, "task is {}, not waiting for review", status.as_str())
            }
            Self::WrongAttempt {
                decided,
                under_review,
            } => write!(
                f,
                "decision for attempt {decided}, attempt {under_review} is under review"
            ),
            Self::NotWhatWasSeen { attempt } | Self::NotWhatWasReviewed { attempt } => {
                write!(
                    f,
                    "the output of attempt {attempt} is not the text reviewed"
                )
            }
            Self::NoOpenReview { attempt } => write!(f, "attempt {attempt} is not under review"),
            Self::NoDeadline => write!(f, "the review has no deadline"),
            Self::DeadlineMoved => write!(f, "the deadline was moved before it passed"),
            Self::BeyondAYear => write!(f, "the deadline would be more than a year away"),
            Self::Ended { status } | Self::NoLongerChanges { status } => {
                write!(f, "task is {}", status.as_str())
            }
            Self::NotTheResult => write!(f, "the result is neither the output nor the edit"),
            Self::NotOutside => write!(f, "the task's attempts are made by hitl's processor"),
            Self::NotAwaitingAttempt {
                attempt,
                status,
                current,
            } => write!(
                f,
                "attempt {attempt} posted while the task is {} at attempt {current}",
                status.as_str()
            ),
            Self::ClaimLost => write!(f, "the claim was lost"),
            Self::NotTheClaim => write!(f, "the claim is not one of this task's"),
            Self::ClaimHeld { attempt } => write!(f, "attempt {attempt} is claimed by a worker"),
            Self::NotRetryable { status } => {
                write!(f, "task is {}, not failed in processing", status.as_str())
            }
        }
    }
}
