//! A webhook receiver on a free port: verifies each signature (with the `standardwebhooks`
//! crate), records what came, and answers a settable status, or hangs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::Value;

use super::within;

/// Set as the answer: the receiver takes the request and never answers.
pub const HANG: u16 = 0;

/// What the receiver got: path, `webhook-id`, parsed body.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub id: Option<String>,
    pub body: Value,
}

/// A receiver on a free port that verifies each signature, records what came and answers
/// `answer` (settable).
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    /// The status code it answers ([`HANG`]: none, ever).
    pub answer: Arc<AtomicU16>,
}

#[derive(Clone)]
struct ReceiverState {
    secret: Arc<str>,
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU16>,
}

async fn receive(
    State(state): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let answer = state.answer.load(Ordering::SeqCst);
    if uri.path() != "/slack" {
        let webhook = standardwebhooks::Webhook::new(&state.secret).unwrap();
        if let Err(error) = webhook.verify(&body, &headers) {
            panic!("a delivery to {} is not signed right: {error}", uri.path());
        }
    }
    state.got.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        id: headers
            .get("webhook-id")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: serde_json::from_slice(&body).unwrap(),
    });
    if answer == HANG {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(answer).unwrap()
}

impl Receiver {
    pub async fn start(secret: &str) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(AtomicU16::new(200));
        let state = ReceiverState {
            secret: secret.into(),
            got: got.clone(),
            answer: answer.clone(),
        };
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got, answer }
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `check` holds of what came.
    pub async fn until(&self, what: &str, check: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        within(what, async {
            loop {
                let got = self.got();
                if check(&got) {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// The status events of `task` that came to `path`, in the order they came.
    pub fn statuses(&self, path: &str, task: &str) -> Vec<(u64, String)> {
        self.got()
            .iter()
            .filter(|r| r.path == path && r.body["data"]["task_id"] == task)
            .map(|r| {
                (
                    r.body["data"]["seq"].as_u64().unwrap(),
                    r.body["data"]["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}
