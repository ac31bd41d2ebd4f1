//! The floor: the least server with hitl's shape, on hitl's stack, to say what HTTP and SSE
//! themselves cost on this machine (BENCHMARKS.md, "The floor").
//!
//! Same stack as `hitl::web::serve`: axum 0.8 on tokio's multi-thread runtime, `axum::serve`
//! with TCP_NODELAY on every connection, SSE with a 10 s keep-alive. Same routes and answers as
//! far as `hitl-bench` uses them:
//!
//! - `POST /api/tasks` (JSON body) answers 201 with a small task JSON and publishes `pending`,
//!   `running` and `waiting_for_review` of attempt 1: what hitl's processor, at delay 0, emits.
//! - `POST /api/tasks/{id}/feedback` answers 200 and publishes `running` and
//!   `waiting_for_review` of the next attempt (changes requested) or `completed` (approved).
//! - `GET /api/events[?task={id}]`: every event, or one task's, each with `id:` (the sequence
//!   number) and JSON data about the size of hitl's status events. Like hitl's, a stream starts
//!   with the current state of every task in scope (the generator's watchers expect it).
//! - `GET /metrics`: `hitl_sse_clients`, the streams open, so the generator can see they close.
//!
//! Nothing else: no store, no validation beyond parsing, no middleware, no logging. Every
//! publication goes through one `tokio::sync::broadcast` to every stream, which filters by task;
//! the only state besides is each task's latest event, for the connect-time snapshot.
//!
//!     cargo build --release --example floor
//!     target/release/examples/floor --addr 127.0.0.1:0    # prints `listening on http://…`

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering::Relaxed},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
    serve::ListenerExt,
};
use clap::Parser;
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use serde_json::json;
use tokio::{net::TcpListener, sync::broadcast};
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

/// hitl's keep-alive (`src/web/stream.rs`).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// An attempt's output, as long as what hitl's processor writes for the generator's tasks.
const OUTPUT: &str = "Draft 2 of 2 for: load task 1…\nSummary: 5 words and 23 characters; it begins \
    \"load task 1…\".\nRevised to address the reviewer's feedback:\n- on draft 1: more, please";

/// A timestamp as long as hitl's (they are not what is measured).
const AT: &str = "2026-11-30T00:00:00.000Z";

/// Events a stream may fall behind by before it is cut off (hitl would resync it).
const BACKLOG: usize = 4096;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
}

/// One published event: its task, its number and its data, serialised once for every stream.
struct Published {
    task: Uuid,
    seq: u64,
    data: Box<str>,
}

struct Log {
    seq: u64,
    latest: HashMap<Uuid, Arc<Published>>,
}

struct Floor {
    /// Held while an event is numbered and sent, so every stream sees ids in order, and while a
    /// stream subscribes and takes its snapshot, so it misses nothing and repeats nothing.
    log: Mutex<Log>,
    tx: broadcast::Sender<Arc<Published>>,
    streams: AtomicI64,
}

impl Floor {
    fn publish(&self, task: Uuid, events: &[(&str, u32)]) {
        let mut log = self.log.lock().unwrap();
        for &(status, attempt) in events {
            log.seq += 1;
            let data = json!({
                "seq": log.seq,
                "task_id": task,
                "status": status,
                "attempt": attempt,
                "output": matches!(status, "waiting_for_review" | "completed").then_some(OUTPUT),
                "final_result": (status == "completed").then_some(OUTPUT),
                "error": null,
                "at": AT,
            });
            let event = Arc::new(Published {
                task,
                seq: log.seq,
                data: data.to_string().into(),
            });
            log.latest.insert(task, event.clone());
            // No receiver is no error: nobody is watching.
            let _ = self.tx.send(event);
        }
    }
}

#[derive(Deserialize)]
struct Submit {
    input: String,
    max_attempts: Option<u32>,
}

async fn submit(State(floor): State<Arc<Floor>>, Json(body): Json<Submit>) -> Response {
    let id = Uuid::now_v7();
    let max_attempts = body.max_attempts.unwrap_or(3);
    let task = task_json(id, "pending", &body.input, 1, max_attempts);
    floor.publish(
        id,
        &[("pending", 1), ("running", 1), ("waiting_for_review", 1)],
    );
    (StatusCode::CREATED, Json(task)).into_response()
}

#[derive(Deserialize)]
struct Decision {
    decision: String,
    attempt: u32,
    #[allow(dead_code)]
    comment: Option<String>,
}

async fn feedback(
    State(floor): State<Arc<Floor>>,
    Path(id): Path<Uuid>,
    Json(body): Json<Decision>,
) -> Response {
    let a = body.attempt;
    let status = match body.decision.as_str() {
        "approved" => {
            floor.publish(id, &[("completed", a)]);
            "completed"
        }
        _ => {
            floor.publish(id, &[("running", a + 1), ("waiting_for_review", a + 1)]);
            "running"
        }
    };
    Json(task_json(id, status, "load task\nsecond line", a, a)).into_response()
}

/// A task's JSON, a little smaller than hitl's answer (which also lists the attempts).
fn task_json(id: Uuid, status: &str, input: &str, attempt: u32, max: u32) -> serde_json::Value {
    json!({
        "id": id, "status": status, "input": input, "attempt": attempt, "max_attempts": max,
        "output": (status != "pending").then_some(OUTPUT),
        "final_result": (status == "completed").then_some(OUTPUT), "error": null,
        "created_at": AT, "updated_at": AT,
    })
}

#[derive(Deserialize)]
struct Scope {
    task: Option<Uuid>,
}

/// Counts a stream open for as long as it lives.
struct Open(Arc<Floor>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Relaxed);
    }
}

async fn events(State(floor): State<Arc<Floor>>, Query(scope): Query<Scope>) -> Response {
    let (rx, mut snapshot) = {
        let log = floor.log.lock().unwrap();
        let snapshot: Vec<Arc<Published>> = match scope.task {
            Some(task) => match log.latest.get(&task) {
                Some(event) => vec![event.clone()],
                None => return StatusCode::NOT_FOUND.into_response(),
            },
            None => log.latest.values().cloned().collect(),
        };
        (floor.tx.subscribe(), snapshot)
    };
    snapshot.sort_by_key(|e| e.seq);
    floor.streams.fetch_add(1, Relaxed);
    let open = Open(floor);
    let live = BroadcastStream::new(rx)
        // Fallen behind by BACKLOG events: end, as a lost event would.
        .take_while(|e| std::future::ready(e.is_ok()))
        .filter_map(move |e| {
            let e = e.ok().filter(|e| scope.task.is_none_or(|t| t == e.task));
            std::future::ready(e)
        });
    let frames = stream::iter(snapshot).chain(live).map(move |e| {
        let _open = &open;
        Ok::<_, Infallible>(
            SseEvent::default()
                .id(e.seq.to_string())
                .event("status")
                .data(&*e.data),
        )
    });
    Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

async fn metrics(State(floor): State<Arc<Floor>>) -> String {
    format!("hitl_sse_clients {}\n", floor.streams.load(Relaxed))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let floor = Arc::new(Floor {
        log: Mutex::new(Log {
            seq: 0,
            latest: HashMap::new(),
        }),
        tx: broadcast::channel(BACKLOG).0,
        streams: AtomicI64::new(0),
    });
    let app = Router::new()
        .route("/api/tasks", post(submit))
        .route("/api/tasks/{id}/feedback", post(feedback))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .with_state(floor);
    let listener = TcpListener::bind(&args.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // As hitl: many small writes to clients that never write back, so no Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // SIGTERM ends the process (the default action): nothing to write before exiting.
    axum::serve(listener, app).await
}
