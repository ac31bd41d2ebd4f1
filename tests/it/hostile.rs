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
//!
//! The rows and their vocabulary are in `hostile/`: `rows.rs` (what a row is and how one is
//! written), `api_rows.rs`, `browser_rows.rs` and `stream_rows.rs` (the tables), `runner.rs`
//! (sending a table and checking each answer) and `injection.rs` (what the injection test reads
//! streams and pages with). This file holds the tests.

mod api_rows;
mod browser_rows;
mod injection;
mod rows;
mod runner;
mod stream_rows;

use hitl::{config::Config, task::TaskStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use api_rows::{json_api_rows, outside_rows, running_rows};
use browser_rows::{asset_rows, browser_rows};
use injection::{Watched, assert_no_script, page_text, status_seq};
use rows::{Targets, bytes, post};
use runner::run_table;
use stream_rows::stream_rows;

use crate::helpers::{
    TestApp, json_body,
    raw::send,
    raw_sse::{RawEvent, SseParser},
    slow_config, spawn_app, spawn_app_with, test_config, unknown_id, within,
};

// ---------------------------------------------------------------------------------------------
// The tables: one test each.

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
    let outside = app
        .submit_json(&serde_json::json!({ "input": "outside target", "output": "made outside" }))
        .await;
    assert_eq!(outside.status(), StatusCode::CREATED);
    let outside: crate::helpers::Task = json_body(outside).await;
    let targets = Targets {
        review: review.id,
        cancelled: cancelled.id,
        unknown: unknown_id(),
        outside: outside.id,
    };
    (app, targets)
}

#[tokio::test]
async fn hostile_json_api_requests_are_refused_clearly_and_change_nothing() {
    let (app, targets) = setup().await;
    run_table(&app, "JSON API", json_api_rows(&targets)).await;
}

#[tokio::test]
async fn hostile_outside_work_requests_are_refused_clearly_and_change_nothing() {
    let (app, targets) = setup().await;
    run_table(&app, "outside work", outside_rows(&targets)).await;
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
// Text built to break out of SSE framing and out of HTML: it changes state, so it is not a row.

const INPUT: &str = "<script>alert(1)</script>\r\nid: 666\nevent: evil\ndata: x\r\n\r\nretry: 1\n\
                     :comment\rid: 667\r\revent: evil\n\nplain end";
const COMMENT: &str = "<script>alert(2)</script>\r\n\r\nid: 999\nevent: evil\ndata: {\"seq\": 999}";
const EDIT: &str = "edited <script>alert(3)</script>\r\nevent: evil\n\nid: 1000\n";

fn escaped(n: u8) -> String {
    format!("&lt;script&gt;alert({n})&lt;/script&gt;")
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
