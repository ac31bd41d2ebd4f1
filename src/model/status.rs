//! The names of things: a task's id, its statuses, a reviewer's decision, a deadline's policy,
//! and the limits every layer checks against. The ground every other room stands on.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The longest review deadline a task may have: a year.
pub const MAX_TIMEOUT_SECS: u64 = 365 * 86_400;
/// The most attempts a task may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 20;

/// A task's id: a UUID v7, so ids sort by creation time.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a task is in its lifecycle, written on the wire in `snake_case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    WaitingForReview,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Pending,
        Self::Running,
        Self::WaitingForReview,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Its place in [`Self::ALL`], for per-status arrays (the declaration order, which `ALL`
    /// follows; a test holds them together).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name, as in the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::WaitingForReview => "waiting_for_review",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The name a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::WaitingForReview => "Waiting for review",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// A reviewer's verdict on one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Accept the output (or the reviewer's edit of it) as the final result.
    Approved,
    /// Request changes: the task goes back for another attempt with the comment.
    Rejected,
    /// Reject for good: the task ends `failed`.
    RejectedFinal,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::RejectedFinal => "rejected_final",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::Rejected => "Changes requested",
            Self::RejectedFinal => "Rejected",
        }
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Approved, Self::Rejected, Self::RejectedFinal]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                format!("unknown decision {s:?}; expected approved, rejected or rejected_final")
            })
    }
}

/// How a task ended, on the wire in `snake_case`: a rejection, exhausted changes, a processing
/// failure, a deadline and a cancel are told apart (`null` until the task ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A reviewer approved it (the result is the output, or their edit).
    Approved,
    /// A reviewer rejected it for good.
    Rejected,
    /// Changes were requested on the last allowed attempt.
    ChangesExhausted,
    /// Processing could not produce an output (hitl's processor, or a worker that gave up).
    ProcessingFailed,
    /// A review deadline's policy ended it (approving, failing, or requesting changes on the
    /// last attempt).
    TimedOut,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::ChangesExhausted => "changes_exhausted",
            Self::ProcessingFailed => "processing_failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    /// What it means, in words for the task page and the list.
    pub fn label(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::Rejected => "Rejected by the reviewer",
            Self::ChangesExhausted => "Changes requested on the last attempt",
            Self::ProcessingFailed => "Processing failed",
            Self::TimedOut => "Review deadline passed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// What makes a task's attempts: hitl's own processor (`--processor`), or someone outside
/// (the agent that submitted it, or workers that claim its attempts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Maker {
    /// A task stored before 0.5 says nothing, and was made by the processor configured then.
    #[default]
    Simulated,
    Command,
    Openai,
    External,
}

impl Maker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulated => "simulated",
            Self::Command => "command",
            Self::Openai => "openai",
            Self::External => "external",
        }
    }

    pub fn is_outside(self) -> bool {
        self == Self::External
    }
}

/// What happens when a review deadline passes with no decision.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPolicy {
    /// Nothing is decided; the task is shown as overdue.
    #[default]
    None,
    /// The task ends `failed`.
    Fail,
    /// The output under review is approved as it is.
    Approve,
    /// Changes are requested, with a comment saying the deadline passed.
    Reject,
}

impl TimeoutPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fail => "fail",
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }

    /// What it does, in words for the task page.
    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "nothing is decided; the task is marked overdue",
            Self::Fail => "the task fails",
            Self::Approve => "the output is approved as it is",
            Self::Reject => "changes are requested automatically",
        }
    }
}

impl FromStr for TimeoutPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::None, Self::Fail, Self::Approve, Self::Reject]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown deadline policy {s:?}; expected none, fail, approve or reject")
            })
    }
}

/// How long a review may stay open, and what happens then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewTimeout {
    /// Seconds each review may stay open.
    pub seconds: u64,
    pub policy: TimeoutPolicy,
}

#[cfg(test)]
mod tests {
    use super::TaskStatus;

    #[test]
    fn each_status_index_is_its_place_in_all() {
        for (i, status) in TaskStatus::ALL.iter().enumerate() {
            assert_eq!(status.index(), i, "{status:?}");
        }
    }
}
