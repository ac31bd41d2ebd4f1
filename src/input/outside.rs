//! What agents and workers send: an outside task's output and metadata, an attempt handed in,
//! a claim's wait and lease, a bounded wait on a task.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::{InvalidField, NewTask, at_most, attempt_number, limited};
use crate::model::task::{RawJson, TaskStatus};

/// The largest `metadata` accepted, as JSON, in bytes (16 KiB).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The longest a request may wait (a claim, or a wait on a task), in seconds.
pub const MAX_WAIT_SECS: u64 = 120;

impl NewTask {
    /// Adds what makes it an outside task: attempt 1's `output`, `"processor": "external"`,
    /// and `metadata` (an object, kept as given).
    pub fn outside(
        mut self,
        output: Option<&str>,
        processor: Option<&str>,
        metadata: Option<Box<RawValue>>,
    ) -> Result<Self, InvalidField> {
        match processor.map(str::trim) {
            None => {}
            Some("external") => self.outside = true,
            Some(other) => {
                return Err(InvalidField::invalid(
                    "processor",
                    format!(
                        "The processor {other:?} cannot be chosen per task: give \"external\" for a task \
                         whose attempts are made outside hitl, or leave it out for hitl's own processor."
                    ),
                ));
            }
        }
        if let Some(output) = output {
            let output = limited("output", output)?;
            if output.trim().is_empty() {
                return Err(InvalidField::invalid(
                    "output",
                    "The output is empty: give the text to review (1 byte to 64 KiB).",
                ));
            }
            self.output = Some(output.into());
            self.outside = true;
        }
        self.metadata = metadata.as_deref().map(parse_metadata).transpose()?;
        Ok(self)
    }
}

/// Metadata as given, if it is an object of at most 16 KiB (`null` is none, as if left out).
fn parse_metadata(metadata: &RawValue) -> Result<RawJson, InvalidField> {
    if !metadata.get().trim_start().starts_with('{') {
        return Err(InvalidField::invalid(
            "metadata",
            "The metadata must be a JSON object, such as {\"source\": \"my-agent\"}.",
        ));
    }
    let metadata = RawJson::compact(metadata.get());
    let bytes = metadata.0.len();
    if bytes > MAX_METADATA_BYTES {
        return Err(InvalidField::invalid(
            "metadata",
            format!(
                "The metadata is {bytes} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes."
            ),
        ));
    }
    Ok(metadata)
}

/// An attempt handed in from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPost {
    pub attempt: u32,
    pub output: Arc<str>,
    /// The worker's claim token, if a worker holds the attempt.
    pub claim: Option<Box<str>>,
}

impl AttemptPost {
    pub fn parse(
        attempt: Option<i64>,
        output: Option<&str>,
        claim: Option<&str>,
        max: usize,
    ) -> Result<Self, InvalidField> {
        let attempt = attempt_number(attempt)?.ok_or_else(|| {
            InvalidField::invalid("attempt", "Say which attempt this is: the attempt number.")
        })?;
        let output =
            output.ok_or_else(|| InvalidField::invalid("output", "The output is required."))?;
        at_most("output", output, max)?;
        if output.trim().is_empty() {
            return Err(InvalidField::invalid(
                "output",
                "The output is empty: give the text to review (1 byte to 64 KiB).",
            ));
        }
        let claim = match claim.map(str::trim) {
            None => None,
            Some("") => {
                return Err(InvalidField::invalid(
                    "claim",
                    "The claim is empty: give the token your claim returned, or leave it out.",
                ));
            }
            Some(claim) => Some(claim.into()),
        };
        Ok(Self {
            attempt,
            output: output.into(),
            claim,
        })
    }
}

/// A whole number of seconds in `range`, `default` if not given.
pub fn seconds(
    field: &'static str,
    value: Option<i64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, InvalidField> {
    let Some(value) = value else {
        return Ok(default);
    };
    u64::try_from(value)
        .ok()
        .filter(|secs| range.contains(secs))
        .ok_or_else(|| {
            InvalidField::invalid(
                field,
                format!(
                    "The {field} must be a whole number of seconds from {} to {}.",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// A text a worker sends (an error, a progress report): required, at most `max` bytes.
pub fn worker_text(
    field: &'static str,
    text: Option<&str>,
    max: usize,
) -> Result<Arc<str>, InvalidField> {
    let text =
        text.ok_or_else(|| InvalidField::invalid(field, format!("The {field} is required.")))?;
    at_most(field, text, max)?;
    if text.trim().is_empty() {
        return Err(InvalidField::invalid(
            field,
            format!("The {field} is empty."),
        ));
    }
    Ok(text.into())
}

/// The statuses a wait waits through, from `while=a,b`.
pub fn statuses(list: &str) -> Result<Vec<TaskStatus>, InvalidField> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|message| InvalidField::invalid("while", message))
        })
        .collect()
}
