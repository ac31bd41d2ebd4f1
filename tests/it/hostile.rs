//! Hostile input, table-driven: every route that takes input is sent malformed, mistyped,
//! oversized, out-of-range, traversing and injecting requests. Each row is one raw HTTP/1.1
//! request (method, path exactly as sent, headers, body bytes) and the status it must get; the
//! runner checks, for every row:
//!
//! (a) the status (or, where several 4xx are defensible, any 4xx: those rows say so);
//! (b) that it is not a 5xx, and that the server answers at all (no hang, no dropped connection);
//! (c) that the refusal is clear: `{"error": {"code", "message"}}` with the contract's code on
//!     `/api/...`; elsewhere an HTML page, or with `HX-Request: true` a fragment, holding a
//!     `role="alert"` element with a message;
//! (d) that nothing changed: `GET /api/tasks` is the same before and after the row.
//!
//! Requests go over a plain TCP socket, not reqwest ([`crate::helpers::raw`]), so paths such as
//! `/assets/../Cargo.toml` reach the server as written (a URL library would normalise them away)
//! and bodies and header values can hold any bytes; streams are read with a parser that keeps
//! every field ([`crate::helpers::raw_sse`]), so a forged one shows.
//!
//! Rows that must change state are not in the tables: the injection test at the end submits,
//! rejects and approves text built to break out of SSE framing and HTML, and checks the streams,
//! the pages and the JSON answers.

use std::panic::Location;

use hitl::{config::Config, task::TaskStatus};
use reqwest::StatusCode;
use scraper::Html;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, WAIT, json_body,
    raw::{self, Answer, Conn, open, send},
    raw_sse::{RawEvent, SseParser},
    select, slow_config, spawn_app, spawn_app_with, test_config, unknown_id, within,
};

// ---------------------------------------------------------------------------------------------
// The table's vocabulary.

/// What a row must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
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

const ANY_4XX: Expect = Expect::Any4xx;
const STREAM: Expect = Expect::Stream;

/// One hostile request.
struct Row {
    /// Where the row is written in this file, to find it from a failure.
    line: u32,
    method: &'static str,
    /// The request target exactly as sent.
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    expect: Expect,
}

#[track_caller]
fn req(expect: impl Into<Expect>, method: &'static str, path: impl Into<String>) -> Row {
    Row {
        line: Location::caller().line(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
        expect: expect.into(),
    }
}

#[track_caller]
fn get(expect: impl Into<Expect>, path: impl Into<String>) -> Row {
    req(expect, "GET", path)
}

#[track_caller]
fn post(expect: impl Into<Expect>, path: impl Into<String>) -> Row {
    req(expect, "POST", path)
}

impl Row {
    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A body sent as `application/json`.
    fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("Content-Type", "application/json").body(body)
    }

    /// A body sent as a form post.
    fn form(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// As htmx sends it: the answer must be a fragment.
    fn htmx(self) -> Self {
        self.header("HX-Request", "true")
    }

    fn last_event_id(self, value: impl Into<Vec<u8>>) -> Self {
        self.header("Last-Event-ID", value)
    }

    /// The row as the raw client sends it: streams are kept open, anything else is closed after
    /// its answer.
    fn request(&self) -> raw::Request<'_> {
        raw::Request {
            method: self.method,
            path: &self.path,
            headers: &self.headers,
            body: &self.body,
            stream: self.expect == Expect::Stream,
        }
    }

    fn is_htmx(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("hx-request") && value == b"true")
    }

    /// The path, cut short for messages.
    fn shown_path(&self) -> String {
        shorten(&self.path, 100)
    }
}

fn shorten(text: &str, max: usize) -> String {
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
struct Targets {
    /// A task waiting for review at attempt 1.
    review: String,
    /// A cancelled task: every action on it is a conflict.
    cancelled: String,
    /// A well-formed UUID no task has.
    unknown: String,
}

// Sizes.
const KIB: usize = 1024;
/// One byte over the 64 KiB limit on inputs, comments and edits.
const OVER_TEXT: usize = 64 * KIB + 1;
/// Over the 512 KiB body limit.
const OVER_BODY: usize = 600 * KIB;

fn a_times(n: usize) -> String {
    "a".repeat(n)
}

/// JSON nested `depth` arrays deep, in an unknown field of a submission refused for its
/// `max_attempts`.
fn deeply_nested(depth: usize) -> String {
    format!(
        r#"{{"input": "x", "extra": {}{}, "max_attempts": 0}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Bytes with `bad` spliced between `before` and `after` (for invalid UTF-8).
fn bytes(before: &str, bad: &[u8], after: &str) -> Vec<u8> {
    let mut out = before.as_bytes().to_vec();
    out.extend_from_slice(bad);
    out.extend_from_slice(after.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// The tables.

/// `POST /api/tasks`, `GET /api/tasks`, `GET /api/tasks/{id}`, `POST /api/tasks/{id}/feedback`,
/// `POST /api/tasks/{id}/cancel`.
fn json_api_rows(t: &Targets) -> Vec<Row> {
    let id = &t.review;
    let done = &t.cancelled;
    let unknown = &t.unknown;
    let feedback = format!("/api/tasks/{id}/feedback");
    let long_id = a_times(8 * KIB);
    vec![
        // POST /api/tasks: malformed JSON.
        post(400, "/api/tasks").json("{"),
        post(400, "/api/tasks").json(r#"{"input": "x""#),
        post(400, "/api/tasks").json(r#"{"input": 'x'}"#),
        post(400, "/api/tasks").json(r#"{input: "x"}"#),
        post(400, "/api/tasks").json(r#"{"input": "x",}"#),
        post(400, "/api/tasks").json(r#"{"input": "x"} trailing"#),
        post(400, "/api/tasks").json(""),
        post(400, "/api/tasks").json("   "),
        post(400, "/api/tasks").json(r#"{"input": "\x"}"#),
        // A lone surrogate escape is not a Unicode scalar value.
        post(400, "/api/tasks").json(r#"{"input": "\ud800"}"#),
        // Nested 100,000 deep: in a field the server ignores (and a refused max_attempts, so
        // nothing is created), and as the whole body. Neither may overflow a stack.
        post(422, "/api/tasks").json(deeply_nested(100_000)),
        post(ANY_4XX, "/api/tasks").json("[".repeat(100_000)),
        post(ANY_4XX, "/api/tasks").json(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
        post(ANY_4XX, "/api/tasks").json(r#"{"input":"#.repeat(50_000)),
        // Invalid UTF-8 in a JSON body: inside a string, and outside one.
        post(400, "/api/tasks").json(bytes(r#"{"input": ""#, b"\xff\xfe", r#""}"#)),
        post(400, "/api/tasks").json(bytes(r#"{"input": "ok"#, b"\xc3\x28", r#""}"#)),
        post(400, "/api/tasks").json(bytes("", b"\xef\xbf", r#"{"input": "x"}"#)),
        // Wrong JSON types.
        post(422, "/api/tasks").json(r#"{"input": 5}"#),
        post(422, "/api/tasks").json(r#"{"input": ["x"]}"#),
        post(422, "/api/tasks").json(r#"{"input": {"text": "x"}}"#),
        post(422, "/api/tasks").json(r#"{"input": true}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": "3"}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": {}}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": [3]}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": true}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 2.5}"#),
        // JSON that is not an object. 4xx: valid JSON of the wrong shape is 422 by the
        // README's reading ("400 = not JSON"), but 400 is defensible.
        post(ANY_4XX, "/api/tasks").json("[]"),
        post(ANY_4XX, "/api/tasks").json(r#"["input", "x"]"#),
        post(ANY_4XX, "/api/tasks").json(r#""x""#),
        post(ANY_4XX, "/api/tasks").json("42"),
        post(ANY_4XX, "/api/tasks").json("null"),
        // Missing or empty required fields.
        post(422, "/api/tasks").json("{}"),
        post(422, "/api/tasks").json(r#"{"max_attempts": 3}"#),
        post(422, "/api/tasks").json(r#"{"input": null}"#),
        post(422, "/api/tasks").json(r#"{"input": ""}"#),
        post(422, "/api/tasks").json(r#"{"input": " \n\t\r "}"#),
        post(422, "/api/tasks").json(r#"{"input": "a", "input": "b"}"#),
        // max_attempts out of range: negative, zero, over 20, 2^32, u64::MAX, 1e30.
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": -1}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 0}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 21}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 4294967296}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 4294967297}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 18446744073709551615}"#),
        post(422, "/api/tasks")
            .json(r#"{"input": "x", "max_attempts": -9223372036854775808}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "max_attempts": 1e30}"#),
        // Beyond f64: serde_json calls it a syntax error (400); a field error (422) is as fair.
        post(ANY_4XX, "/api/tasks").json(r#"{"input": "x", "max_attempts": 1e400}"#),
        // Too large: a field over 64 KiB (in bytes, so multi-byte text counts in bytes), and a
        // body over the server's limit.
        post(413, "/api/tasks").json(json!({ "input": a_times(OVER_TEXT) }).to_string()),
        post(413, "/api/tasks").json(json!({ "input": "€".repeat(21_846) }).to_string()),
        post(413, "/api/tasks").json(json!({ "input": a_times(OVER_BODY) }).to_string()),
        post(413, "/api/tasks").json(a_times(OVER_BODY)),
        // Wrong content types, with bodies that are not JSON: the API reads JSON whatever the
        // type says, so these are malformed JSON (a form body must not be taken as a form).
        post(400, "/api/tasks").form("input=hello&max_attempts=2"),
        post(400, "/api/tasks")
            .header("Content-Type", "multipart/form-data; boundary=XyZ")
            .body("--XyZ\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\nhello\r\n--XyZ--\r\n"),
        post(400, "/api/tasks")
            .header("Content-Type", "application/json; charset=utf-16")
            .body(
                r#"{"input": "x"}"#
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<u8>>(),
            ),
        post(400, "/api/tasks")
            .header("Content-Type", "text/html")
            .body("<b>input</b>"),
        // Wrong methods.
        req(405, "PUT", "/api/tasks").json(r#"{"input": "x"}"#),
        req(405, "DELETE", "/api/tasks"),
        req(405, "PATCH", "/api/tasks").json(r#"{"input": "x"}"#),
        // GET /api/tasks?status=
        get(422, "/api/tasks?status=bogus"),
        get(422, "/api/tasks?status=WAITING_FOR_REVIEW"),
        get(422, "/api/tasks?status=waiting_for_review%00"),
        get(422, "/api/tasks?status=%FF"),
        get(422, "/api/tasks?status=%3Cscript%3E"),
        get(422, format!("/api/tasks?status={}", a_times(8 * KIB))),
        // Two filters: which 4xx is a judgement call, but it is still an API error.
        // Fixed, was a bug: 400 text/plain "Failed to deserialize query string: duplicate field `status`"
        // (axum's Query rejection), not the API's JSON error.
        get(ANY_4XX, "/api/tasks?status=running&status=pending"),
        get(200, "/api/tasks?status="),
        get(200, "/api/tasks?status=waiting_for_review"),
        // GET /api/tasks?q=&page=&per_page=: bad pages and sizes are 422, a page past the end is
        // empty, a search for markup is only text.
        get(422, "/api/tasks?page=0"),
        get(422, "/api/tasks?page=-1"),
        get(422, "/api/tasks?page=%FF"),
        get(422, "/api/tasks?per_page=501"),
        get(422, "/api/tasks?per_page=1e3"),
        get(422, format!("/api/tasks?q={}", a_times(2 * KIB))),
        get(200, "/api/tasks?page=99999999999999999999&per_page=500"),
        get(200, "/api/tasks?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E&page=1"),
        get(200, "/api/tasks?q=%00%FF%F0%9F%A6%80"),
        get(ANY_4XX, "/api/tasks?page=1&page=2"),
        // GET /api/tasks/{id}: ids that are not UUIDs, and one no task has.
        get(404, "/api/tasks/nope"),
        get(404, "/api/tasks/.."),
        get(404, "/api/tasks/%2e%2e"),
        get(404, "/api/tasks/%2E%2E%2F%2E%2E%2FCargo.toml"),
        get(404, "/api/tasks/..%2f..%2fCargo.toml"),
        get(404, format!("/api/tasks/{long_id}")),
        get(404, format!("/api/tasks/{id}%00")),
        get(404, format!("/api/tasks/{id}x")),
        get(404, "/api/tasks/00000000-0000-0000-0000-000000000000"),
        get(404, format!("/api/tasks/{unknown}")),
        get(404, "/api/tasks/%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        get(404, format!("/api/tasks/{id}/")),
        get(404, format!("/api/tasks/{id}/nope")),
        get(404, "/api//tasks"),
        // Not UTF-8 once percent-decoded: 400 or 404 are both fair, but in the JSON shape.
        // Fixed, was a bug: 400 text/plain "Invalid URL: Invalid UTF-8 in `id`" (axum's Path rejection).
        get(ANY_4XX, "/api/tasks/%FF%FE"),
        req(405, "DELETE", format!("/api/tasks/{id}")),
        req(405, "PUT", format!("/api/tasks/{id}")).json(r#"{"status": "completed"}"#),
        // POST /api/tasks/{id}/feedback: malformed JSON.
        post(400, &feedback).json(r#"{"decision": "approved""#),
        post(400, &feedback).json(""),
        post(400, &feedback).json(r#"{"decision": approved}"#),
        post(400, &feedback).json(bytes(r#"{"decision": "approved", "comment": ""#, b"\xff", r#""}"#)),
        post(400, &feedback).json(bytes(r#"{"decision": "approved"#, b"\x80", r#""}"#)),
        // Wrong types.
        post(422, &feedback).json(r#"{"decision": 1}"#),
        post(422, &feedback).json(r#"{"decision": ["approved"]}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": "1"}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 1.0}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": [1]}"#),
        post(422, &feedback).json(r#"{"decision": "rejected", "attempt": 1, "comment": 5}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 1, "output": {"x": 1}}"#),
        post(ANY_4XX, &feedback).json("[]"),
        post(ANY_4XX, &feedback).json(r#""approved""#),
        // Missing decision, unknown decisions.
        post(422, &feedback).json("{}"),
        post(422, &feedback).json(r#"{"attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": null, "attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": "maybe", "attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": "APPROVED", "attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": "approved ", "attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": "", "attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": "approved\u0000", "attempt": 1}"#),
        // Attempt numbers out of range.
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 0}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": -1}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 4294967296}"#),
        // 2^32 + 1 would wrap to 1 (the attempt under review) if truncated.
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 4294967297}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 18446744073709551615}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 1e30}"#),
        // Attempts that are well-formed but not the one under review.
        post(409, &feedback).json(r#"{"decision": "approved", "attempt": 2}"#),
        post(409, &feedback).json(r#"{"decision": "rejected", "attempt": 4294967295, "comment": "x"}"#),
        // Requesting changes without saying which.
        post(422, &feedback).json(r#"{"decision": "rejected", "attempt": 1}"#),
        post(422, &feedback).json(r#"{"decision": "rejected", "attempt": 1, "comment": " \n\t "}"#),
        post(422, &feedback).json(r#"{"decision": "rejected", "attempt": 1, "comment": null}"#),
        // The hash of the reviewed output, malformed or not matching.
        post(422, &feedback).json(r#"{"decision": "approved", "attempt": 1, "output_sha256": "abc"}"#),
        post(422, &feedback).json(r#"{"decision": "approved", "output_sha256": 5}"#),
        post(409, &feedback).json(
            r#"{"decision": "approved", "attempt": 1, "output_sha256": "0000000000000000000000000000000000000000000000000000000000000000"}"#,
        ),
        // An edit with a rejection.
        post(422, &feedback).json(r#"{"decision": "rejected", "attempt": 1, "comment": "x", "output": "x"}"#),
        post(422, &feedback)
            .json(r#"{"decision": "rejected_final", "attempt": 1, "output": "x"}"#),
        // Too large: a comment, an edit, the body.
        post(413, &feedback).json(
            json!({ "decision": "rejected", "attempt": 1, "comment": a_times(OVER_TEXT) })
                .to_string(),
        ),
        post(413, &feedback).json(
            json!({ "decision": "rejected_final", "attempt": 1, "comment": "é".repeat(32_769) })
                .to_string(),
        ),
        post(413, &feedback).json(
            json!({ "decision": "approved", "attempt": 1, "output": a_times(OVER_TEXT) })
                .to_string(),
        ),
        post(413, &feedback).json(
            json!({ "decision": "rejected", "attempt": 1, "comment": a_times(OVER_BODY) })
                .to_string(),
        ),
        // A form body that would approve if it were read as a form.
        post(400, &feedback).form("decision=approved&attempt=1"),
        post(400, &feedback)
            .header("Content-Type", "text/plain")
            .body("approved"),
        // Unknown and malformed task ids, a task that cannot take a decision.
        post(404, format!("/api/tasks/{unknown}/feedback")).json(r#"{"decision": "approved"}"#),
        post(404, "/api/tasks/nope/feedback").json(r#"{"decision": "approved"}"#),
        post(404, "/api/tasks/../feedback").json(r#"{"decision": "approved"}"#),
        post(404, "/api/tasks/%2e%2e/feedback").json(r#"{"decision": "approved"}"#),
        post(404, format!("/api/tasks/{long_id}/feedback")).json(r#"{"decision": "approved"}"#),
        post(409, format!("/api/tasks/{done}/feedback"))
            .json(r#"{"decision": "approved", "attempt": 1}"#),
        post(409, format!("/api/tasks/{done}/feedback")).json(r#"{"decision": "rejected", "comment": "x"}"#),
        // A bad id and a bad body together: either refusal is right.
        post(ANY_4XX, "/api/tasks/nope/feedback").json("{"),
        get(405, &feedback),
        req(405, "PUT", &feedback).json(r#"{"decision": "approved"}"#),
        // POST /api/tasks/{id}/cancel: unknown and malformed ids, a task already ended.
        post(404, format!("/api/tasks/{unknown}/cancel")),
        post(404, "/api/tasks/nope/cancel"),
        post(404, "/api/tasks/../cancel"),
        post(404, "/api/tasks/%2e%2e/cancel"),
        post(404, format!("/api/tasks/{long_id}/cancel")),
        post(409, format!("/api/tasks/{done}/cancel")),
        post(409, format!("/api/tasks/{done}/cancel")).json("{"),
        // The cancel route takes no body; a huge one on an ended task is refused either way.
        post(ANY_4XX, format!("/api/tasks/{done}/cancel")).json(a_times(OVER_BODY)),
        get(405, format!("/api/tasks/{id}/cancel")),
        req(405, "DELETE", format!("/api/tasks/{id}/cancel")),
        // POST /api/tasks/{id}/deadline: the review under review has no deadline; bad amounts,
        // unknown tasks, ended tasks.
        post(409, format!("/api/tasks/{id}/deadline")).json(r#"{"extend_secs": 60}"#),
        post(422, format!("/api/tasks/{id}/deadline")).json(r#"{}"#),
        post(422, format!("/api/tasks/{id}/deadline")).json(r#"{"extend_secs": 0}"#),
        post(422, format!("/api/tasks/{id}/deadline")).json(r#"{"extend_secs": -5}"#),
        post(422, format!("/api/tasks/{id}/deadline")).json(r#"{"extend_secs": 9223372036854775807}"#),
        post(422, format!("/api/tasks/{id}/deadline")).json(r#"{"extend_secs": "1h"}"#),
        post(422, format!("/api/tasks/{id}/deadline")).json(r#"{"extend_secs": 60, "attempt": 0}"#),
        post(400, format!("/api/tasks/{id}/deadline")).json("{"),
        post(404, format!("/api/tasks/{unknown}/deadline")).json(r#"{"extend_secs": 60}"#),
        post(404, "/api/tasks/nope/deadline").json(r#"{"extend_secs": 60}"#),
        post(409, format!("/api/tasks/{done}/deadline")).json(r#"{"extend_secs": 60}"#),
        get(405, format!("/api/tasks/{id}/deadline")),
        // GET /api/tasks/{id}/history: unknown and malformed ids.
        get(404, format!("/api/tasks/{unknown}/history")),
        get(404, "/api/tasks/nope/history"),
        get(404, format!("/api/tasks/{long_id}/history")),
        post(405, format!("/api/tasks/{id}/history")),
        // Submissions with bad deadlines.
        post(422, "/api/tasks").json(r#"{"input": "x", "review_timeout_secs": -1}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "review_timeout_secs": 31536001}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "review_timeout_secs": 1e99}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "review_timeout_policy": "later"}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "review_timeout_policy": 1}"#),
        // Routes that do not exist under /api.
        get(404, "/api/nope"),
        get(404, "/api/../Cargo.toml"),
        get(404, "/api/%2e%2e/Cargo.toml"),
    ]
}

/// `POST /tasks`, `POST /tasks/{id}/feedback`, `POST /tasks/{id}/cancel`, `GET /tasks/{id}`,
/// each without and (for posts) with `HX-Request`.
fn browser_rows(t: &Targets) -> Vec<Row> {
    let id = &t.review;
    let done = &t.cancelled;
    let unknown = &t.unknown;
    let feedback = format!("/tasks/{id}/feedback");
    let long_id = a_times(8 * KIB);
    let mut rows = Vec::new();
    for htmx in [false, true] {
        let hx = |row: Row| if htmx { row.htmx() } else { row };
        rows.extend([
            // POST /tasks: missing, empty, blank input.
            hx(post(422, "/tasks").form("")),
            hx(post(422, "/tasks").form("max_attempts=3")),
            hx(post(422, "/tasks").form("input=")),
            hx(post(422, "/tasks").form("input=+%20%0D%0A%09")),
            hx(post(422, "/tasks").form("inputx=hello")),
            // max_attempts: not a number, negative, zero, over 20, 2^32, u64::MAX, 1e30.
            hx(post(422, "/tasks").form("input=hello&max_attempts=three")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=-1")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=0")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=21")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=4294967296")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=4294967297")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=18446744073709551615")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=1e30")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=2.5")),
            hx(post(422, "/tasks").form("input=hello&max_attempts=0x10")),
            // Invalid UTF-8 in a form body, in a field whose value is then refused (a form's
            // bytes are decoded lossily, as the URL standard says, so they name no number).
            hx(post(422, "/tasks").form("input=hello&max_attempts=%FF")),
            hx(post(422, "/tasks").form(bytes("input=hello&max_attempts=", b"\xff\xfe", ""))),
            // Too large: the input, the body.
            hx(post(413, "/tasks").form(format!("input={}", a_times(OVER_TEXT)))),
            hx(post(413, "/tasks").form(format!("input={}", "%E2%82%AC".repeat(21_846)))),
            hx(post(413, "/tasks").form(format!("input={}", a_times(OVER_BODY)))),
            // Wrong content types. 4xx: the server says 400; 415 would be as right.
            hx(post(ANY_4XX, "/tasks").json(r#"{"input": "hello"}"#)),
            hx(post(ANY_4XX, "/tasks").body("input=hello")),
            hx(post(ANY_4XX, "/tasks")
                .header("Content-Type", "multipart/form-data; boundary=XyZ")
                .body("--XyZ\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\nhello\r\n--XyZ--\r\n")),
            // The same field twice. 4xx: refused as a malformed form (400) or as the field (422).
            hx(post(ANY_4XX, "/tasks").form("input=a&input=b")),
            // POST /tasks/{id}/feedback: missing and unknown decisions.
            hx(post(422, &feedback).form("")),
            hx(post(422, &feedback).form("attempt=1")),
            hx(post(422, &feedback).form("decision=&attempt=1")),
            hx(post(422, &feedback).form("decision=maybe&attempt=1")),
            hx(post(422, &feedback).form("decision=APPROVED&attempt=1")),
            hx(post(422, &feedback).form("decision=approved%00&attempt=1")),
            hx(post(422, &feedback).form("decision=approved%FF&attempt=1")),
            hx(post(422, &feedback).form(bytes("decision=approved", b"\xc0\xaf", "&attempt=1"))),
            hx(post(422, &feedback).form("decision=%3Cscript%3Ealert(1)%3C%2Fscript%3E&attempt=1")),
            // Attempt: not a number, negative, zero, 2^32, 2^32 + 1, u64::MAX, 1e30.
            hx(post(422, &feedback).form("decision=approved&attempt=one")),
            hx(post(422, &feedback).form("decision=approved&attempt=-1")),
            hx(post(422, &feedback).form("decision=approved&attempt=0")),
            hx(post(422, &feedback).form("decision=approved&attempt=4294967296")),
            hx(post(422, &feedback).form("decision=approved&attempt=4294967297")),
            hx(post(422, &feedback).form("decision=approved&attempt=18446744073709551615")),
            hx(post(422, &feedback).form("decision=approved&attempt=1e30")),
            hx(post(422, &feedback).form("decision=approved&attempt=1.0")),
            // Not the attempt under review.
            hx(post(409, &feedback).form("decision=approved&attempt=2")),
            hx(post(409, &feedback).form("decision=rejected&attempt=4294967295&comment=x")),
            // Requesting changes without saying which.
            hx(post(422, &feedback).form("decision=rejected&attempt=1")),
            hx(post(422, &feedback).form("decision=rejected&attempt=1&comment=+%0D%0A+")),
            // The hash of the reviewed output, malformed.
            hx(post(422, &feedback).form("decision=approved&attempt=1&output_sha256=xyz")),
            // An edit with a rejection.
            hx(post(422, &feedback).form("decision=rejected&attempt=1&comment=x&output=x")),
            // Too large: a comment, an edit, the body.
            hx(post(413, &feedback)
                .form(format!("decision=rejected&attempt=1&comment={}", a_times(OVER_TEXT)))),
            hx(post(413, &feedback)
                .form(format!("decision=approved&attempt=1&output={}", a_times(OVER_TEXT)))),
            hx(post(413, &feedback)
                .form(format!("decision=rejected&attempt=1&comment={}", a_times(OVER_BODY)))),
            // Wrong content type: a JSON approval must not be read. 4xx: 400 or 415.
            hx(post(ANY_4XX, &feedback).json(r#"{"decision": "approved", "attempt": 1}"#)),
            hx(post(ANY_4XX, &feedback).body("decision=approved&attempt=1")),
            // Unknown and malformed ids; a task that cannot take a decision.
            hx(post(404, format!("/tasks/{unknown}/feedback")).form("decision=approved")),
            hx(post(404, "/tasks/nope/feedback").form("decision=approved")),
            hx(post(404, "/tasks/../feedback").form("decision=approved")),
            hx(post(404, "/tasks/%2e%2e/feedback").form("decision=approved")),
            hx(post(404, format!("/tasks/{long_id}/feedback")).form("decision=approved")),
            hx(post(409, format!("/tasks/{done}/feedback")).form("decision=approved&attempt=1")),
            // Not UTF-8 once percent-decoded. 4xx: 400 or 404.
            // Fixed, was a bug: 400 text/plain "Invalid URL: Invalid UTF-8 in `id`": no page, no fragment.
            hx(post(ANY_4XX, "/tasks/%FF/feedback").form("decision=approved")),
            // POST /tasks/{id}/deadline.
            hx(post(409, format!("/tasks/{id}/deadline")).form("extend_minutes=60")),
            hx(post(422, format!("/tasks/{id}/deadline")).form("")),
            hx(post(422, format!("/tasks/{id}/deadline")).form("extend_minutes=0")),
            hx(post(422, format!("/tasks/{id}/deadline")).form("extend_minutes=soon")),
            hx(post(422, format!("/tasks/{id}/deadline")).form("extend_minutes=9223372036854775807")),
            hx(post(422, format!("/tasks/{id}/deadline")).form("extend_minutes=5&attempt=-1")),
            hx(post(404, format!("/tasks/{unknown}/deadline")).form("extend_minutes=60")),
            hx(post(409, format!("/tasks/{done}/deadline")).form("extend_minutes=60")),
            // POST /tasks with bad deadlines.
            hx(post(422, "/tasks").form("input=x&review_timeout_minutes=-1")),
            hx(post(422, "/tasks").form("input=x&review_timeout_minutes=9223372036854775807")),
            hx(post(422, "/tasks").form("input=x&review_timeout_minutes=ten")),
            hx(post(422, "/tasks").form("input=x&review_timeout_policy=later")),
            // POST /tasks/{id}/cancel.
            hx(post(404, format!("/tasks/{unknown}/cancel"))),
            hx(post(404, "/tasks/nope/cancel")),
            hx(post(404, "/tasks/../cancel")),
            hx(post(404, "/tasks/%2e%2e/cancel")),
            hx(post(404, format!("/tasks/{long_id}/cancel"))),
            hx(post(409, format!("/tasks/{done}/cancel"))),
            // Fixed, was a bug: 400 text/plain "Invalid URL: Invalid UTF-8 in `id`": no page, no fragment.
            hx(post(ANY_4XX, "/tasks/%FF/cancel")),
        ]);
    }
    rows.extend([
        // GET /tasks/{id}.
        get(404, "/tasks/nope"),
        get(404, "/tasks/.."),
        get(404, "/tasks/%2e%2e"),
        get(404, "/tasks/..%2f..%2fCargo.toml"),
        get(404, format!("/tasks/{long_id}")),
        get(404, format!("/tasks/{unknown}")),
        get(404, format!("/tasks/{id}%00")),
        get(404, "/tasks/%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        // Fixed, was a bug: 400 text/plain "Invalid URL: Invalid UTF-8 in `id`", not a page.
        get(ANY_4XX, "/tasks/%FF"),
        get(404, "/../Cargo.toml"),
        get(404, "/%2e%2e/Cargo.toml"),
        // Wrong methods on browser routes.
        get(405, &feedback),
        get(405, format!("/tasks/{id}/cancel")),
        req(405, "DELETE", format!("/tasks/{id}")),
        req(405, "PUT", "/tasks").form("input=hello"),
        req(405, "POST", "/").form("input=hello"),
        // The home page's filter, search and page.
        get(422, "/?status=bogus"),
        get(422, "/?page=0"),
        get(422, "/?page=%3Cscript%3E"),
        get(422, format!("/?q={}", a_times(2 * KIB))),
        get(404, "/?page=99999999999999999999"),
        get(200, "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        get(200, "/?q=%00%FF&status=failed"),
        get(ANY_4XX, "/?q=a&q=b"),
        req(405, "POST", format!("/tasks/{id}")).form("decision=approved&attempt=1"),
    ]);
    rows
}

/// `GET /api/events?task=`, `GET /stream?task=`, and `Last-Event-ID` values that are not event
/// ids.
fn stream_rows(t: &Targets) -> Vec<Row> {
    let id = &t.review;
    let unknown = &t.unknown;
    let long_id = a_times(8 * KIB);
    let mut rows = Vec::new();
    for base in ["/api/events", "/stream"] {
        rows.extend([
            // Ids that are not UUIDs, and one no task has.
            // Fixed, was a bug (the nine 404 rows, on /stream only): 404 text/plain "There is no task with
            // that id…" (`html_events` answers `(status, message)`), not an HTML page.
            get(404, format!("{base}?task=nope")),
            get(404, format!("{base}?task=..")),
            get(404, format!("{base}?task=%2e%2e")),
            get(404, format!("{base}?task=..%2F..%2FCargo.toml")),
            get(404, format!("{base}?task={long_id}")),
            get(404, format!("{base}?task={unknown}")),
            get(404, format!("{base}?task={id}%00")),
            get(404, format!("{base}?task=%FF")),
            get(
                404,
                format!("{base}?task=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
            ),
            // Two scopes: which 4xx is a judgement call.
            // Fixed, was a bug (both bases): 400 text/plain "Failed to deserialize query string: duplicate
            // field `task`" (axum's Query rejection): not JSON on /api/events, not a page on
            // /stream.
            get(ANY_4XX, format!("{base}?task={id}&task={unknown}")),
            req(405, "POST", base.to_owned()).json("{}"),
            // Last-Event-ID values that are not ids: the stream starts from the current state.
            get(STREAM, base).last_event_id("abc"),
            get(STREAM, base).last_event_id("-1"),
            get(STREAM, base).last_event_id("99999999999999999999"),
            get(STREAM, base).last_event_id("1 2"),
            get(STREAM, base).last_event_id("1.5"),
            get(STREAM, base).last_event_id(""),
            get(STREAM, base).last_event_id(b"\xff\xfe".to_vec()),
            get(STREAM, base).last_event_id(a_times(4 * KIB)),
            // Ids never issued: far in the future, the largest u64 (a resync, not a wrap).
            get(STREAM, base).last_event_id("999999"),
            get(STREAM, base).last_event_id("18446744073709551615"),
            get(STREAM, base).last_event_id("0"),
            get(STREAM, format!("{base}?task={id}")).last_event_id("-1"),
            get(STREAM, format!("{base}?task={id}")).last_event_id("18446744073709551615"),
            get(STREAM, format!("{base}?task={id}")).last_event_id("1 2"),
            get(STREAM, format!("{base}?task=")).last_event_id("abc"),
        ]);
    }
    // The home page's stream: bad fields are 422; it starts where it is told, or resyncs.
    rows.extend([
        get(422, "/stream?view=nope"),
        get(422, "/stream?view=inbox&page=0"),
        get(422, "/stream?view=inbox&since=-1"),
        get(422, "/stream?view=inbox&since=%3Cscript%3E"),
        get(422, format!("/stream?view=inbox&q={}", a_times(2 * KIB))),
        get(422, format!("/stream?view=inbox&task={id}")),
        get(STREAM, "/stream?view=inbox&since=0"),
        get(STREAM, "/stream?view=inbox&since=18446744073709551615"),
        get(STREAM, "/stream?view=inbox&q=%3Cscript%3E").last_event_id("0"),
        get(STREAM, "/stream?view=inbox").last_event_id("999999"),
    ]);
    rows
}

/// `GET /assets/...`: traversal and lookalikes. Nothing outside the embedded files is served.
fn asset_rows() -> Vec<Row> {
    vec![
        get(200, "/assets/app.css"),
        // Fixed, was a bug (the rows below): 404 text/plain "no such asset" (400 text/plain
        // "Invalid URL: Invalid UTF-8 in `path`" for %FF), not the error page the contract asks
        // of browser routes. Nothing outside the embedded files is served: no row leaks.
        get(404, "/assets/../Cargo.toml"),     // Fixed, was a bug
        get(404, "/assets/%2e%2e/Cargo.toml"), // Fixed, was a bug
        get(404, "/assets/%2E%2E/Cargo.toml"), // Fixed, was a bug
        get(404, "/assets/..%2fCargo.toml"),   // Fixed, was a bug
        get(404, "/assets/..%2FCargo.toml"),   // Fixed, was a bug
        get(404, "/assets/..%5cCargo.toml"),   // Fixed, was a bug
        get(404, "/assets/vendor/../../src/main.rs"), // Fixed, was a bug
        get(404, "/assets/vendor/%2e%2e/%2e%2e/src/main.rs"), // Fixed, was a bug
        get(404, "/assets/%2e%2e%2f%2e%2e%2fsrc%2fmain.rs"), // Fixed, was a bug
        get(404, "/assets//etc/passwd"),       // Fixed, was a bug
        get(404, "/assets/%2Fetc%2Fpasswd"),   // Fixed, was a bug
        get(404, "/assets/app.css%00"),        // Fixed, was a bug
        get(404, "/assets/app.css%00.js"),     // Fixed, was a bug
        get(404, "/assets/APP.CSS"),           // Fixed, was a bug
        get(404, "/assets/app.css/"),          // Fixed, was a bug
        get(404, "/assets/vendor/"),           // Fixed, was a bug
        get(404, "/assets/"),
        get(404, format!("/assets/{}", a_times(8 * KIB))), // Fixed, was a bug
        // Not UTF-8 once percent-decoded. 4xx: 400 or 404.
        get(ANY_4XX, "/assets/%FF"), // Fixed, was a bug
        req(405, "POST", "/assets/app.css").body("x"),
        req(405, "DELETE", "/assets/app.css"),
    ]
}

/// Decisions on a task whose attempt is still being processed.
fn running_rows(running: &str) -> Vec<Row> {
    let api = format!("/api/tasks/{running}/feedback");
    let form = format!("/tasks/{running}/feedback");
    vec![
        post(409, &api).json(r#"{"decision": "approved"}"#),
        post(409, &api).json(r#"{"decision": "approved", "attempt": 1}"#),
        post(409, &api).json(r#"{"decision": "rejected", "attempt": 1, "comment": "x"}"#),
        post(409, &api).json(r#"{"decision": "rejected_final", "attempt": 1}"#),
        post(422, &api).json(r#"{"decision": "approved", "attempt": 0}"#),
        post(400, &api).json("{"),
        post(409, &form).form("decision=approved&attempt=1"),
        post(409, &form)
            .form("decision=rejected&attempt=1&comment=x")
            .htmx(),
        post(409, &form).form("decision=rejected_final").htmx(),
        post(422, &form).form("decision=maybe&attempt=1").htmx(),
    ]
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A server with a task waiting for review at attempt 1 and a cancelled task.
async fn setup() -> (TestApp, Targets) {
    let app = spawn_app().await;
    let cancelled = app.submit("to be cancelled", 3).await;
    let response = app.cancel_json(&cancelled.id).await;
    assert_eq!(response.status(), StatusCode::OK, "the cancel is accepted");
    app.wait_for_status(&cancelled.id, TaskStatus::Cancelled)
        .await;
    let review = app.submit_for_review("hostile target", 3).await;
    assert_eq!(review.status, TaskStatus::WaitingForReview);
    assert_eq!(review.attempt, 1);
    let targets = Targets {
        review: review.id,
        cancelled: cancelled.id,
        unknown: unknown_id(),
    };
    (app, targets)
}

#[tokio::test]
async fn hostile_json_api_requests_are_refused_clearly_and_change_nothing() {
    let (app, targets) = setup().await;
    run_table(&app, "JSON API", json_api_rows(&targets)).await;
}

#[tokio::test]
async fn hostile_form_posts_and_pages_are_refused_clearly_and_change_nothing() {
    let (app, targets) = setup().await;
    run_table(&app, "browser routes", browser_rows(&targets)).await;
}

#[tokio::test]
async fn hostile_stream_requests_are_refused_or_start_cleanly() {
    let (app, targets) = setup().await;
    run_table(&app, "event streams", stream_rows(&targets)).await;
}

#[tokio::test]
async fn asset_paths_cannot_leave_the_embedded_files() {
    let (app, _targets) = setup().await;
    run_table(&app, "assets", asset_rows()).await;
}

#[tokio::test]
async fn decisions_on_a_running_task_are_conflicts_and_change_nothing() {
    let app = spawn_app_with(slow_config()).await;
    let task = app.submit("still running", 3).await;
    app.wait_for_status(&task.id, TaskStatus::Running).await;
    run_table(&app, "running task", running_rows(&task.id)).await;
}

/// Form bytes that are not UTF-8 are decoded as the URL standard says (each bad sequence becomes
/// U+FFFD): the server neither fails nor stores bytes that are not text.
#[tokio::test]
async fn a_form_input_with_invalid_utf8_is_decoded_lossily_not_failed() {
    let app = spawn_app().await;
    let row = post(303, "/tasks").form(bytes("input=ab", b"\xff", "cd%FE"));
    let answer = within("a raw request", send(&app, &row.request()))
        .await
        .expect("an answer");
    assert!(
        answer.status < 500,
        "a 5xx for invalid UTF-8: {}",
        answer.text()
    );
    if answer.status == 303 {
        let ids: Vec<String> = app.listed_ids("").await;
        let task = app.get_task(&ids[0]).await;
        assert_eq!(task.input, "ab\u{FFFD}cd\u{FFFD}");
    } else {
        assert_eq!(answer.status, 400, "{}", answer.text());
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

async fn snapshot(app: &TestApp) -> Value {
    let response = app.list_tasks("").await;
    assert_eq!(response.status(), StatusCode::OK, "GET /api/tasks");
    json_body(response).await
}

/// Sends every row, checks (a) to (d), and fails once at the end with every failing row.
async fn run_table(app: &TestApp, table: &str, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for row in &rows {
        let before = snapshot(app).await;
        let mut problems = check_row(app, row).await;
        let after = snapshot(app).await;
        if before != after {
            problems.push(format!(
                "(d) state changed:\n      before {}\n      after  {}",
                shorten(&before.to_string(), 2000),
                shorten(&after.to_string(), 2000)
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "hostile.rs:{} {} {} (body {} bytes{}):\n    {}",
                row.line,
                row.method,
                row.shown_path(),
                row.body.len(),
                if row.is_htmx() { ", htmx" } else { "" },
                problems.join("\n    ")
            ));
        }
    }
    eprintln!(
        "{table}: {} rows, {} passed, {} failed",
        rows.len(),
        rows.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{table}: {} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The contract's error code for a status.
fn code_for(status: u16) -> &'static str {
    match status {
        400 => "malformed_body",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "too_large",
        422 => "invalid_field",
        _ => "?",
    }
}

/// Checks one row; returns what is wrong with the answer.
async fn check_row(app: &TestApp, row: &Row) -> Vec<String> {
    let mut problems = Vec::new();
    let mut conn = match tokio::time::timeout(WAIT, open(app, &row.request())).await {
        Err(_) => return vec![format!("(b) no answer within {WAIT:?}")],
        Ok(Err(error)) => return vec![format!("(b) no answer: {error}")],
        Ok(Ok(conn)) => conn,
    };
    let status = conn.status;
    if status >= 500 {
        problems.push(format!("(b) answered {status}, a server error"));
    }
    match row.expect {
        Expect::Status(expected) if status != expected => {
            problems.push(format!("(a) status {status}, expected {expected}"));
        }
        Expect::Any4xx if !(400..500).contains(&status) => {
            problems.push(format!("(a) status {status}, expected a 4xx"));
        }
        Expect::Stream if status != 200 => {
            problems.push(format!("(a) status {status}, expected 200 and a stream"));
        }
        _ => {}
    }

    if row.expect == Expect::Stream && status == 200 {
        if conn.content_type() != "text/event-stream" {
            problems.push(format!(
                "(a) content type {:?}, expected text/event-stream",
                conn.content_type()
            ));
        }
        let mut parser = SseParser::default();
        match tokio::time::timeout(WAIT, conn.next_event(&mut parser)).await {
            Err(_) => problems.push(format!("(b) no first event within {WAIT:?}")),
            Ok(Err(error)) => problems.push(format!("(b) the stream broke: {error}")),
            Ok(Ok(None)) => problems.push("(b) the stream ended before its first event".into()),
            Ok(Ok(Some(event))) => {
                if let Err(wrong) = event.well_formed(&["status", "resync"]) {
                    problems.push(format!("(a) first event: {wrong}"));
                }
            }
        }
        return problems;
    }

    let answer = match tokio::time::timeout(WAIT, conn.into_answer()).await {
        Err(_) => {
            problems.push(format!("(b) the body did not end within {WAIT:?}"));
            return problems;
        }
        Ok(Err(error)) => {
            problems.push(format!("(b) the body broke off: {error}"));
            return problems;
        }
        Ok(Ok(answer)) => answer,
    };
    let text = answer.text();
    for leaked in ["[package]", "fn main(", "#[tokio::main]", "root:x:0:0"] {
        if text.contains(leaked) {
            problems.push(format!("a file outside the assets leaked: {leaked:?}"));
        }
    }
    if text.contains("<script>alert") {
        problems.push("the answer echoes a script unescaped".into());
    }
    if status >= 400 {
        let clear = if row.path.starts_with("/api/") || row.path == "/api" {
            json_error_is_clear(&answer, row.expect)
        } else {
            html_error_is_clear(&answer, row.is_htmx())
        };
        if let Err(why) = clear {
            problems.push(format!(
                "(c) unclear error: {why}; content type {:?}, body {:?}",
                answer.content_type,
                shorten(&text, 300)
            ));
        }
    }
    problems
}

/// `{"error": {"code", "message"}}`, with the contract's code for the status when the row names
/// one.
fn json_error_is_clear(answer: &Answer, expect: Expect) -> Result<(), String> {
    if answer.content_type != "application/json" {
        return Err("not application/json".into());
    }
    let body: Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("not JSON ({e})"))?;
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    if code.is_empty() {
        return Err("no error.code".into());
    }
    if message.trim().is_empty() {
        return Err("no error.message".into());
    }
    if let Expect::Status(status) = expect
        && status == answer.status
        && code != code_for(status)
    {
        return Err(format!("code {code:?}, expected {:?}", code_for(status)));
    }
    Ok(())
}

/// A page (or for htmx a fragment, not a page) with a `role="alert"` that says something.
fn html_error_is_clear(answer: &Answer, htmx: bool) -> Result<(), String> {
    if answer.content_type != "text/html" {
        return Err("not text/html".into());
    }
    let text = answer.text();
    let is_page = text
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("<!doctype html");
    let doc = if htmx {
        if is_page || text.contains("<html") {
            return Err("a whole page, expected a fragment for htmx".into());
        }
        Html::parse_fragment(&text)
    } else {
        if !is_page {
            return Err("not an HTML page".into());
        }
        Html::parse_document(&text)
    };
    let said = select(&doc, "[role=alert]")
        .iter()
        .any(|alert| !alert.text().collect::<String>().trim().is_empty());
    if said {
        Ok(())
    } else {
        Err("no role=\"alert\" element with a message".into())
    }
}

// ---------------------------------------------------------------------------------------------
// Text built to break out of SSE framing and out of HTML: it changes state, so it is not a row.

const INPUT: &str = "<script>alert(1)</script>\r\nid: 666\nevent: evil\ndata: x\r\n\r\nretry: 1\n\
                     :comment\rid: 667\r\revent: evil\n\nplain end";
const COMMENT: &str = "<script>alert(2)</script>\r\n\r\nid: 999\nevent: evil\ndata: {\"seq\": 999}";
const EDIT: &str = "edited <script>alert(3)</script>\r\nevent: evil\n\nid: 1000\n";

fn escaped(n: u8) -> String {
    format!("&lt;script&gt;alert({n})&lt;/script&gt;")
}

/// An open event stream, checked event by event.
struct Watched {
    path: String,
    json: bool,
    conn: Conn,
    parser: SseParser,
    last_id: u64,
    events: Vec<RawEvent>,
}

impl Watched {
    async fn open(app: &TestApp, path: String, last_event_id: Option<&str>) -> Self {
        let mut row = get(STREAM, path.clone());
        if let Some(id) = last_event_id {
            row = row.last_event_id(id);
        }
        let conn = within("a stream", open(app, &row.request()))
            .await
            .expect("the stream opens");
        assert_eq!(conn.status, 200, "GET {path}");
        assert_eq!(conn.content_type(), "text/event-stream", "GET {path}");
        Self {
            json: path.starts_with("/api/"),
            path,
            conn,
            parser: SseParser::default(),
            last_id: 0,
            events: Vec::new(),
        }
    }

    /// Reads events, checking each, until one has an id of at least `seq`.
    async fn read_through(&mut self, seq: u64) {
        while self.last_id < seq {
            let what = format!("an event on {}", self.path);
            let event = within(&what, self.conn.next_event(&mut self.parser))
                .await
                .expect("the stream reads")
                .unwrap_or_else(|| panic!("{} ended", self.path));
            self.check(&event);
            self.events.push(event);
        }
    }

    fn check(&mut self, event: &RawEvent) {
        let path = &self.path;
        let id = event
            .well_formed(&["status", "progress", "resync"])
            .unwrap_or_else(|wrong| panic!("{path}: a forged or broken event: {wrong}"));
        assert!(
            id > self.last_id || self.last_id == 0,
            "{path}: ids must grow: {id} after {}",
            self.last_id
        );
        self.last_id = id;
        let data = event.data();
        if self.json {
            let value: Value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("{path}: data is not one JSON value ({e}): {data:?}"));
            assert_eq!(
                value["seq"], id,
                "{path}: the id is the event's seq: {data}"
            );
        } else {
            assert!(
                !data.contains("<script>alert"),
                "{path}: an unescaped script in a fragment: {data}"
            );
        }
    }

    /// The JSON data of every status event for `task`.
    fn statuses_of(&self, task: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.names == ["status"])
            .map(|e| serde_json::from_str::<Value>(&e.data()).expect("JSON data"))
            .filter(|v| v["task_id"] == task)
            .collect()
    }

    fn saw(&self, text: &str) -> bool {
        self.events.iter().any(|e| e.data().contains(text))
    }
}

/// Follows `/api/events?task=` until a status event matches; returns its id.
async fn status_seq(stream: &mut Watched, task: &str, status: &str, attempt: u32) -> u64 {
    loop {
        let target = stream.last_id + 1;
        stream.read_through(target).await;
        let event = stream.events.last().expect("an event");
        if event.names != ["status"] {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data()).expect("JSON data");
        if data["task_id"] == task && data["status"] == status && data["attempt"] == attempt {
            return stream.last_id;
        }
    }
}

async fn page_text(app: &TestApp, path: &str) -> String {
    let (status, body) = app.get_page(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}");
    body
}

fn assert_no_script(what: &str, html: &str) {
    assert!(
        !html.contains("<script>alert"),
        "{what} holds an unescaped script:\n{html}"
    );
}

#[tokio::test]
async fn text_that_imitates_sse_fields_and_html_is_escaped_everywhere_and_round_trips() {
    // A short processing delay, so progress events (which carry partial output) are sent too.
    let app = spawn_app_with(Config {
        process_delay_ms: 100,
        ..test_config()
    })
    .await;
    let mut all_json = Watched::open(&app, "/api/events".into(), None).await;
    let mut all_html = Watched::open(&app, "/stream".into(), None).await;

    // Submit: the answer, the task and the list give the input back exactly.
    let response = app
        .submit_json(&json!({ "input": INPUT, "max_attempts": 3 }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = json_body(response).await;
    assert_eq!(created["input"], INPUT, "the submit answer round-trips");
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(app.get_task(&id).await.input, INPUT);
    let listed: Value = json_body(app.list_tasks("").await).await;
    assert_eq!(listed["tasks"][0]["input"], INPUT, "the list round-trips");

    // Every stream, from the beginning of this task's history.
    let mut one_json = Watched::open(&app, format!("/api/events?task={id}"), Some("0")).await;
    let mut one_html = Watched::open(&app, format!("/stream?task={id}"), Some("0")).await;
    let mut streams = [&mut all_json, &mut all_html, &mut one_html];

    let review_1 = status_seq(&mut one_json, &id, "waiting_for_review", 1).await;
    for stream in streams.iter_mut() {
        stream.read_through(review_1).await;
    }
    for (what, page) in [
        (
            "the task page",
            page_text(&app, &format!("/tasks/{id}")).await,
        ),
        ("the home page", page_text(&app, "/").await),
    ] {
        assert_no_script(what, &page);
        assert!(page.contains(&escaped(1)), "{what} shows the input escaped");
    }

    // Request changes with a comment of the same kind.
    let task = app
        .decide(
            &id,
            json!({ "decision": "rejected", "attempt": 1, "comment": COMMENT }),
        )
        .await;
    assert_eq!(task.attempts[0].comment.as_deref(), Some(COMMENT));
    let review_2 = status_seq(&mut one_json, &id, "waiting_for_review", 2).await;
    for stream in streams.iter_mut() {
        stream.read_through(review_2).await;
    }
    let task = app.get_task(&id).await;
    assert_eq!(task.attempts[0].comment.as_deref(), Some(COMMENT));
    let page = page_text(&app, &format!("/tasks/{id}")).await;
    assert_no_script("the task page after a rejection", &page);
    assert!(page.contains(&escaped(2)), "the comment is shown escaped");

    // Approve with an edit of the same kind.
    let response = app
        .feedback_json(
            &id,
            &json!({ "decision": "approved", "attempt": 2, "output": EDIT }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let approved: Value = json_body(response).await;
    assert_eq!(approved["final_result"], EDIT, "the edit round-trips");
    let completed = status_seq(&mut one_json, &id, "completed", 2).await;
    for stream in streams.iter_mut() {
        stream.read_through(completed).await;
    }
    let task: Value = json_body(app.get(&format!("/api/tasks/{id}")).await).await;
    assert_eq!(task["input"], INPUT);
    assert_eq!(task["final_result"], EDIT);
    assert_eq!(task["attempts"][0]["comment"], COMMENT);
    assert_eq!(task["attempts"][1]["edited_output"], EDIT);

    let page = page_text(&app, &format!("/tasks/{id}")).await;
    assert_no_script("the completed task page", &page);
    for n in [1, 2, 3] {
        assert!(page.contains(&escaped(n)), "script {n} is shown escaped");
    }
    let home = page_text(&app, "/").await;
    assert_no_script("the home page", &home);
    assert!(home.contains(&escaped(1)));

    // The streams: no forged event anywhere (checked as they were read), the JSON events carry
    // the text exactly, the fragments carry it escaped.
    let last = all_json.statuses_of(&id).pop().expect("status events");
    assert_eq!(last["status"], "completed");
    assert_eq!(
        last["final_result"], EDIT,
        "the JSON event round-trips the edit"
    );
    let replayed = one_json.statuses_of(&id);
    assert_eq!(
        replayed.last().expect("status events")["final_result"],
        EDIT
    );
    assert!(
        replayed
            .iter()
            .any(|e| e["output"].as_str().is_some_and(|o| o.contains(COMMENT))),
        "attempt 2's output quotes the comment exactly in the JSON events"
    );
    assert!(
        one_json.events.iter().any(|e| e.names == ["progress"]),
        "progress events were checked too"
    );
    assert!(all_html.saw(&escaped(1)), "/stream shows the input escaped");
    assert!(
        one_html.saw(&escaped(1)),
        "/stream?task= shows the input escaped"
    );
    assert!(
        one_html.saw(&escaped(2)),
        "/stream?task= shows the comment escaped"
    );
    assert!(
        one_html.saw(&escaped(3)),
        "/stream?task= shows the edit escaped"
    );
    for stream in [&all_json, &all_html, &one_json, &one_html] {
        assert!(
            stream.events.iter().all(|e| e.names != ["evil"]
                && !e
                    .ids
                    .iter()
                    .any(|i| ["666", "667", "999", "1000"].contains(&i.as_str()))),
            "{}: a forged event",
            stream.path
        );
    }
}

/// The checker itself: text that escaped the server's framing would show as extra fields.
#[test]
fn the_sse_checker_sees_forged_fields_whatever_the_line_ending() {
    let mut parser = SseParser::default();
    parser.feed(b"event: status\nid: 7\ndata: {\"seq\": 7}\n\n: keep-alive\n\n");
    parser.feed(b"event: status\nid: 8\ndata: a\rid: 666\r\n\r");
    parser.feed(b"\nevent: progress\nid: 9\ndata: b\n\nevent: evil\ndata: c\n\n");
    parser.feed(b"event: status\nid: 10\nretry: 1\ndata: d\n\n");
    let events: Vec<RawEvent> = parser.ready.drain(..).collect();
    assert_eq!(events.len(), 5, "{events:?}");
    let allowed = ["status", "progress", "resync"];
    assert_eq!(events[0].well_formed(&allowed), Ok(7));
    assert_eq!(events[0].data(), "{\"seq\": 7}");
    assert!(events[1].well_formed(&allowed).is_err(), "a second id");
    assert_eq!(events[2].well_formed(&allowed), Ok(9));
    assert!(
        events[3].well_formed(&allowed).is_err(),
        "no id, a forged name"
    );
    assert!(events[4].well_formed(&allowed).is_err(), "a retry field");
}

/// A request that declares a body over `--max-body-bytes` and sends none is refused 413 at
/// once, in the route's shape, instead of waiting for the request timeout (30 s).
#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app().await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    for (path, json) in [("/api/tasks", true), ("/tasks", false)] {
        let mut conn = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: 999999999\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 8192];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut answer))
            .await
            .expect("answered at once, not at the request timeout")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        if json {
            assert!(answer.contains(r#""code":"too_large""#), "{answer}");
        } else {
            assert!(answer.contains("text/html"), "{answer}");
        }
    }
    assert!(app.listed_ids("").await.is_empty(), "nothing was made");
}
