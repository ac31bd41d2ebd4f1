//! Parsing what people send: raw form or JSON fields in, validated values out.
//!
//! The web layer hands raw fields to these parsers and gets either a value the service can trust
//! or an [`InvalidField`] that says, in words a person understands, what to change.

use std::sync::Arc;

use crate::{
    model::audit::Digest,
    model::status::{MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT_SECS},
    model::task::{Decision, TimeoutPolicy},
};

mod outside;
pub use outside::{AttemptPost, MAX_METADATA_BYTES, MAX_WAIT_SECS, seconds, statuses, worker_text};

/// The largest input, comment or edited output accepted, in bytes (64 KiB).
pub const MAX_TEXT_BYTES: usize = 65_536;

/// A field that cannot be accepted as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidField {
    #[error("The {field} is {len} bytes long; the limit is {limit} bytes.")]
    TooLarge {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl InvalidField {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            Self::TooLarge { field, .. } | Self::Invalid { field, .. } => field,
        }
    }
}

/// A valid submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub input: Arc<str>,
    pub max_attempts: Option<u32>,
    /// This task's review timeout in seconds (0: no deadline), if not the service's.
    pub review_timeout_secs: Option<u64>,
    /// What happens when its deadline passes, if not the service's policy.
    pub review_timeout_policy: Option<TimeoutPolicy>,
    /// Its attempts are made outside hitl.
    pub outside: bool,
    /// Attempt 1's output, handed in with the submission (an outside task).
    pub output: Option<Arc<str>>,
    /// What the submitter attached, kept as given.
    pub metadata: Option<crate::model::task::RawJson>,
    /// Where its events are also delivered (checked against `--callback-allow`).
    pub callback_url: Option<Arc<str>>,
}

impl NewTask {
    pub fn parse(input: Option<&str>, max_attempts: Option<i64>) -> Result<Self, InvalidField> {
        let input =
            input.ok_or_else(|| InvalidField::invalid("input", "The input is required."))?;
        let input = limited("input", input)?;
        if input.trim().is_empty() {
            return Err(InvalidField::invalid(
                "input",
                "The input is empty: write what the task should work on.",
            ));
        }
        Ok(Self {
            input: input.into(),
            max_attempts: max_attempts.map(parse_max_attempts).transpose()?,
            review_timeout_secs: None,
            review_timeout_policy: None,
            outside: false,
            output: None,
            metadata: None,
            callback_url: None,
        })
    }

    /// Adds the task's own `callback_url`, checked already.
    pub fn calling_back(mut self, url: Option<String>) -> Self {
        self.callback_url = url.map(Into::into);
        self
    }

    /// Adds the submission's own review deadline: `secs` (0 for none) and what happens when it
    /// passes.
    pub fn with_deadline(
        mut self,
        field: &'static str,
        secs: Option<i64>,
        policy: Option<&str>,
    ) -> Result<Self, InvalidField> {
        self.review_timeout_secs = secs
            .map(|secs| {
                u64::try_from(secs)
                    .ok()
                    .filter(|secs| *secs <= MAX_TIMEOUT_SECS)
                    .ok_or_else(|| {
                        InvalidField::invalid(
                            field,
                            "The review deadline must be from 0 (none) up to a year.",
                        )
                    })
            })
            .transpose()?;
        self.review_timeout_policy = match policy.map(str::trim) {
            None | Some("") => None,
            Some(policy) => Some(
                policy
                    .parse()
                    .map_err(|message| InvalidField::invalid("review_timeout_policy", message))?,
            ),
        };
        Ok(self)
    }
}

impl NewTask {
    /// Refuses an input over `max` bytes: the operator's limit, at most the contract's.
    pub fn within(self, max: usize) -> Result<Self, InvalidField> {
        at_most("input", &self.input, max)?;
        if let Some(output) = &self.output {
            at_most("output", output, max)?;
        }
        Ok(self)
    }
}

/// A valid decision, not yet checked against the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub decision: Decision,
    /// The attempt the reviewer saw; `None` means the one under review now.
    pub attempt: Option<u32>,
    pub comment: Option<Arc<str>>,
    pub output: Option<Arc<str>>,
    /// The SHA-256 (hex) of the output the reviewer saw, if the client sent it: an approval
    /// is refused if the output under review no longer matches.
    pub output_sha256: Option<Digest>,
}

/// A decision's fields as sent, before they are checked.
#[derive(Debug, Default, Clone, Copy)]
pub struct DecisionFields<'a> {
    pub decision: Option<&'a str>,
    pub attempt: Option<i64>,
    pub comment: Option<&'a str>,
    pub output: Option<&'a str>,
    pub output_sha256: Option<&'a str>,
}

impl DecisionRequest {
    pub fn parse(fields: DecisionFields<'_>) -> Result<Self, InvalidField> {
        let decision = fields
            .decision
            .ok_or_else(|| InvalidField::invalid("decision", "Choose a decision."))?
            .parse::<Decision>()
            .map_err(|message| InvalidField::invalid("decision", message))?;
        let attempt = attempt_number(fields.attempt)?;
        let comment = optional_text("comment", fields.comment)?;
        if decision == Decision::Rejected && comment.is_none() {
            return Err(InvalidField::invalid(
                "comment",
                "Say what should change: requesting changes needs a comment, which the next attempt receives.",
            ));
        }
        let output = match (decision, fields.output) {
            (_, None) => None,
            (Decision::Approved, Some(text)) => Some(limited("output", text)?.into()),
            (_, Some(_)) => {
                return Err(InvalidField::invalid(
                    "output",
                    "An edited output can only be given with an approval.",
                ));
            }
        };
        let output_sha256 = match fields.output_sha256.map(str::trim) {
            None | Some("") => None,
            Some(hash) => Some(hash.parse::<Digest>().map_err(|_| {
                InvalidField::invalid(
                    "output_sha256",
                    "The output_sha256 must be 64 hexadecimal digits: the SHA-256 of the output you reviewed.",
                )
            })?),
        };
        Ok(Self {
            decision,
            attempt,
            comment,
            output,
            output_sha256,
        })
    }
}

impl DecisionRequest {
    /// Refuses a comment or edit over `max` bytes: the operator's limit, at most the contract's.
    pub fn within(self, max: usize) -> Result<Self, InvalidField> {
        for (field, text) in [("comment", &self.comment), ("output", &self.output)] {
            if let Some(text) = text {
                at_most(field, text, max)?;
            }
        }
        Ok(self)
    }
}

/// An attempt number as sent: 1 or more, if given.
pub fn attempt_number(attempt: Option<i64>) -> Result<Option<u32>, InvalidField> {
    attempt
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| InvalidField::invalid("attempt", "The attempt must be 1 or more."))
        })
        .transpose()
}

/// How much longer a review may stay open: `amount` of `unit` seconds, from 1 unit up to a
/// year; in seconds.
pub fn extension(field: &'static str, amount: Option<i64>, unit: u64) -> Result<u64, InvalidField> {
    let amount = amount
        .ok_or_else(|| InvalidField::invalid(field, "Say how much longer the review may take."))?;
    u64::try_from(amount)
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|secs| (1..=MAX_TIMEOUT_SECS).contains(secs))
        .ok_or_else(|| {
            InvalidField::invalid(
                field,
                format!("The extension must be more than 0 and at most a year, not {amount}."),
            )
        })
}

/// Parses a whole number field sent as text (forms send every field as text).
pub fn parse_number(field: &'static str, text: Option<&str>) -> Result<Option<i64>, InvalidField> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            InvalidField::invalid(
                field,
                format!("The {field} must be a whole number, not {text:?}."),
            )
        }),
    }
}

fn parse_max_attempts(n: i64) -> Result<u32, InvalidField> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_ATTEMPTS_LIMIT).contains(n))
        .ok_or_else(|| {
            InvalidField::invalid(
                "max_attempts",
                format!("The number of attempts must be from 1 to {MAX_ATTEMPTS_LIMIT}, not {n}."),
            )
        })
}

fn limited<'a>(field: &'static str, text: &'a str) -> Result<&'a str, InvalidField> {
    at_most(field, text, MAX_TEXT_BYTES)?;
    Ok(text)
}

fn at_most(field: &'static str, text: &str, limit: usize) -> Result<(), InvalidField> {
    if text.len() > limit {
        return Err(InvalidField::TooLarge {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

/// Blank text counts as absent.
fn optional_text(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<Arc<str>>, InvalidField> {
    match text {
        Some(text) if !text.trim().is_empty() => Ok(Some(limited(field, text)?.into())),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_must_be_present_non_blank_and_at_most_64_kib() {
        assert!(NewTask::parse(Some("hello"), None).is_ok());
        assert_eq!(NewTask::parse(None, None).unwrap_err().field(), "input");
        assert_eq!(
            NewTask::parse(Some(" \n "), None).unwrap_err().field(),
            "input"
        );
        let exact = "a".repeat(MAX_TEXT_BYTES);
        assert!(NewTask::parse(Some(&exact), None).is_ok());
        let over = "a".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            NewTask::parse(Some(&over), None),
            Err(InvalidField::TooLarge { len: 65_537, .. })
        ));
    }

    #[test]
    fn max_attempts_is_bounded() {
        assert_eq!(
            NewTask::parse(Some("x"), Some(5)).unwrap().max_attempts,
            Some(5)
        );
        for bad in [0, -1, 21, i64::MAX] {
            assert_eq!(
                NewTask::parse(Some("x"), Some(bad)).unwrap_err().field(),
                "max_attempts"
            );
        }
        assert_eq!(parse_number("max_attempts", Some(" ")), Ok(None));
        assert!(parse_number("max_attempts", Some("three")).is_err());
    }

    #[test]
    fn decisions_parse_and_edits_go_only_with_approval() {
        let parse = |decision, attempt, comment, output| {
            DecisionRequest::parse(DecisionFields {
                decision,
                attempt,
                comment,
                output,
                output_sha256: None,
            })
        };
        let approve = parse(Some("approved"), Some(2), Some("  "), Some("edited")).unwrap();
        assert_eq!(approve.decision, Decision::Approved);
        assert_eq!(approve.attempt, Some(2));
        assert_eq!(approve.comment, None, "a blank comment is no comment");
        assert_eq!(approve.output.as_deref(), Some("edited"));

        let reject = parse(Some("rejected"), None, Some("shorter"), None).unwrap();
        assert_eq!(reject.comment.as_deref(), Some("shorter"));
        assert_eq!(
            parse(Some("rejected"), None, Some(" \n"), None)
                .unwrap_err()
                .field(),
            "comment",
            "requesting changes needs a comment"
        );
        assert!(parse(Some("rejected_final"), None, None, None).is_ok());

        let err = |d, a, o| parse(d, a, Some("why"), o).unwrap_err().field();
        assert_eq!(err(Some("maybe"), None, None), "decision");
        assert_eq!(err(None, None, None), "decision");
        assert_eq!(err(Some("approved"), Some(0), None), "attempt");
        assert_eq!(err(Some("rejected"), None, Some("x")), "output");
    }

    #[test]
    fn the_reviewed_output_hash_is_64_hex_digits() {
        let parse = |hash| {
            DecisionRequest::parse(DecisionFields {
                decision: Some("approved"),
                output_sha256: Some(hash),
                ..DecisionFields::default()
            })
        };
        let upper = "AB".repeat(32);
        assert_eq!(
            parse(&upper).unwrap().output_sha256.map(|d| d.to_string()),
            Some("ab".repeat(32))
        );
        assert_eq!(parse("").unwrap().output_sha256, None);
        for bad in ["abc", &"g".repeat(64), &"a".repeat(65)] {
            assert_eq!(parse(bad).unwrap_err().field(), "output_sha256");
        }
    }
}
