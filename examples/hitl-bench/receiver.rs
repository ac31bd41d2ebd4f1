//! A webhook receiver in this process (`--webhook`): the spawned hitl POSTs every status event to
//! it. It answers 200 at once and notes, for each delivery, the time from the event (`data.at`)
//! to its arrival; it counts deliveries and repeats of a `webhook-id`, and checks each signature
//! and that a task's deliveries arrive in event order.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    serve::ListenerExt,
};
use base64::Engine;
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::{net::TcpListener, task::JoinHandle};

/// What the receiver has seen, kept pure so tests can feed it deliveries.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every `webhook-id` received.
    ids: HashSet<String>,
    /// Deliveries whose `webhook-id` came before (at least once allows them; they are counted).
    pub duplicates: usize,
    /// Each task's last `data.seq`, to see its deliveries arrive in event order.
    last_seq: HashMap<String, u64>,
    /// The event time and event-to-arrival delay of each first delivery.
    delays: Vec<(OffsetDateTime, Duration)>,
    pub errors: Vec<String>,
}

impl Tally {
    /// Takes the delivery `id` with `body`, which arrived at `received`.
    pub fn take(&mut self, id: &str, body: &[u8], received: OffsetDateTime) {
        if !self.ids.insert(id.to_owned()) {
            self.duplicates += 1;
            return;
        }
        if let Err(e) = self.first(body, received) {
            self.errors.push(format!("webhook {id}: {e}"));
        }
    }

    fn first(&mut self, body: &[u8], received: OffsetDateTime) -> Result<(), String> {
        let body: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let data = &body["data"];
        let (Some(task), Some(seq), Some(at)) = (
            data["task_id"].as_str(),
            data["seq"].as_u64(),
            data["at"].as_str(),
        ) else {
            return Err(format!("no data.task_id, seq and at in {body}"));
        };
        if body["type"] != "task.status" || data["task"]["id"] != task {
            return Err(format!("not a status event of task {task}: {body}"));
        }
        let at = OffsetDateTime::parse(at, &Rfc3339).map_err(|e| format!("data.at {at:?}: {e}"))?;
        if let Some(last) = self.last_seq.insert(task.to_owned(), seq)
            && seq <= last
        {
            return Err(format!("task {task}: seq {seq} after {last}"));
        }
        let delay = Duration::try_from(received - at)
            .map_err(|_| format!("arrived {} before its event", at - received))?;
        self.delays.push((at, delay));
        Ok(())
    }

    /// Distinct deliveries received.
    pub fn received(&self) -> usize {
        self.ids.len()
    }

    /// The event-to-arrival delays of events at or after `since`.
    pub fn delays_since(&self, since: OffsetDateTime) -> Vec<Duration> {
        let after = self.delays.iter().filter(|(at, _)| *at >= since);
        after.map(|&(_, delay)| delay).collect()
    }
}

struct Shared {
    signer: standardwebhooks::Webhook,
    tally: Mutex<Tally>,
}

/// A receiver listening on a port of its own, with a fresh secret; it stops when dropped.
pub struct Receiver {
    pub url: String,
    pub secret: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Result<Self> {
        let secret = fresh_secret();
        let shared = Arc::new(Shared {
            signer: standardwebhooks::Webhook::new(&secret)?,
            tally: Mutex::default(),
        });
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("the webhook receiver stopped: {e}");
            }
        });
        Ok(Self {
            url,
            secret,
            shared,
            server,
        })
    }

    /// The flags that point a hitl at this receiver.
    pub fn server_args(&self) -> [String; 4] {
        [
            "--webhook-url".into(),
            self.url.clone(),
            "--webhook-secret".into(),
            self.secret.clone(),
        ]
    }

    pub fn tally<T>(&self, f: impl FnOnce(&Tally) -> T) -> T {
        f(&self.shared.tally.lock().unwrap())
    }

    /// Waits until `expected` distinct deliveries have arrived, at most `deadline`. Returns how
    /// long it waited, or `None` if they did not all come.
    pub async fn drain(&self, expected: usize, deadline: Duration) -> Option<Duration> {
        let started = Instant::now();
        while self.tally(Tally::received) < expected {
            if started.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(started.elapsed())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Answers 200 at once; a bad signature is noted (and answered 200 too: the tally reports it).
async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let received = OffsetDateTime::now_utc();
    let id = headers
        .get("webhook-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or("");
    let signed = shared.signer.verify(&body, &headers);
    let mut tally = shared.tally.lock().unwrap();
    match signed {
        Ok(()) => tally.take(id, &body, received),
        Err(e) => tally.errors.push(format!("webhook {id:?}: signature: {e}")),
    }
    StatusCode::OK
}

/// A new signing secret: `whsec_` and 32 random bytes in base64, as `hitl webhook-secret`.
fn fresh_secret() -> String {
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("whsec_{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "2026-12-02T10:00:00.250Z";

    fn body(task: &str, seq: u64, at: &str) -> Vec<u8> {
        let data = serde_json::json!({ "seq": seq, "task_id": task, "status": "running", "at": at,
                                       "task": { "id": task } });
        serde_json::json!({ "type": "task.status", "timestamp": at, "data": data })
            .to_string()
            .into_bytes()
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn a_delivery_gives_its_delay_from_the_event() {
        let mut tally = Tally::default();
        tally.take("msg_1", &body("t1", 1, AT), at("2026-12-02T10:00:00.257Z"));
        assert_eq!(tally.received(), 1);
        assert_eq!(tally.errors, Vec::<String>::new());
        assert_eq!(tally.delays_since(at(AT)), [Duration::from_millis(7)]);
        assert!(tally.delays_since(at("2026-12-02T10:00:01Z")).is_empty());
    }

    #[test]
    fn a_repeated_id_is_a_duplicate_not_a_new_delivery() {
        let mut tally = Tally::default();
        let late = at("2026-12-02T10:00:01Z");
        tally.take("msg_1", &body("t1", 1, AT), late);
        tally.take("msg_1", &body("t1", 1, AT), late);
        assert_eq!((tally.received(), tally.duplicates), (1, 1));
        assert_eq!(tally.delays_since(at(AT)).len(), 1);
        assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    }

    #[test]
    fn a_task_out_of_event_order_is_an_error() {
        let mut tally = Tally::default();
        let late = at("2026-12-02T10:00:01Z");
        tally.take("msg_2", &body("t1", 2, AT), late);
        tally.take("msg_3", &body("t2", 1, AT), late);
        tally.take("msg_1", &body("t1", 1, AT), late);
        assert_eq!(tally.errors, ["webhook msg_1: task t1: seq 1 after 2"]);
    }

    #[test]
    fn malformed_and_early_deliveries_are_errors() {
        let mut tally = Tally::default();
        let early = at("2026-12-02T10:00:00Z");
        tally.take("a", b"{", early);
        tally.take("b", br#"{"type": "task.status", "data": {}}"#, early);
        tally.take("c", &body("t1", 1, "yesterday"), early);
        tally.take("d", &body("t1", 1, AT), early);
        assert_eq!(tally.errors.len(), 4, "{:?}", tally.errors);
        assert!(
            tally.errors[3].contains("before its event"),
            "{:?}",
            tally.errors
        );
        assert_eq!(tally.received(), 4);
    }

    #[test]
    fn the_fresh_secret_is_one_hitl_accepts() {
        let secret = fresh_secret();
        assert!(standardwebhooks::Webhook::new(&secret).is_ok());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
    }
}
