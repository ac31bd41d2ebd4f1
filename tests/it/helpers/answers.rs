//! What the server answers, as the tests read it: a task as the JSON API returns it, bodies,
//! the headers tests assert on, and the contract's JSON error.

use hitl::task::{Decision, TaskStatus};
use reqwest::{Response, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::within;

/// A task as the JSON API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: String,
    pub status: TaskStatus,
    pub input: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub output: Option<String>,
    pub final_result: Option<String>,
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub output: String,
    pub decision: Option<Decision>,
    pub comment: Option<String>,
    #[serde(default)]
    pub edited_output: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
}

impl Task {
    /// The decisions recorded for one attempt (the contract allows at most one).
    pub fn decisions_for(&self, attempt: u32) -> Vec<Decision> {
        self.attempts
            .iter()
            .filter(|a| a.attempt == attempt)
            .filter_map(|a| a.decision)
            .collect()
    }
}

pub async fn json_body<T: serde::de::DeserializeOwned>(response: Response) -> T {
    within("a JSON body", response.json())
        .await
        .expect("a JSON body of the expected shape")
}

pub async fn text_body(response: Response) -> String {
    within("a body", response.text())
        .await
        .expect("a text body")
}

/// The media type, without parameters.
pub fn content_type(response: &Response) -> String {
    let value = response.headers().get(header::CONTENT_TYPE);
    let value = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

pub fn location(response: &Response) -> String {
    let value = response
        .headers()
        .get(header::LOCATION)
        .expect("a Location header");
    value.to_str().expect("an ASCII Location").to_owned()
}

/// Asserts the contract's JSON error: this status and this code. Returns the message.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(content_type(&response), "application/json");
    let body: Value = json_body(response).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(!message.trim().is_empty(), "{body}");
    message.to_owned()
}

/// An id no task has.
pub fn unknown_id() -> String {
    "0192f000-0000-7000-8000-000000000000".to_owned()
}
