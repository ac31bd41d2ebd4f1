//! The hostile rows for the browser's routes: the form posts (each without and with
//! `HX-Request`), the pages, and `GET /assets/...`.

use super::rows::{
    ANY_4XX, KIB, OVER_BODY, OVER_TEXT, Row, Targets, a_times, bytes, get, post, req,
};

/// `POST /tasks`, `POST /tasks/{id}/feedback`, `POST /tasks/{id}/cancel`, `GET /tasks/{id}`,
/// each without and (for posts) with `HX-Request`.
pub(super) fn browser_rows(t: &Targets) -> Vec<Row> {
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

/// `GET /assets/...`: traversal and lookalikes. Nothing outside the embedded files is served.
pub(super) fn asset_rows() -> Vec<Row> {
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
