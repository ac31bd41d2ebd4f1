//! The hostile rows for the JSON API: `POST /api/tasks`, `GET /api/tasks`, `GET /api/tasks/{id}`,
//! its feedback, cancel, deadline and history routes; and the decisions sent, over the API and
//! the forms, on a task whose attempt is still being processed.

use serde_json::json;

use super::rows::{
    ANY_4XX, KIB, OVER_BODY, OVER_TEXT, Row, Targets, a_times, bytes, deeply_nested, get, post, req,
};

/// `POST /api/tasks`, `GET /api/tasks`, `GET /api/tasks/{id}`, `POST /api/tasks/{id}/feedback`,
/// `POST /api/tasks/{id}/cancel`.
pub(super) fn json_api_rows(t: &Targets) -> Vec<Row> {
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

/// The routes of work done outside hitl: attempts handed in, claims, retries and waits.
pub(super) fn outside_rows(t: &Targets) -> Vec<Row> {
    let (outside, review, done, unknown) = (&t.outside, &t.review, &t.cancelled, &t.unknown);
    let attempts = format!("/api/tasks/{outside}/attempts");
    let forged = format!("{}.1.{}", unknown.replace('-', ""), "0".repeat(32));
    let mut rows = vec![
        // Submissions of outside tasks.
        post(422, "/api/tasks").json(r#"{"input": "x", "callback_urll": "http://x"}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "metadata": "text"}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "metadata": [1]}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "processor": "simulated"}"#),
        post(422, "/api/tasks").json(r#"{"input": "x", "processor": 1}"#),
        post(422, "/api/tasks").json(r#"{"output": ""}"#),
        post(422, "/api/tasks").json(r#"{"output": 5}"#),
        post(413, "/api/tasks").json(json!({ "output": a_times(OVER_TEXT) }).to_string()),
        post(422, "/api/tasks")
            .json(json!({ "input": "x", "metadata": { "a": a_times(17 * KIB) } }).to_string()),
        // Attempts: malformed, wrong fields, too large, wrong state, unknown task or claim.
        post(400, &attempts).json("{"),
        post(422, &attempts).json("{}"),
        post(422, &attempts).json(r#"{"attempt": 1}"#),
        post(422, &attempts).json(r#"{"attempt": "1", "output": "x"}"#),
        post(422, &attempts).json(r#"{"attempt": 0, "output": "x"}"#),
        post(422, &attempts).json(r#"{"attempt": -1, "output": "x"}"#),
        post(422, &attempts).json(r#"{"attempt": 1, "output": " "}"#),
        post(422, &attempts).json(r#"{"attempt": 1, "output": "x", "colour": 1}"#),
        post(422, &attempts).json(r#"{"attempt": 1, "output": "x", "claim": ""}"#),
        post(413, &attempts)
            .json(json!({ "attempt": 2, "output": a_times(OVER_TEXT) }).to_string()),
        post(409, &attempts).json(r#"{"attempt": 1, "output": "x"}"#),
        post(409, &attempts).json(r#"{"attempt": 2, "output": "x"}"#),
        post(409, &attempts).json(r#"{"attempt": 1, "output": "x", "claim": "forged"}"#),
        post(409, &attempts)
            .json(json!({ "attempt": 1, "output": "x", "claim": forged }).to_string()),
        post(409, format!("/api/tasks/{review}/attempts")).json(r#"{"attempt": 1, "output": "x"}"#),
        post(409, format!("/api/tasks/{done}/attempts")).json(r#"{"attempt": 1, "output": "x"}"#),
        post(404, format!("/api/tasks/{unknown}/attempts"))
            .json(r#"{"attempt": 1, "output": "x"}"#),
        post(404, "/api/tasks/not-an-id/attempts").json(r#"{"attempt": 1, "output": "x"}"#),
        // Claims: ranges and fields (a valid claim finds nothing to take: 204).
        post(204, "/api/claims").json(r#"{"wait_secs": 0}"#),
        post(400, "/api/claims").json("{"),
        post(422, "/api/claims").json(r#"{"wait_secs": -1}"#),
        post(422, "/api/claims").json(r#"{"wait_secs": 121}"#),
        post(422, "/api/claims").json(r#"{"wait_secs": "1"}"#),
        post(422, "/api/claims").json(r#"{"wait_secs": 1e30}"#),
        post(422, "/api/claims").json(r#"{"wait_secs": 0, "lease_secs": 4}"#),
        post(422, "/api/claims").json(r#"{"wait_secs": 0, "lease_secs": 3601}"#),
        post(422, "/api/claims").json(r#"{"wait_secs": 0, "worker": "me"}"#),
        post(422, "/api/claims").json("[]"),
        post(422, "/api/claims").json("[0, null]"),
        post(422, &attempts).json(r#"[1, "x", null]"#),
        // Retries of tasks that did not fail in processing.
        post(409, format!("/api/tasks/{review}/retry")),
        post(409, format!("/api/tasks/{done}/retry")),
        post(409, format!("/api/tasks/{outside}/retry")),
        post(404, format!("/api/tasks/{unknown}/retry")),
        // Waits: a query that cannot be read, values out of range, unknown statuses.
        get(400, format!("/api/tasks/{review}?wait=soon")),
        get(400, format!("/api/tasks/{review}?wait=1e3")),
        get(422, format!("/api/tasks/{review}?wait=-1")),
        get(422, format!("/api/tasks/{review}?wait=121")),
        get(
            422,
            format!("/api/tasks/{review}?wait=99999999999999999999"),
        ),
        get(422, format!("/api/tasks/{review}?wait=0&while=asleep")),
        get(200, format!("/api/tasks/{review}?wait=0&while=")),
        get(200, format!("/api/tasks/{review}?wait=0")),
        get(404, format!("/api/tasks/{unknown}?wait=0")),
    ];
    // Each claim route: an unknown or forged token, bad bodies.
    for route in ["renew", "progress", "fail"] {
        let body = match route {
            "progress" => r#"{"text": "x"}"#,
            "fail" => r#"{"error": "x", "retry": true}"#,
            _ => "{}",
        };
        rows.push(post(404, format!("/api/claims/forged/{route}")).json(body));
        rows.push(post(404, format!("/api/claims/{forged}/{route}")).json(body));
        rows.push(post(400, format!("/api/claims/forged/{route}")).json("{"));
        rows.push(post(422, format!("/api/claims/forged/{route}")).json(r#"{"bogus": 1}"#));
    }
    rows.push(post(422, "/api/claims/forged/progress").json("{}"));
    rows.push(post(422, "/api/claims/forged/fail").json(r#"{"error": "x", "retry": "yes"}"#));
    rows.push(post(422, "/api/claims/forged/renew").json(r#"{"lease_secs": 1}"#));
    rows
}

/// Decisions on a task whose attempt is still being processed.
pub(super) fn running_rows(running: &str) -> Vec<Row> {
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
