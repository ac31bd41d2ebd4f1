//! The task data model: what a task is, as the JSON API shows it and the views render it.
//!
//! A [`Task`] is an immutable value; the registry swaps in a new `Arc<Task>` on every change, so
//! events, streams and pages can hold a snapshot without copying its text (every long string is
//! an `Arc<str>`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::audit::{AuditEntry, Digest};
pub use super::status::{
    Decision, Maker, Outcome, ReviewTimeout, TaskId, TaskStatus, TimeoutPolicy,
};

/// A decision as a reviewer gave it, for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    pub attempt: u32,
    pub decision: Decision,
    pub comment: Option<Arc<str>>,
    /// The reviewer's edit of the output (approvals only).
    pub output: Option<Arc<str>>,
    pub at: OffsetDateTime,
    /// Who decided (`None` without sign-in, or for the deadline).
    pub by: Option<Arc<str>>,
    /// The SHA-256 of the output the reviewer saw, when the client sent it.
    pub output_sha256: Option<Digest>,
    /// The review deadline decided this, not a person.
    pub timed_out: bool,
}

/// One finished attempt in a task's history.
// `#[schema(required = true)]` marks what is always written although older records may leave
// it out when read; a test holds the schema's required fields to what is serialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub output: Arc<str>,
    #[schema(required = true)]
    pub decision: Option<Decision>,
    /// The reviewer's comment (for an approval, its note).
    #[schema(required = true)]
    pub comment: Option<Arc<str>>,
    /// The text the reviewer approved instead of `output`, when they edited it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_output: Option<Arc<str>>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(required = true)]
    pub decided_at: Option<OffsetDateTime>,
    /// Who decided (`null` without sign-in, or when the deadline did).
    #[serde(default)]
    #[schema(required = true)]
    pub decided_by: Option<Arc<str>>,
    /// The review deadline passed and its policy decided.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The event that recorded the decision: a status event carries the decision's fields
    /// when it is this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A worker's hold on an outside task's attempt: who holds it and until when. The token
/// itself is only the worker's; the task keeps its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Claim {
    pub attempt: u32,
    pub token_sha256: Digest,
    /// Who claimed it (`null` without sign-in).
    #[schema(required = true)]
    pub by: Option<Arc<str>>,
    #[serde(with = "time::serde::rfc3339")]
    pub claimed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub lease_expires_at: OffsetDateTime,
}

/// JSON kept as it was given: its text, so key order and numbers of any size come back as
/// they were sent (a `serde_json::Value` sorts keys and rounds large numbers). Only its
/// insignificant whitespace is dropped (see [`RawJson::compact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawJson(pub Arc<str>);

impl RawJson {
    /// `json` (already checked to be JSON) without the whitespace between its tokens. Written
    /// by hand: serde_json can keep a text as it is (`RawValue`) or rebuild it (`Value`, which
    /// reorders it), but not just drop its whitespace.
    pub fn compact(json: &str) -> Self {
        let mut out = String::with_capacity(json.len());
        let (mut in_string, mut escaped) = (false, false);
        for c in json.chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push(c);
            } else if !c.is_ascii_whitespace() {
                out.push(c);
            }
        }
        Self(out.into())
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(Self::compact(raw.get()))
    }
}

/// A submission key as the store keeps it, beside the task it made
/// (see the `submissions` module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Who submitted (`anonymous` without sign-in): keys are per person.
    pub owner: Arc<str>,
    pub key: Box<str>,
    /// Empty for an `Idempotency-Key`; for a form's key, the submission's digest (the same form
    /// sent again with other text is another submission).
    pub scope: Box<str>,
    /// The submission's digest in hex: the same header key with another one is refused.
    pub digest: Box<str>,
}

impl StoredKey {
    /// How long a key is honoured (and kept by the store).
    pub const KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
}

/// A task, as the JSON API returns it (and the store keeps it).
// `#[schema(required = true)]` marks what is always written although older records may leave
// it out when read; a test holds the schema's required fields to what is serialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: TaskId,
    pub status: TaskStatus,
    pub input: Arc<str>,
    /// The attempt now running or under review (the last one, once finished).
    pub attempt: u32,
    pub max_attempts: u32,
    /// The output of the current attempt (`null` until it has one).
    #[schema(required = true)]
    pub output: Option<Arc<str>>,
    /// The approved text, once approved.
    #[schema(required = true)]
    pub final_result: Option<Arc<str>>,
    /// Why it failed, if it did.
    #[schema(required = true)]
    pub error: Option<Arc<str>>,
    /// How it ended (`null` until it ends).
    #[serde(default)]
    #[schema(required = true)]
    pub outcome: Option<Outcome>,
    /// What makes its attempts: hitl's processor, or `external` (the agent or workers).
    #[serde(default)]
    #[schema(required = true)]
    pub processor: Maker,
    /// What the submitter attached, kept and shown as given (`null` if nothing).
    #[serde(default)]
    #[schema(required = true, value_type = Option<Object>)]
    pub metadata: Option<RawJson>,
    /// Where this task's own events are also delivered, as signed webhooks (only to a host
    /// `--callback-allow` lists); left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<Arc<str>>,
    /// The worker's claim on the attempt now running (outside tasks; `null` otherwise).
    #[serde(default)]
    #[schema(required = true)]
    pub claim: Option<Claim>,
    /// Workers that gave up on the current attempt asking for another try (`--max-retries`
    /// bounds them).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub failed_tries: u32,
    /// Who submitted it (`null` without sign-in).
    #[serde(default)]
    #[schema(required = true)]
    pub submitted_by: Option<Arc<str>>,
    /// Who cancelled it, if it was cancelled by someone signed in.
    #[serde(default)]
    #[schema(required = true)]
    pub cancelled_by: Option<Arc<str>>,
    /// How long each review may stay open (`null`: no deadline).
    #[serde(default)]
    #[schema(required = true)]
    pub review_timeout: Option<ReviewTimeout>,
    /// When the open review's deadline passes (`null` when no review is open or none is set).
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(required = true)]
    pub review_deadline: Option<OffsetDateTime>,
    pub attempts: Vec<AttemptRecord>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Sequence number of the last status event for this task: pages carry it so a stale
    /// fragment never overwrites a newer one.
    #[serde(skip)]
    pub seq: u64,
    /// The audit trail, oldest first (served apart, at `/api/tasks/{id}/history`). Empty on a
    /// copy read back from the event journal, which does not keep it.
    #[serde(skip)]
    pub history: Vec<Arc<AuditEntry>>,
    /// The submission key that made it, written with its first event (in the same commit) so
    /// a retry after a crash, or on another instance, finds it; the store keeps it apart.
    #[serde(skip)]
    pub submit_key: Option<Arc<StoredKey>>,
}

impl Task {
    /// A new task, pending its first attempt.
    pub fn new(id: TaskId, input: Arc<str>, max_attempts: u32, now: OffsetDateTime) -> Self {
        Self {
            id,
            status: TaskStatus::Pending,
            input,
            attempt: 1,
            max_attempts,
            output: None,
            final_result: None,
            error: None,
            outcome: None,
            processor: Maker::default(),
            metadata: None,
            callback_url: None,
            claim: None,
            failed_tries: 0,
            submitted_by: None,
            cancelled_by: None,
            review_timeout: None,
            review_deadline: None,
            attempts: Vec::new(),
            created_at: now,
            updated_at: now,
            seq: 0,
            history: Vec::new(),
            submit_key: None,
        }
    }

    /// Is this attempt's review open, so a decision for it could be accepted?
    pub fn awaits_decision_on(&self, attempt: u32) -> bool {
        self.status == TaskStatus::WaitingForReview && self.attempt == attempt
    }

    /// The decision recorded for an attempt, if any.
    pub fn decision_for(&self, attempt: u32) -> Option<Decision> {
        self.attempts
            .iter()
            .find(|a| a.attempt == attempt)
            .and_then(|a| a.decision)
    }
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// Are two texts the same once line endings are normalised? Browsers send a textarea's
/// newlines as `\r\n`, so an unedited output comes back with different bytes.
pub fn same_text(a: &str, b: &str) -> bool {
    a == b || a.replace("\r\n", "\n") == b.replace("\r\n", "\n")
}

/// The current time, to the millisecond (what the wire and the pages show).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// The first `max` characters of the first line of `text`, with an ellipsis if anything was cut:
/// for titles, list rows and logs.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    let line = text.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(max).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
