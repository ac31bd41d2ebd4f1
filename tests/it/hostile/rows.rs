//! The tables' vocabulary: what a row must get ([`Expect`]), a row ([`Row`]) and the builders
//! the tables write rows with, the ids rows aim at ([`Targets`]), and the sizes and odd bodies
//! they send.

use std::panic::Location;

use crate::helpers::raw;

/// What a row must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    /// Exactly this status.
    Status(u16),
    /// Some 4xx: more than one status is defensible for this row (each such row says why).
    Any4xx,
    /// 200 `text/event-stream`, whose first event has a numeric `id:` and is `status` or
    /// `resync`.
    Stream,
}

impl From<i32> for Expect {
    fn from(status: i32) -> Self {
        Self::Status(u16::try_from(status).expect("an HTTP status"))
    }
}

pub(super) const ANY_4XX: Expect = Expect::Any4xx;
pub(super) const STREAM: Expect = Expect::Stream;

/// One hostile request.
pub(super) struct Row {
    /// Where the row is written, to find it from a failure.
    pub(super) file: &'static str,
    pub(super) line: u32,
    pub(super) method: &'static str,
    /// The request target exactly as sent.
    pub(super) path: String,
    pub(super) headers: Vec<(&'static str, Vec<u8>)>,
    pub(super) body: Vec<u8>,
    pub(super) expect: Expect,
}

#[track_caller]
pub(super) fn req(expect: impl Into<Expect>, method: &'static str, path: impl Into<String>) -> Row {
    Row {
        file: Location::caller().file(),
        line: Location::caller().line(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
        expect: expect.into(),
    }
}

#[track_caller]
pub(super) fn get(expect: impl Into<Expect>, path: impl Into<String>) -> Row {
    req(expect, "GET", path)
}

#[track_caller]
pub(super) fn post(expect: impl Into<Expect>, path: impl Into<String>) -> Row {
    req(expect, "POST", path)
}

impl Row {
    pub(super) fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A body sent as `application/json`.
    pub(super) fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("Content-Type", "application/json").body(body)
    }

    /// A body sent as a form post.
    pub(super) fn form(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// As htmx sends it: the answer must be a fragment.
    pub(super) fn htmx(self) -> Self {
        self.header("HX-Request", "true")
    }

    pub(super) fn last_event_id(self, value: impl Into<Vec<u8>>) -> Self {
        self.header("Last-Event-ID", value)
    }

    /// The row as the raw client sends it: streams are kept open, anything else is closed after
    /// its answer.
    pub(super) fn request(&self) -> raw::Request<'_> {
        raw::Request {
            method: self.method,
            path: &self.path,
            headers: &self.headers,
            body: &self.body,
            stream: self.expect == Expect::Stream,
        }
    }

    pub(super) fn is_htmx(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("hx-request") && value == b"true")
    }

    /// The path, cut short for messages.
    pub(super) fn shown_path(&self) -> String {
        shorten(&self.path, 100)
    }
}

pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Ids the rows aim at.
pub(super) struct Targets {
    /// A task waiting for review at attempt 1.
    pub(super) review: String,
    /// A cancelled task: every action on it is a conflict.
    pub(super) cancelled: String,
    /// A well-formed UUID no task has.
    pub(super) unknown: String,
    /// A task made outside hitl, waiting for review at attempt 1.
    pub(super) outside: String,
}

// Sizes.
pub(super) const KIB: usize = 1024;
/// One byte over the 64 KiB limit on inputs, comments and edits.
pub(super) const OVER_TEXT: usize = 64 * KIB + 1;
/// Over the 512 KiB body limit.
pub(super) const OVER_BODY: usize = 600 * KIB;

pub(super) fn a_times(n: usize) -> String {
    "a".repeat(n)
}

/// JSON nested `depth` arrays deep, in an unknown field of a submission refused for its
/// `max_attempts`.
pub(super) fn deeply_nested(depth: usize) -> String {
    format!(
        r#"{{"input": "x", "extra": {}{}, "max_attempts": 0}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Bytes with `bad` spliced between `before` and `after` (for invalid UTF-8).
pub(super) fn bytes(before: &str, bad: &[u8], after: &str) -> Vec<u8> {
    let mut out = before.as_bytes().to_vec();
    out.extend_from_slice(bad);
    out.extend_from_slice(after.as_bytes());
    out
}
