//! The audit trail: every change of a task as an entry that holds the hash of the entry before
//! it, so a stored history that was edited afterwards no longer verifies.
//!
//! Entries name texts by their SHA-256 (the output under review, the approved result) rather
//! than copying them: the task holds the texts, and `hitl verify` checks that they still hash to
//! what the trail recorded. The chain is per task and starts from a hash of zeros.
//!
//! Without an anchor kept elsewhere, someone who rewrites a whole chain and recomputes every hash
//! is not caught; what the chain does catch is any edit, insertion or deletion of single
//! entries, which is what a tampered row or a careless hand-edit looks like.

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type},
};

use super::status::{Decision, TaskId, TaskStatus};

/// A SHA-256, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub const ZERO: Digest = Digest([0; 32]);

    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn of_text(text: &str) -> Self {
        Self::of(text.as_bytes())
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl Digest {
    /// The 64 lower-case hex digits, without formatting machinery: every audit entry's JSON
    /// holds two or three, and `{:02x}` per byte showed in profiles.
    fn hex(&self) -> [u8; 64] {
        let mut out = [0; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 digits for 32 bytes");
        out
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0; 32];
        match hex::decode_to_slice(s, &mut out) {
            Ok(()) => Ok(Self(out)),
            Err(_) => Err(format!("{s:?} is not a SHA-256 (64 hex digits)")),
        }
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex();
        serializer.serialize_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// As [`Serialize`] writes it: 64 lower-case hex digits.
impl PartialSchema for Digest {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A SHA-256, as 64 lower-case hex digits."))
            .pattern(Some("^[0-9a-f]{64}$"))
            .into()
    }
}

impl ToSchema for Digest {}

/// What happened, with what it needs to be checked later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    Submitted {
        input_sha256: Digest,
        max_attempts: u32,
    },
    AttemptStarted {
        attempt: u32,
    },
    AttemptFinished {
        attempt: u32,
        output_sha256: Digest,
        output_bytes: usize,
        /// Made outside hitl (by the agent or a worker; the entry's `by` says who).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        outside: bool,
    },
    /// A worker claimed an outside attempt.
    Claimed {
        attempt: u32,
        token_sha256: Digest,
        #[serde(with = "time::serde::rfc3339")]
        lease_expires_at: OffsetDateTime,
    },
    /// The worker holding the attempt renewed its lease.
    ClaimRenewed {
        attempt: u32,
        #[serde(with = "time::serde::rfc3339")]
        lease_expires_at: OffsetDateTime,
    },
    /// The attempt went back to `pending` for another worker: its lease ran out, or its
    /// worker gave up asking for another try (`error`).
    ClaimReleased {
        attempt: u32,
        token_sha256: Digest,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        expired: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Arc<str>>,
    },
    /// A task whose processing failed was started again.
    Retried {
        attempt: u32,
    },
    /// A reviewer's decision, or the deadline's (`timed_out`).
    Decided {
        attempt: u32,
        decision: Decision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<Arc<str>>,
        /// The output the decision was about: what was on the reviewer's screen.
        reviewed_sha256: Digest,
        /// For an approval, the text that became the final result (the edit, if any).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result_sha256: Option<Digest>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        edited: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        timed_out: bool,
    },
    /// The review deadline passed with policy `none`: nothing was decided.
    DeadlinePassed {
        attempt: u32,
    },
    DeadlineExtended {
        attempt: u32,
        #[serde(with = "time::serde::rfc3339")]
        deadline: OffsetDateTime,
    },
    Failed {
        attempt: u32,
        error: Arc<str>,
        /// A worker outside hitl gave the attempt up (the entry's `by` says who).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        outside: bool,
    },
    Cancelled {
        attempt: u32,
    },
}

impl AuditEvent {
    /// The name on the wire and in the page.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submitted { .. } => "submitted",
            Self::AttemptStarted { .. } => "attempt_started",
            Self::AttemptFinished { .. } => "attempt_finished",
            Self::Claimed { .. } => "claimed",
            Self::ClaimRenewed { .. } => "claim_renewed",
            Self::ClaimReleased { .. } => "claim_released",
            Self::Retried { .. } => "retried",
            Self::Decided { .. } => "decided",
            Self::DeadlinePassed { .. } => "deadline_passed",
            Self::DeadlineExtended { .. } => "deadline_extended",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

/// One link of a task's chain: a line of `GET /api/tasks/{id}/history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub task_id: TaskId,
    /// Position in the task's chain, from 1.
    pub n: u32,
    /// The event (on the streams and in the journal) that carried this change.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The task's status once this happened.
    pub status: TaskStatus,
    /// Who did it: a signed-in user, `null` without sign-in or for the service itself.
    #[schema(required = true)]
    pub by: Option<Arc<str>>,
    /// The hash of the entry before (zeros for the first).
    pub prev: Digest,
    /// The hash of this entry: SHA-256 of its JSON with this field left out.
    #[serde(default, skip_serializing_if = "Digest::is_zero")]
    pub hash: Digest,
}

impl AuditEntry {
    /// The next link after `prev` (`None` for a task's first entry), sealed with its hash.
    pub fn chain(
        prev: Option<&AuditEntry>,
        task_id: TaskId,
        seq: u64,
        at: OffsetDateTime,
        event: AuditEvent,
        status: TaskStatus,
        by: Option<Arc<str>>,
    ) -> Self {
        let mut entry = Self {
            task_id,
            n: prev.map_or(1, |p| p.n + 1),
            seq,
            at,
            event,
            status,
            by,
            prev: prev.map_or(Digest::ZERO, |p| p.hash),
            hash: Digest::ZERO,
        };
        entry.hash = entry.content_hash();
        entry
    }

    /// The hash this entry's content has now, whatever its `hash` field says.
    pub fn content_hash(&self) -> Digest {
        let unsealed = Self {
            hash: Digest::ZERO,
            ..self.clone()
        };
        let json = serde_json::to_vec(&unsealed).expect("an entry always serialises");
        Digest::of(&json)
    }

    /// The entry as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an entry always serialises")
    }
}

/// A break found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub task_id: TaskId,
    /// The entry where the chain breaks (its position, as stored).
    pub n: u32,
    pub problem: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {} entry {}: {}",
            self.task_id, self.n, self.problem
        )
    }
}

/// Checks one task's entries, in stored order: each is numbered in turn, holds the hash of the
/// one before and hashes to what it says.
pub fn verify_chain(task_id: TaskId, entries: &[AuditEntry]) -> Vec<Break> {
    let mut breaks = Vec::new();
    let mut prev: Option<&AuditEntry> = None;
    for entry in entries {
        let problem = |problem: String| Break {
            task_id,
            n: entry.n,
            problem,
        };
        let expected_n = prev.map_or(1, |p| p.n + 1);
        if entry.n != expected_n {
            breaks.push(problem(format!(
                "expected entry {expected_n} here: an entry is missing or out of place"
            )));
        }
        if entry.task_id != task_id {
            breaks.push(problem(format!(
                "it belongs to task {}, not this one",
                entry.task_id
            )));
        }
        let expected_prev = prev.map_or(Digest::ZERO, |p| p.hash);
        if entry.prev != expected_prev {
            breaks.push(problem(
                "it does not hold the hash of the entry before it: an entry before it was changed, removed or inserted".into(),
            ));
        }
        if entry.content_hash() != entry.hash {
            breaks.push(problem(format!(
                "its content was changed after it was written ({} entry)",
                entry.event.name()
            )));
        }
        prev = Some(entry);
    }
    breaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::now;

    fn chain(len: usize) -> Vec<AuditEntry> {
        let id = TaskId::new();
        let mut entries: Vec<AuditEntry> = Vec::new();
        for i in 0..len {
            let event = if i == 0 {
                AuditEvent::Submitted {
                    input_sha256: Digest::of_text("input"),
                    max_attempts: 3,
                }
            } else {
                AuditEvent::Decided {
                    attempt: i as u32,
                    decision: Decision::Rejected,
                    comment: Some(format!("comment {i}").into()),
                    reviewed_sha256: Digest::of_text("output"),
                    result_sha256: None,
                    edited: false,
                    timed_out: false,
                }
            };
            let entry = AuditEntry::chain(
                entries.last(),
                id,
                i as u64 + 1,
                now(),
                event,
                TaskStatus::Running,
                Some("ana".into()),
            );
            entries.push(entry);
        }
        entries
    }

    #[test]
    fn an_untouched_chain_verifies_and_survives_a_round_trip_through_json() {
        let entries = chain(4);
        assert!(verify_chain(entries[0].task_id, &entries).is_empty());
        let reread: Vec<AuditEntry> = entries
            .iter()
            .map(|e| serde_json::from_str(&e.to_line()).unwrap())
            .collect();
        assert_eq!(reread, entries);
        assert!(verify_chain(entries[0].task_id, &reread).is_empty());
        assert!(entries[1].to_line().contains(r#""event":"decided""#));
    }

    #[test]
    fn an_edited_removed_or_reordered_entry_breaks_the_chain() {
        let entries = chain(4);
        let id = entries[0].task_id;

        let mut edited = entries.clone();
        let line = edited[2].to_line().replace("comment 2", "comment X");
        edited[2] = serde_json::from_str(&line).unwrap();
        let breaks = verify_chain(id, &edited);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert_eq!(breaks[0].n, 3);
        assert!(breaks[0].problem.contains("content was changed"));

        let mut removed = entries.clone();
        removed.remove(1);
        assert!(
            verify_chain(id, &removed)
                .iter()
                .any(|b| b.n == 3 && b.problem.contains("missing"))
        );

        let mut swapped = entries.clone();
        swapped.swap(1, 2);
        assert!(!verify_chain(id, &swapped).is_empty());
    }

    #[test]
    fn digests_print_and_parse_as_hex() {
        let d = Digest::of_text("abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert!("xyz".parse::<Digest>().is_err());
        assert!("é".repeat(32).parse::<Digest>().is_err());
    }
}
