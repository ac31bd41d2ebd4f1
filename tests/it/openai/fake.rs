//! A fake OpenAI-compatible server: `POST /v1/chat/completions` answers from a script, one
//! reply per request, streaming real SSE, and records every request it got.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};

/// What the server answers to one request.
pub enum Reply {
    /// Each string is sent as one event: `data: {it}`, or as is if it starts with `:` (a
    /// comment). Nothing is added: a stream that should end well lists `[DONE]`.
    Events(Vec<String>),
    /// These events, then the connection is cut mid-body once `cut` is notified.
    Cut(Vec<String>, Arc<Notify>),
    /// A status and a body.
    Status(StatusCode, String),
    /// One event, then nothing until the client goes away; `gone` is notified when it does.
    Stall(String, Arc<Notify>),
}

/// The reply for a model that streams these pieces, as OpenAI does: a chunk naming the role,
/// one per piece, one with `finish_reason`, then `[DONE]`.
pub fn tokens(pieces: &[&str]) -> Reply {
    let mut events = vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})];
    events.extend(pieces.iter().map(|piece| chunk(piece)));
    events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    let mut events: Vec<String> = events.iter().map(Value::to_string).collect();
    events.push("[DONE]".into());
    Reply::Events(events)
}

/// One streamed chunk adding `content`.
pub fn chunk(content: &str) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}]})
}

/// A request the server got.
#[derive(Clone, Debug)]
pub struct Seen {
    pub authorization: Option<String>,
    pub body: Value,
}

impl Seen {
    /// The content of the message with this role.
    pub fn message(&self, role: &str) -> String {
        let messages = self.body["messages"].as_array().expect("a messages list");
        let message = messages.iter().find(|m| m["role"] == role);
        let content = message.unwrap_or_else(|| panic!("a {role} message in {}", self.body));
        content["content"]
            .as_str()
            .expect("text content")
            .to_owned()
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

pub struct FakeLlm {
    /// What `--llm-base-url` should be.
    pub base_url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeLlm {
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.script.lock().unwrap().extend(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the fake serves");
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            server,
        }
    }

    /// The requests so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn complete(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().expect("an ASCII header").to_owned());
    let body = serde_json::from_slice(&body).expect("the request body is JSON");
    shared.seen.lock().unwrap().push(Seen {
        authorization,
        body,
    });
    let reply = shared.script.lock().unwrap().pop_front();
    match reply {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted").into_response(),
        Some(Reply::Status(status, body)) => (status, body).into_response(),
        Some(Reply::Events(events)) => sse(stream::iter(frames(&events)).boxed()),
        Some(Reply::Cut(events, cut)) => {
            let cut = stream::once(async move {
                cut.notified().await;
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"))
            });
            sse(stream::iter(frames(&events)).chain(cut).boxed())
        }
        Some(Reply::Stall(event, gone)) => {
            let guard = NotifyOnDrop(gone);
            let hang = stream::pending().map(move |frame| {
                let _still_here = &guard;
                frame
            });
            sse(stream::iter(frames(&[event])).chain(hang).boxed())
        }
    }
}

type Frames = futures_util::stream::BoxStream<'static, Result<Bytes, io::Error>>;

fn frames(events: &[String]) -> Vec<Result<Bytes, io::Error>> {
    events
        .iter()
        .map(|event| match event.starts_with(':') {
            true => Ok(Bytes::from(format!("{event}\n\n"))),
            false => Ok(Bytes::from(format!("data: {event}\n\n"))),
        })
        .collect()
}

fn sse(frames: Frames) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/event-stream")];
    (headers, Body::from_stream(frames)).into_response()
}

/// Tells the test the response body was dropped: the client went away.
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}
