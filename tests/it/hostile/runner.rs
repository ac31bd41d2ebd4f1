//! The runner: sends every row of a table and checks (a) to (d) of `hostile.rs`'s module doc for
//! each, failing once at the end with every failing row and where it is written.

use reqwest::StatusCode;
use scraper::Html;
use serde_json::Value;

use super::rows::{Expect, Row, shorten};
use crate::helpers::{
    TestApp, WAIT, json_body,
    raw::{Answer, open},
    raw_sse::SseParser,
    select,
};

async fn snapshot(app: &TestApp) -> Value {
    let response = app.list_tasks("").await;
    assert_eq!(response.status(), StatusCode::OK, "GET /api/tasks");
    json_body(response).await
}

/// Sends every row, checks (a) to (d), and fails once at the end with every failing row.
pub(super) async fn run_table(app: &TestApp, table: &str, rows: Vec<Row>) {
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
                "{}:{} {} {} (body {} bytes{}):\n    {}",
                row.file,
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
