//! Lifecycles over HTTP, each wait on one shared `GET /api/events` stream, every event checked.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, ensure};
use dashmap::{DashMap, DashSet};
use eventsource_stream::{Event, Eventsource};
use futures_util::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{sync::watch, time::timeout};

use crate::check::{Flow, StreamCheck, TaskCheck};

/// The longest any one step may take before it counts as an error.
pub const WAIT: Duration = Duration::from_secs(30);

/// A status event's fields, parsed from its id and JSON data.
pub struct Status {
    pub task_id: String,
    pub status: String,
    pub attempt: u32,
}

/// Parses one SSE event; `None` for a progress event (whose id still counts).
pub fn parse(event: &Event) -> Result<(u64, u64, Option<Status>), String> {
    let bad = || format!("malformed event {event:?}");
    let id: u64 = event.id.parse().map_err(|_| bad())?;
    let data: Value = serde_json::from_str(&event.data).map_err(|_| bad())?;
    let seq = data["seq"].as_u64().ok_or_else(bad)?;
    match event.event.as_str() {
        "progress" => Ok((id, seq, None)),
        "status" => Ok((
            id,
            seq,
            Some(Status {
                task_id: data["task_id"].as_str().ok_or_else(bad)?.to_owned(),
                status: data["status"].as_str().ok_or_else(bad)?.to_owned(),
                attempt: data["attempt"].as_u64().ok_or_else(bad)? as u32,
            }),
        )),
        other => Err(format!("unexpected `{other}` event (id {id})")),
    }
}

/// A fault to inject into the shared stream as it is read, to show the checks catch it.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Fault {
    /// Lose one event.
    Drop,
    /// Swap one event with the next.
    Reorder,
}

/// The event (counted from 1) a fault hits: inside the warm-up lifecycles.
const FAULT_AT: u64 = 300;

/// What the shared stream has shown of one task.
struct Tracked {
    check: TaskCheck,
    /// When the decision now awaiting its event was sent.
    decided: Option<Instant>,
    /// The latest event, or the violation; lifecycles wait on it.
    latest: watch::Sender<Result<Option<(&'static str, u32)>, String>>,
}

impl Default for Tracked {
    fn default() -> Self {
        Self {
            check: TaskCheck::default(),
            decided: None,
            latest: watch::Sender::new(Ok(None)),
        }
    }
}

pub struct Load {
    pub client: reqwest::Client,
    pub base: String,
    /// Other instances of the same service: requests go to `base` and these in turn.
    pub others: Vec<String>,
    turn: std::sync::atomic::AtomicUsize,
    /// Every task the stream has shown (ours and anyone else's), checked as it goes.
    tasks: DashMap<String, Tracked>,
    /// The tasks this process submitted, and those whose lifecycle passed its checks.
    mine: DashSet<String>,
    passed: DashSet<String>,
    /// Whether ids must now grow by exactly one (see `StreamCheck`).
    contiguous: AtomicBool,
    /// Status events the stream has shown, of every task: what a webhook receiver should get.
    statuses: AtomicUsize,
    /// Decision-to-event delays of lifecycles, and problems the stream itself showed.
    pub delays: Mutex<Vec<Duration>>,
    pub stream_errors: Mutex<Vec<String>>,
    pub fault: Option<Fault>,
    /// The lifecycle each task goes through.
    pub flow: Flow,
}

impl Load {
    /// `fresh`: the server has no tasks, so ids must be contiguous from the first event.
    pub fn new(client: reqwest::Client, base: String, fresh: bool) -> Self {
        Self {
            client,
            base,
            others: Vec::new(),
            turn: Default::default(),
            tasks: DashMap::new(),
            mine: DashSet::new(),
            passed: DashSet::new(),
            contiguous: AtomicBool::new(fresh),
            statuses: AtomicUsize::new(0),
            delays: Mutex::default(),
            stream_errors: Mutex::default(),
            fault: None,
            flow: Flow::default(),
        }
    }

    /// Reads the shared stream until it fails, checking every event and handing each status to
    /// its task. Returns why it stopped.
    pub async fn follow(&self, response: reqwest::Response) -> String {
        let mut events = response.bytes_stream().eventsource();
        let (mut ids, mut n, mut held) = (StreamCheck::default(), 0, None);
        loop {
            let event = match events.next().await {
                Some(Ok(event)) => event,
                Some(Err(error)) => return format!("stream error: {error}"),
                None => return "the stream ended".into(),
            };
            n += 1;
            let batch: Vec<Event> = match (self.fault, n) {
                (Some(Fault::Drop), FAULT_AT) => continue,
                (Some(Fault::Reorder), FAULT_AT) => {
                    held = Some(event);
                    continue;
                }
                _ => std::iter::once(event).chain(held.take()).collect(),
            };
            for event in &batch {
                if let Err(e) = self.take(&mut ids, event) {
                    return e;
                }
            }
        }
    }

    /// Checks one event of the shared stream and hands a status to its task.
    fn take(&self, ids: &mut StreamCheck, event: &Event) -> Result<(), String> {
        let (id, seq, status) = parse(event)?;
        if let Some(s) = &status
            && self.mine.contains(&s.task_id)
        {
            self.contiguous.store(true, Relaxed);
        }
        if self.contiguous.load(Relaxed) {
            ids.arm_contiguous();
        }
        if let Err(e) = ids.see(id, seq) {
            self.stream_errors.lock().unwrap().push(e);
        }
        if let Some(s) = status {
            self.dispatch(s);
        }
        Ok(())
    }

    fn dispatch(&self, s: Status) {
        self.statuses.fetch_add(1, Relaxed);
        let mut tracked = self.tasks.entry(s.task_id).or_default();
        tracked.check.flow = self.flow;
        let seen = tracked.check.see(&s.status, s.attempt);
        if seen.is_ok()
            && s.status != "waiting_for_review"
            && let Some(sent) = tracked.decided.take()
        {
            self.delays.lock().unwrap().push(sent.elapsed());
        }
        let latest = seen.map(|()| tracked.check.latest());
        // The old value is of no interest.
        let _ = tracked.latest.send_replace(latest);
    }

    /// Status events the shared stream has shown so far, of every task.
    pub fn statuses(&self) -> usize {
        self.statuses.load(Relaxed)
    }

    /// POSTs `body` and returns the JSON answer, which must come with `expected`.
    pub async fn post(&self, path: &str, body: Value, expected: StatusCode) -> Result<Value> {
        let turn = self.turn.fetch_add(1, Relaxed) % (self.others.len() + 1);
        let base = if turn == 0 {
            &self.base
        } else {
            &self.others[turn - 1]
        };
        let response = self.client.post(format!("{base}{path}")).json(&body).send();
        let response = response.await.with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status == expected, "POST {path} {body}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// Submits a task allowing `attempts` and returns its id.
    pub async fn submit(&self, n: usize, attempts: u32) -> Result<String> {
        let input = format!("load task {n}\nsecond line");
        let body = match self.flow {
            Flow::Simulated => json!({ "input": input, "max_attempts": attempts }),
            Flow::Outside => json!({ "input": input, "max_attempts": attempts,
                                     "output": format!("draft 1 of {input}") }),
            Flow::Workers => json!({ "input": input, "max_attempts": attempts,
                                     "processor": "external" }),
        };
        let task = self.post("/api/tasks", body, StatusCode::CREATED).await?;
        let id = task["id"].as_str().context("a task id")?.to_owned();
        self.mine.insert(id.clone());
        Ok(id)
    }

    /// Decides on `attempt`: changes requested (with the comment that needs), or approval.
    pub async fn decide(&self, id: &str, attempt: u32, approve: bool) -> Result<Instant> {
        let body = match approve {
            true => json!({ "decision": "approved", "attempt": attempt }),
            false => {
                json!({ "decision": "rejected", "attempt": attempt, "comment": "more, please" })
            }
        };
        let sent = Instant::now();
        self.tasks.entry(id.to_owned()).or_default().decided = Some(sent);
        let path = format!("/api/tasks/{id}/feedback");
        self.post(&path, body, StatusCode::OK).await?;
        Ok(sent)
    }

    /// Waits until the shared stream shows task `id` at `want`.
    pub async fn wait(&self, id: &str, want: (&'static str, u32)) -> Result<()> {
        let mut latest = self
            .tasks
            .entry(id.to_owned())
            .or_default()
            .latest
            .subscribe();
        let reached = |l: &Result<_, String>| l.as_ref().map_or(true, |&l| l == Some(want));
        let seen = timeout(WAIT, latest.wait_for(reached)).await;
        let seen = seen.map_err(|_| anyhow!("task {id}: no {want:?} in {WAIT:?}"))?;
        let seen = seen.context("the stream reader stopped")?.clone();
        seen.map(drop).map_err(|v| anyhow!("task {id}: {v}"))
    }

    /// One lifecycle: submit, wait for review, request changes, wait for the next review,
    /// approve, wait for completion; then the task's events must be exactly the lifecycle.
    /// With `Flow::Outside` this process hands in attempt 2 itself; with `Flow::Workers` the
    /// workers (see [`Self::work`]) make both attempts.
    pub async fn lifecycle(&self, n: usize) -> Result<()> {
        let id = self.submit(n, 2).await?;
        self.wait(&id, ("waiting_for_review", 1)).await?;
        self.decide(&id, 1, false).await?;
        if self.flow == Flow::Outside {
            self.wait(&id, ("pending", 2)).await?;
            let body = json!({ "attempt": 2, "output": "draft 2, more" });
            self.post(&format!("/api/tasks/{id}/attempts"), body, StatusCode::OK)
                .await?;
        }
        self.wait(&id, ("waiting_for_review", 2)).await?;
        self.decide(&id, 2, true).await?;
        self.wait(&id, ("completed", 2)).await?;
        self.finished(&id, 2)
    }

    /// The task's events were exactly a lifecycle of `attempts` attempts; later events are
    /// still checked (`late_errors`).
    pub fn finished(&self, id: &str, attempts: u32) -> Result<()> {
        let finished = self.tasks.get(id).map(|t| t.check.finished(attempts));
        finished
            .context("untracked")?
            .map_err(|v| anyhow!("task {id}: {v}"))?;
        self.passed.insert(id.to_owned());
        Ok(())
    }

    /// Runs lifecycles `range`, `c` at a time. Returns the errors, each in words.
    pub async fn lifecycles(&self, range: std::ops::Range<usize>, c: usize) -> Vec<String> {
        let outcomes = stream::iter(range)
            .map(|n| self.lifecycle(n))
            .buffer_unordered(c);
        let outcomes: Vec<Result<()>> = outcomes.collect().await;
        outcomes
            .into_iter()
            .filter_map(|o| o.err())
            .map(|e| format!("{e:#}"))
            .collect()
    }

    /// One worker: claims attempts (waiting up to a second for one) and hands each in, until
    /// it is dropped. Returns the first error.
    pub async fn work(&self) -> Result<()> {
        loop {
            let turn = self.turn.fetch_add(1, Relaxed) % (self.others.len() + 1);
            let base = if turn == 0 {
                &self.base
            } else {
                &self.others[turn - 1]
            };
            let response = self
                .client
                .post(format!("{base}/api/claims"))
                .json(&json!({ "wait_secs": 1, "lease_secs": 60 }))
                .send()
                .await
                .context("POST /api/claims")?;
            match response.status() {
                StatusCode::NO_CONTENT => continue,
                StatusCode::OK => {}
                other => anyhow::bail!("POST /api/claims: {other}"),
            }
            let claimed: Value = response.json().await?;
            let id = claimed["task"]["id"].as_str().context("a claimed task")?;
            let attempt = claimed["attempt"].as_u64().context("an attempt")?;
            let body = json!({ "attempt": attempt, "claim": claimed["claim"],
                               "output": format!("attempt {attempt}, by a worker") });
            self.post(&format!("/api/tasks/{id}/attempts"), body, StatusCode::OK)
                .await?;
        }
    }

    /// Every problem with a task of ours that the stream showed after its lifecycle passed (a
    /// late duplicate, say), and every problem with the stream's ids, each reported once.
    pub fn late_errors(&self) -> Vec<String> {
        let mut errors = std::mem::take(&mut *self.stream_errors.lock().unwrap());
        for id in self.passed.iter() {
            if let Some(v) = self.tasks.get(&*id).and_then(|t| t.check.violation.clone()) {
                errors.push(format!("task {}: {v}", *id));
            }
        }
        self.passed.clear();
        errors
    }
}

/// Opens an event stream, answered 200.
pub async fn connect(client: &reqwest::Client, url: String) -> Result<reqwest::Response> {
    let response = timeout(WAIT, client.get(&url).send()).await;
    let response = response.map_err(|_| anyhow!("GET {url}: no answer in {WAIT:?}"))??;
    ensure!(
        response.status() == StatusCode::OK,
        "GET {url}: {}",
        response.status()
    );
    Ok(response)
}
