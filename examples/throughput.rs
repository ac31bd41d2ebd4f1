//! Throughput of whole review lifecycles: the in-memory store against the durable SQLite store.
//!
//! One lifecycle, over the JSON API: submit a task, wait until attempt 1 is up for review, reject
//! it with a comment, wait until attempt 2 is up, approve it and check the answer is `completed`.
//! Waits follow ONE `GET /api/events` stream shared by every lifecycle (no polling). Processing
//! takes no time, so this measures the service itself: HTTP, registry, event log, stream and, when
//! durable, the group-commit journal and its fsyncs. The server runs in this process.
//!
//! Per store and run: a fresh server (the durable one in a new temporary directory), 100 warm-up
//! lifecycles, then N timed ones, C in flight. It prints lifecycles/s, wall time, median and p99
//! latency, status events per lifecycle and errors (durable: the journal's commits, events per
//! commit, time per commit and how busy its writer was, from `/metrics`), then each store's median
//! over the runs and the durable/memory ratio. Any error (non-2xx, a wrong status, a step over
//! 30 s, a lost stream) fails the benchmark.
//!
//!     cargo run --release --example throughput -- [--lifecycles N] [--concurrency C] \
//!         [--store memory|sqlite|both] [--runs R]
//!
//! Defaults: N = 2000, C = 64, both stores (taking turns), R = 3. Results are in BENCHMARKS.md.

use std::{
    ops::Range,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use dashmap::{DashMap, mapref::one::RefMut};
use eventsource_stream::Eventsource;
use futures_util::{StreamExt, stream};
use hitl::config::{Config, StoreKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::watch, time::timeout};
use tokio_util::sync::CancellationToken;

/// The longest any one step may take before the run fails.
const WAIT: Duration = Duration::from_secs(30);
const WARM_UP: usize = 100;

/// A task's latest (status, attempt), as the stream showed it.
type Latest = watch::Sender<(String, u32)>;

#[derive(Default)]
struct Bench {
    client: reqwest::Client,
    base: String,
    /// The latest (status, attempt) the stream showed for each task in flight. Kept whether or
    /// not a lifecycle waits on it yet, so an event that arrives first is not missed.
    tasks: DashMap<String, Latest>,
    /// Status events the stream delivered, and how many of them said `completed`.
    events: AtomicU64,
    completed: watch::Sender<u64>,
}

impl Bench {
    fn latest(&self, id: &str) -> RefMut<'_, String, Latest> {
        self.tasks.entry(id.to_owned()).or_default()
    }

    /// Reads the event stream until it fails, handing each status to its task's watcher.
    async fn follow(&self, response: reqwest::Response) -> String {
        let mut events = response.bytes_stream().eventsource();
        loop {
            let event = match events.next().await {
                Some(Ok(event)) if event.event == "status" => event,
                Some(Ok(event)) => return format!("unexpected event {event:?}"),
                Some(Err(error)) => return format!("stream error: {error}"),
                None => return "the stream ended".into(),
            };
            let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
            let (Some(id), Some(status), Some(attempt)) = (
                data["task_id"].as_str(),
                data["status"].as_str(),
                data["attempt"].as_u64(),
            ) else {
                return format!("malformed event {event:?}");
            };
            self.events.fetch_add(1, Relaxed);
            if status == "completed" {
                // Nobody waits for this (the approval's answer says it): forget the task.
                self.tasks.remove(id);
                self.completed.send_modify(|n| *n += 1);
            } else {
                self.latest(id)
                    .send_replace((status.into(), attempt as u32));
            }
        }
    }

    /// Waits until the stream shows `attempt` of task `id` up for review.
    async fn review(&self, id: &str, attempt: u32) -> Result<()> {
        let mut latest = self.latest(id).subscribe();
        let settled = |(status, a): &(String, u32)| {
            (status == "waiting_for_review" && *a == attempt)
                || status == "failed"
                || status == "cancelled"
        };
        let seen = timeout(WAIT, latest.wait_for(settled)).await;
        let seen =
            seen.with_context(|| format!("task {id}: no review of attempt {attempt} in {WAIT:?}"))?;
        let status = seen.context("watcher dropped")?.0.clone();
        ensure!(status == "waiting_for_review", "task {id} ended {status}");
        Ok(())
    }

    /// POSTs `body` and returns the JSON answer, which must come with `expected`.
    async fn post(&self, path: &str, body: Value, expected: StatusCode) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self.client.post(url).json(&body).send().await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status == expected, "POST {path} {body}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// One lifecycle: submit, reject attempt 1, approve attempt 2. Returns its latency.
    async fn lifecycle(&self, n: usize) -> Result<Duration> {
        let started = Instant::now();
        let input = json!({ "input": format!("benchmark task {n}\nsecond line") });
        let task = self.post("/api/tasks", input, StatusCode::CREATED).await?;
        let id = task["id"].as_str().context("a task id")?.to_owned();
        let feedback = format!("/api/tasks/{id}/feedback");
        let steps = async {
            self.review(&id, 1).await?;
            let reject = json!({ "decision": "rejected", "attempt": 1, "comment": "more, please" });
            self.post(&feedback, reject, StatusCode::OK).await?;
            self.review(&id, 2).await?;
            let approve = json!({ "decision": "approved", "attempt": 2 });
            let done = self.post(&feedback, approve, StatusCode::OK).await?;
            ensure!(done["status"] == "completed", "task {id} approved: {done}");
            Ok(started.elapsed())
        };
        let outcome = steps.await;
        self.tasks.remove(&id);
        outcome
    }

    /// Runs lifecycles `range`, `c` at a time; once one fails no more start. Returns the
    /// latencies, then waits until the stream has shown every task completed.
    async fn lifecycles(&self, range: Range<usize>, c: usize) -> Result<Vec<Duration>> {
        let (stop, end) = (&CancellationToken::new(), range.end as u64);
        let mut outcomes = stream::iter(range)
            .take_while(|_| std::future::ready(!stop.is_cancelled()))
            .map(|n| async move { self.lifecycle(n).await.inspect_err(|_| stop.cancel()) })
            .buffer_unordered(c);
        let (mut latencies, mut errors) = (Vec::new(), Vec::new());
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(latency) => latencies.push(latency),
                Err(error) => errors.push(format!("{error:#}")),
            }
        }
        for error in errors.iter().take(5) {
            eprintln!("  error: {error}");
        }
        ensure!(errors.is_empty(), "{} lifecycles failed", errors.len());
        let mut completed = self.completed.subscribe();
        let seen = timeout(WAIT, completed.wait_for(|&n| n >= end)).await;
        ensure!(
            matches!(seen, Ok(Ok(_))),
            "the stream never showed {end} tasks completed"
        );
        Ok(latencies)
    }

    /// The journal's events written, commits and seconds spent committing so far, from
    /// `/metrics` (all zero in memory mode).
    async fn journal(&self) -> Result<[f64; 3]> {
        let url = format!("{}/metrics", self.base);
        let text = self.client.get(url).send().await?.text().await?;
        let value = |name: &str| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
            line.and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
        };
        Ok([
            value("hitl_journal_batch_events_sum"),
            value("hitl_journal_batch_events_count"),
            value("hitl_journal_commit_seconds_sum"),
        ])
    }

    /// Warms up, then times `n` lifecycles. Returns lifecycles/s and a line to print.
    async fn measure(&self, store: StoreKind, n: usize, c: usize) -> Result<(f64, String)> {
        self.lifecycles(0..WARM_UP, c).await.context("warm-up")?;
        let (journal, events) = (self.journal().await?, self.events.load(Relaxed));
        let started = Instant::now();
        let mut latencies = self.lifecycles(WARM_UP..WARM_UP + n, c).await?;
        let wall = started.elapsed().as_secs_f64();
        let events = (self.events.load(Relaxed) - events) as f64 / n as f64;
        latencies.sort();
        let ms = |q: f64| {
            latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1].as_secs_f64() * 1e3
        };
        let rate = n as f64 / wall;
        let mut line = format!(
            "{rate:7.1} lifecycles/s {wall:6.2} s  median {:5.1} ms  p99 {:5.1} ms  {events:.1} events/lifecycle  0 errors",
            ms(0.5),
            ms(0.99),
        );
        if store == StoreKind::Sqlite {
            let after = self.journal().await?;
            let [written, commits, busy]: [f64; 3] = std::array::from_fn(|i| after[i] - journal[i]);
            line += &format!(
                "  {commits:.0} commits, {:.1} events/commit, {:.2} ms/commit, writer busy {:.0}%",
                written / commits,
                busy * 1e3 / commits,
                busy * 100.0 / wall,
            );
        }
        Ok((rate, line))
    }
}

/// Starts a fresh server with `store`, measures it and shuts it down.
async fn run(store: StoreKind, n: usize, c: usize) -> Result<(f64, String)> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        process_delay_ms: 0,
        store,
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let service = hitl::Hitl::open(&config, shutdown.clone())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(hitl::web::serve(listener, service.clone()));
    // The stream's request has no overall timeout (it lasts the whole run); the others do.
    let events = timeout(WAIT, reqwest::get(format!("{base}/api/events"))).await??;
    ensure!(
        events.status() == StatusCode::OK,
        "GET /api/events: {}",
        events.status()
    );
    let client = reqwest::Client::builder().timeout(WAIT).build()?;
    let bench = Bench {
        client,
        base,
        ..Bench::default()
    };
    let outcome = tokio::select! {
        outcome = bench.measure(store, n, c) => outcome,
        reason = bench.follow(events) => Err(anyhow::anyhow!("event stream lost: {reason}")),
    };
    shutdown.cancel();
    let (closed, stopped) = (
        timeout(WAIT, service.close()).await,
        timeout(WAIT, server).await,
    );
    closed.context("closing the service")?;
    stopped.context("stopping the server")???;
    outcome
}

#[tokio::main]
async fn main() -> Result<()> {
    let (mut n, mut c, mut runs) = (2000, 64, 3);
    let mut stores = vec![StoreKind::Memory, StoreKind::Sqlite];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match (flag.as_str(), value.as_str()) {
            ("--lifecycles", _) => n = value.parse()?,
            ("--concurrency", _) => c = value.parse()?,
            ("--runs", _) => runs = value.parse()?,
            ("--store", "memory") => stores = vec![StoreKind::Memory],
            ("--store", "sqlite") => stores = vec![StoreKind::Sqlite],
            ("--store", "both") => stores = vec![StoreKind::Memory, StoreKind::Sqlite],
            _ => bail!(
                "usage: throughput [--lifecycles N] [--concurrency C] [--store memory|sqlite|both] [--runs R]"
            ),
        }
    }
    ensure!(n > 0 && c > 0 && runs > 0, "N, C and R must be positive");
    println!(
        "{n} lifecycles per run after {WARM_UP} warm-up, {c} in flight, {runs} runs per store"
    );
    let name = |store: StoreKind| format!("{store:?}").to_lowercase();
    let mut rates = vec![Vec::new(); stores.len()];
    for r in 1..=runs {
        for (i, &store) in stores.iter().enumerate() {
            let (rate, line) = run(store, n, c)
                .await
                .with_context(|| format!("{} run {r}", name(store)))?;
            println!("{:6} run {r}: {line}", name(store));
            rates[i].push(rate);
        }
    }
    let mut medians = Vec::new();
    for (&store, rates) in stores.iter().zip(&mut rates) {
        let each: Vec<_> = rates.iter().map(|r| format!("{r:.1}")).collect();
        rates.sort_by(f64::total_cmp);
        let median = match rates.len() % 2 {
            1 => rates[rates.len() / 2],
            _ => (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0,
        };
        println!(
            "{:6} median {median:.1} lifecycles/s (runs: {})",
            name(store),
            each.join(", ")
        );
        medians.push(median);
    }
    if let [memory, sqlite] = medians[..] {
        println!(
            "durable/memory ratio: {:.2} (sqlite/memory)",
            sqlite / memory
        );
    }
    Ok(())
}
