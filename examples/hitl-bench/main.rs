//! A load generator that drives a running hitl exactly as clients do, over HTTP and SSE, and
//! checks everything it sees, so a fast wrong answer cannot pass.
//!
//! Per run: N lifecycles, C at a time (submit, wait on the event stream for review, request
//! changes, wait for the next review, approve, wait for completion), every wait on ONE shared
//! `GET /api/events` stream; then W watchers on one task taken through 20 decisions; then K idle
//! streams. It reports lifecycles/s, decision-to-event delays (p50, p99, max), errors, the
//! server's CPU time per lifecycle and RSS (from `/proc/<pid>`), and RSS per idle stream.
//!
//! Checked: on the shared stream ids grow by exactly one (every event of every task passes
//! there), each `seq` equals its `id:`, and each task's status events are exactly its lifecycle;
//! each busy watcher sees every event of its task in order. A violation, a non-2xx answer or a
//! step over 30 s is an error, and any error makes the exit status non-zero.
//!
//!     cargo build --release --example hitl-bench --bin hitl
//!     target/release/examples/hitl-bench --spawn target/release/hitl --store memory \
//!         [--lifecycles N] [--concurrency C] [--idle-watchers K] [--busy-watchers W] [--runs R]
//!     target/release/examples/hitl-bench --url http://127.0.0.1:3000 --pid PID ...
//!
//! Results are in BENCHMARKS.md ("The load generator").

mod check;
mod load;
mod report;
mod server;
mod watchers;

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;

use crate::{
    load::{Load, WAIT, connect},
    report::Run,
    server::Server,
};

#[derive(Parser, Debug)]
#[command(
    name = "hitl-bench",
    about = "Load and check a running hitl over HTTP and SSE"
)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["url", "spawn"])))]
struct Args {
    /// A running server's URL.
    #[arg(long)]
    url: Option<String>,
    /// The running server's process id, for its CPU time and memory.
    #[arg(long, requires = "url")]
    pid: Option<u32>,
    /// Other instances of the same service (`--store postgres`): requests are spread over
    /// `--url` and these, round robin; the shared stream is read from `--url`.
    #[arg(long, requires = "url")]
    also_url: Vec<String>,
    /// Their process ids, for the CPU time of the whole service.
    #[arg(long, requires = "url")]
    also_pid: Vec<u32>,
    /// Start this hitl binary for each run, on a free port, with processing delay 0.
    #[arg(long)]
    spawn: Option<String>,
    /// The store of a spawned server.
    #[arg(long, default_value = "sqlite", value_parser = ["memory", "sqlite"])]
    store: String,
    #[arg(long, default_value_t = 2000)]
    lifecycles: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Idle event streams to open, for memory per stream.
    #[arg(long, default_value_t = 0)]
    idle_watchers: usize,
    /// Streams watching one busy task.
    #[arg(long, default_value_t = 0)]
    busy_watchers: usize,
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Also print every run as one JSON line.
    #[arg(long)]
    json: bool,
    /// Corrupt the shared stream as it is read (drop or reorder one event), to see the checks
    /// fail the run.
    #[arg(long, hide = true, value_enum)]
    inject_fault: Option<load::Fault>,
    /// Extra flags for a spawned server, after `--`.
    #[arg(last = true)]
    server_args: Vec<String>,
}

const WARM_UP: usize = 100;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.lifecycles > 0 && args.concurrency > 0,
        "N and C must be positive"
    );
    let wanted = (args.idle_watchers + args.busy_watchers + args.concurrency) as u64 + 1024;
    let files = server::raise_open_files(wanted)?;
    ensure!(
        files >= wanted,
        "the open-file limit is {files}, {wanted} needed"
    );
    let target = match (&args.url, &args.spawn) {
        (Some(url), _) => format!(
            "{url} (pid {:?}) and {} more instances {:?}",
            args.pid,
            args.also_url.len(),
            args.also_url
        ),
        (_, Some(binary)) => format!("{binary} --store {}", args.store),
        _ => unreachable!("clap requires one"),
    };
    println!("machine: {}; server: {target}", server::machine());
    println!(
        "N = {} lifecycles after {WARM_UP} warm-up, C = {}, W = {} busy watchers, K = {} idle, {} runs",
        args.lifecycles, args.concurrency, args.busy_watchers, args.idle_watchers, args.runs
    );
    let mut runs = Vec::new();
    for r in 1..=args.runs {
        let server = match (&args.url, &args.spawn) {
            (Some(url), _) => Server::given(url, args.pid),
            (_, Some(binary)) => Server::spawn(binary, &args.store, &args.server_args).await?,
            _ => unreachable!(),
        };
        let fresh = args.spawn.is_some();
        let outcome = run(&args, &server, fresh).await;
        server.stop().await?;
        let run = outcome.with_context(|| format!("run {r}"))?;
        if args.json {
            println!("{}", run.json());
        }
        runs.push(run);
    }
    report::print(&runs);
    let errors: usize = runs.iter().map(|r| r.errors.len()).sum();
    for error in runs.iter().flat_map(|r| &r.errors).take(10) {
        eprintln!("error: {error}");
    }
    ensure!(
        errors == 0,
        "{errors} errors: the server's answers cannot be trusted"
    );
    Ok(())
}

/// One run against `server`: lifecycles, then busy watchers, then idle streams.
async fn run(args: &Args, server: &Server, fresh: bool) -> Result<Run> {
    let client = reqwest::Client::builder().timeout(WAIT).build()?;
    let mut load = Load::new(client, server.base.clone(), fresh);
    load.fault = args.inject_fault;
    load.others = args
        .also_url
        .iter()
        .map(|url| url.trim_end_matches('/').to_owned())
        .collect();
    let others: Vec<Server> = args
        .also_pid
        .iter()
        .map(|&pid| Server::given("", Some(pid)))
        .collect();
    let cpu_seconds = || {
        let mut total = server.cpu_seconds()?;
        for other in &others {
            total += other.cpu_seconds()?;
        }
        Some(total)
    };
    let events = connect(&reqwest::Client::new(), format!("{}/api/events", load.base)).await?;
    let phases = async {
        let mut errors = load.lifecycles(0..WARM_UP, args.concurrency).await;
        load.delays.lock().unwrap().clear();
        let (cpu, started) = (cpu_seconds(), Instant::now());
        let n = args.lifecycles;
        errors.extend(
            load.lifecycles(WARM_UP..WARM_UP + n, args.concurrency)
                .await,
        );
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
        let mut run = Run::new(n, wall, cpu, server.rss_kib(), &load.delays.lock().unwrap());
        if args.busy_watchers > 0 {
            let busy = watchers::busy(&load, args.busy_watchers).await?;
            run.busy(args.busy_watchers, busy.delays);
            errors.extend(busy.errors);
        }
        if args.idle_watchers > 0 {
            let id = load.submit(usize::MAX - 1, 1).await?;
            load.wait(&id, ("waiting_for_review", 1)).await?;
            load.decide(&id, 1, true).await?;
            load.wait(&id, ("completed", 1)).await?;
            load.finished(&id, 1)?;
            let idle = watchers::idle(server, &load.base, &id, args.idle_watchers).await?;
            run.idle(args.idle_watchers, idle);
        }
        errors.extend(load.late_errors());
        run.errors = errors;
        anyhow::Ok(run)
    };
    tokio::select! {
        run = phases => run,
        reason = load.follow(events) => Err(anyhow::anyhow!("the shared event stream: {reason}")),
    }
}
