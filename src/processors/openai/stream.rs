//! Reading a streamed chat completion: Server-Sent Events (parsed by `eventsource-stream`)
//! whose `data:` is a JSON chunk with `choices[0].delta.content`, until `data: [DONE]`.
//!
//! Whatever the server sends, the answer is text or an error; a chunk that is not what it
//! should be (a proxy that mangles streams) is retryable, since the next try may go through.

use std::sync::Arc;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use serde_json::Value;

use super::{Server, causes, excerpt};
use crate::engine::NodeError;

/// Reads the answer to its end, reporting the text so far after every piece.
pub async fn read_completion(
    response: reqwest::Response,
    server: &Server,
    progress: &(dyn Fn(Arc<str>) + Send + Sync),
) -> Result<String, NodeError> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned();
    let mut events = response.bytes_stream().eventsource();
    let mut text = String::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| broken(e, server, &text))?;
        if event.data == "[DONE]" {
            if text.trim().is_empty() {
                return Err(NodeError::new(format!(
                    "{server}: the model {} returned an empty completion",
                    server.model
                )));
            }
            return Ok(text);
        }
        match delta(&event.data) {
            Ok(Some(piece)) if !piece.is_empty() => {
                text.push_str(&piece);
                progress(text.as_str().into());
            }
            Ok(_) => {}
            Err(problem) => {
                return Err(NodeError::new(format!(
                    "{server} sent a malformed chunk ({problem}): {:?}; a proxy in between may \
                     be mangling the stream",
                    excerpt(&event.data)
                )));
            }
        }
    }
    let hint = if content_type.starts_with("text/event-stream") {
        String::new()
    } else {
        format!(" It answered with {content_type}, not an event stream: does it support streaming?")
    };
    Err(NodeError::new(format!(
        "{server} ended its answer without `data: [DONE]`, after {} characters: the connection \
         was cut.{hint}",
        text.chars().count()
    )))
}

/// The text a chunk adds: `None` for chunks that add none (the first, naming the role; the last,
/// with `finish_reason`; usage), an error naming what is wrong otherwise.
fn delta(data: &str) -> Result<Option<String>, String> {
    let chunk: Value = serde_json::from_str(data).map_err(|_| "not JSON".to_owned())?;
    if let Some(error) = chunk.get("error") {
        let message = error.get("message").and_then(Value::as_str);
        return Err(format!(
            "it reports an error: {}",
            message.map_or_else(|| error.to_string(), str::to_owned)
        ));
    }
    let choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` list")?;
    let Some(choice) = choices.first() else {
        return Ok(None);
    };
    match choice.pointer("/delta/content") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(content)) => Ok(Some(content.clone())),
        Some(_) => Err("`choices[0].delta.content` is not text".into()),
    }
}

/// The stream broke: a cut connection, bytes that are not UTF-8, or lines that are not SSE.
fn broken(error: EventStreamError<reqwest::Error>, server: &Server, text: &str) -> NodeError {
    let after = text.chars().count();
    NodeError::new(match error {
        EventStreamError::Transport(e) => format!(
            "{server} broke off its answer after {after} characters: {}",
            causes(&e)
        ),
        EventStreamError::Utf8(_) => {
            format!("{server} sent bytes that are not UTF-8 after {after} characters")
        }
        EventStreamError::Parser(_) => {
            format!("{server} sent lines that are not Server-Sent Events after {after} characters")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::delta;

    #[test]
    fn chunks_give_their_text_or_say_what_is_wrong() {
        let content = r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#;
        assert_eq!(delta(content), Ok(Some("Hel".into())));
        let role = r#"{"choices":[{"delta":{"role":"assistant"}}]}"#;
        assert_eq!(delta(role), Ok(None));
        let finish = r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(delta(finish), Ok(None));
        let usage = r#"{"choices":[],"usage":{"total_tokens":9}}"#;
        assert_eq!(delta(usage), Ok(None));

        assert_eq!(delta("not json"), Err("not JSON".into()));
        assert_eq!(delta(r#"{"id":"x"}"#), Err("no `choices` list".into()));
        assert_eq!(delta("[1]"), Err("no `choices` list".into()));
        let number = r#"{"choices":[{"delta":{"content":7}}]}"#;
        assert!(delta(number).unwrap_err().contains("not text"));
        let error = r#"{"error":{"message":"context too long"}}"#;
        assert!(delta(error).unwrap_err().contains("context too long"));
    }
}
