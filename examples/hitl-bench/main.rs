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
//! With `--floor target/release/examples/floor` (as well as, or instead of, a hitl) each run also
//! goes to the floor, a bare axum server of hitl's shape (`examples/floor.rs`), the two taking
//! turns, and the report ends with hitl's medians over the floor's.
//!
//!     cargo build --release --example hitl-bench --example floor --bin hitl
//!     target/release/examples/hitl-bench --spawn target/release/hitl --store memory \
//!         --floor target/release/examples/floor ...
//!
//! With `--webhook` a spawned hitl also POSTs every status event to a receiver in this process
//! (`receiver.rs`), which answers 200 at once; the run then reports event-to-delivery delays, waits
//! (at most 2 minutes) for the outbox to drain, and counts the deliveries against the status events
//! the shared stream showed. With `--webhook-turns` each run goes to a hitl without a receiver,
//! then to one with, and the report ends with the second's medians over the first's.
//!
//!     target/release/examples/hitl-bench --spawn target/release/hitl --store sqlite \
//!         --webhook-turns ...
//!
//! Results are in BENCHMARKS.md ("The load generator", "The floor", "Webhooks").

mod check;
mod load;
mod receiver;
mod report;
mod server;
mod watchers;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;

use crate::{
    load::{Load, WAIT, connect},
    receiver::Receiver,
    report::{Hook, Run, Spread},
    server::Server,
};

#[derive(Parser, Debug)]
#[command(
    name = "hitl-bench",
    about = "Load and check a running hitl over HTTP and SSE"
)]
#[command(group(clap::ArgGroup::new("target").args(["url", "spawn"])))]
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
    /// Also start this floor server (`examples/floor.rs`) for each run, taking turns with the
    /// server above, and compare the two.
    #[arg(long)]
    floor: Option<String>,
    /// Give the spawned hitl a webhook receiver in this process (`--webhook-url`, a fresh
    /// `--webhook-secret`), answering 200 at once; report event-to-delivery delays and counts.
    #[arg(long, requires = "spawn")]
    webhook: bool,
    /// Runs take turns between the spawned hitl without a receiver and with one (as
    /// `--webhook`), and the report compares the two.
    #[arg(long, requires = "spawn", conflicts_with_all = ["floor", "webhook"])]
    webhook_turns: bool,
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
    /// Requests waiting on a task (`GET /api/tasks/{id}?wait=120`) to hold open at once, for
    /// memory per wait (beside `--idle-watchers`' memory per stream).
    #[arg(long, default_value_t = 0)]
    idle_waiters: usize,
    /// The lifecycle: hitl's processor makes the attempts (`simulated`), this process hands
    /// them in (`outside`), or `--workers` claim them (`workers`).
    #[arg(long, value_enum, default_value_t = check::Flow::Simulated)]
    flow: check::Flow,
    /// Workers claiming attempts, with `--flow workers`.
    #[arg(long, default_value_t = 16)]
    workers: usize,
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
/// The longest the outbox may take to deliver what the lifecycles made, after they ended.
const DRAIN: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.lifecycles > 0 && args.concurrency > 0,
        "N and C must be positive"
    );
    let wanted = (args.idle_watchers + args.idle_waiters + args.busy_watchers + args.concurrency)
        as u64
        + 1024;
    let files = server::raise_open_files(wanted)?;
    ensure!(
        files >= wanted,
        "the open-file limit is {files}, {wanted} needed"
    );
    let targets = Target::all(&args);
    ensure!(!targets.is_empty(), "give --url, --spawn or --floor");
    let names: Vec<String> = targets.iter().map(Target::name).collect();
    println!(
        "machine: {}; servers, taking turns: {}",
        server::machine(),
        names.join(", then ")
    );
    if !args.also_url.is_empty() {
        println!("requests spread over the first and {:?}", args.also_url);
    }
    println!(
        "N = {} lifecycles ({:?}{}) after {WARM_UP} warm-up, C = {}, W = {} busy watchers, K = {} idle, {} waiting, {} runs",
        args.lifecycles,
        args.flow,
        if args.flow == check::Flow::Workers {
            format!(", {} workers", args.workers)
        } else {
            String::new()
        },
        args.concurrency,
        args.busy_watchers,
        args.idle_watchers,
        args.idle_waiters,
        args.runs
    );
    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    for r in 1..=args.runs {
        for (target, runs) in targets.iter().zip(&mut runs) {
            let load = server::load_average();
            println!(
                "run {r}, {}: one-minute load average {load} before",
                target.name()
            );
            let receiver = match target.webhook() {
                true => Some(Receiver::start().await?),
                false => None,
            };
            let mut server_args: Vec<String> =
                receiver.iter().flat_map(Receiver::server_args).collect();
            server_args.extend(args.server_args.iter().cloned());
            let server = target.start(&server_args).await?;
            let outcome = run(&args, &server, target.fresh(), receiver.as_ref()).await;
            server.stop().await?;
            let run = outcome.with_context(|| format!("{}, run {r}", target.name()))?;
            if args.json {
                let mut json = run.json();
                json["server"] = target.name().into();
                json["load_average_before"] = load.into();
                println!("{json}");
            }
            runs.push(run);
        }
    }
    for (name, runs) in names.iter().zip(&runs) {
        println!("\n{name}:");
        report::print(runs);
    }
    if let [first, second] = &runs[..] {
        // The floor comes second, and is the measure; the receiver's runs come second, and are
        // measured by the first's.
        let (over, under) = match args.webhook_turns {
            true => ((second, &names[1]), (first, &names[0])),
            false => ((first, &names[0]), (second, &names[1])),
        };
        println!("\n{} over {}, median over median:", over.1, under.1);
        report::ratios(over.0, under.0);
    }
    let runs: Vec<Run> = runs.into_iter().flatten().collect();
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

/// A server the runs go to.
enum Target {
    Given {
        url: String,
        pid: Option<u32>,
    },
    Hitl {
        binary: String,
        store: String,
        webhook: bool,
    },
    Floor {
        binary: String,
    },
}

impl Target {
    /// The server under test first, then the floor, or the same server with a receiver.
    fn all(args: &Args) -> Vec<Self> {
        let first = match (&args.url, &args.spawn) {
            (Some(url), _) => Some(Self::Given {
                url: url.clone(),
                pid: args.pid,
            }),
            (_, Some(binary)) => Some(Self::Hitl {
                binary: binary.clone(),
                store: args.store.clone(),
                webhook: args.webhook,
            }),
            _ => None,
        };
        let second = match (&first, &args.floor) {
            (Some(Self::Hitl { binary, store, .. }), _) if args.webhook_turns => Some(Self::Hitl {
                binary: binary.clone(),
                store: store.clone(),
                webhook: true,
            }),
            (_, floor) => floor.clone().map(|binary| Self::Floor { binary }),
        };
        first.into_iter().chain(second).collect()
    }

    fn name(&self) -> String {
        match self {
            Self::Given { url, pid } => format!("{url} (pid {pid:?})"),
            Self::Hitl {
                binary,
                store,
                webhook,
            } => match webhook {
                true => format!("{binary} --store {store} --webhook-url (a receiver here)"),
                false => format!("{binary} --store {store}"),
            },
            Self::Floor { binary } => format!("{binary} (the floor)"),
        }
    }

    async fn start(&self, hitl_args: &[String]) -> Result<Server> {
        match self {
            Self::Given { url, pid } => Ok(Server::given(url, *pid)),
            Self::Hitl { binary, store, .. } => {
                Server::spawn(binary, Some((store, hitl_args))).await
            }
            Self::Floor { binary } => Server::spawn(binary, None).await,
        }
    }

    /// Does this server deliver webhooks to a receiver here?
    fn webhook(&self) -> bool {
        matches!(self, Self::Hitl { webhook: true, .. })
    }

    /// A server this process started has no tasks yet.
    fn fresh(&self) -> bool {
        !matches!(self, Self::Given { .. })
    }
}

/// One run against `server`: lifecycles, then busy watchers, then idle streams. With a
/// `receiver`, the server's CPU is read once the lifecycles' deliveries have all arrived (its
/// work includes sending them), and at the end every status event must have come as one.
async fn run(
    args: &Args,
    server: &Server,
    fresh: bool,
    receiver: Option<&Receiver>,
) -> Result<Run> {
    let client = reqwest::Client::builder().timeout(WAIT).build()?;
    let mut load = Load::new(client, server.base.clone(), fresh);
    load.fault = args.inject_fault;
    load.flow = args.flow;
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
        let since = time::OffsetDateTime::now_utc();
        let own_cpu = server::cpu_seconds("self");
        let n = args.lifecycles;
        errors.extend(
            load.lifecycles(WARM_UP..WARM_UP + n, args.concurrency)
                .await,
        );
        let wall = started.elapsed().as_secs_f64();
        let mut hook = None;
        if let Some(receiver) = receiver {
            let drained = receiver.drain(load.statuses(), DRAIN).await;
            let drain = drained.unwrap_or_else(|| {
                errors.push(format!("webhook: the outbox did not drain in {DRAIN:?}"));
                DRAIN
            });
            let delays = receiver.tally(|t| t.delays_since(since));
            hook = Some((Spread::of(&delays), drain));
        }
        let cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
        let own_cpu = own_cpu.zip(server::cpu_seconds("self")).map(|(a, b)| b - a);
        let delays = load.delays.lock().unwrap().clone();
        let mut run = Run::new(n, wall, [cpu, own_cpu], server.rss_kib(), &delays);
        if args.busy_watchers > 0 {
            let busy = watchers::busy(&load, args.busy_watchers).await?;
            run.busy(args.busy_watchers, busy.delays);
            errors.extend(busy.errors);
        }
        if args.idle_watchers > 0 || args.idle_waiters > 0 {
            let id = load.submit(usize::MAX - 1, 1).await?;
            load.wait(&id, ("waiting_for_review", 1)).await?;
            load.decide(&id, 1, true).await?;
            load.wait(&id, ("completed", 1)).await?;
            load.finished(&id, 1)?;
            if args.idle_watchers > 0 {
                let idle = watchers::idle(server, &load.base, &id, args.idle_watchers).await?;
                run.idle(args.idle_watchers, idle);
            }
            if args.idle_waiters > 0 {
                let waiting = watchers::waiting(server, &load.base, &id, args.idle_waiters).await?;
                run.waiting = Some((args.idle_waiters, waiting));
            }
        }
        if let (Some(receiver), Some((delay, drain))) = (receiver, hook) {
            let expected = load.statuses();
            if receiver.drain(expected, DRAIN).await.is_none() {
                errors.push(format!("webhook: the outbox did not drain in {DRAIN:?}"));
            }
            run.hook = Some(receiver.tally(|t| {
                errors.extend(t.errors.iter().cloned());
                if t.received() != expected {
                    errors.push(format!(
                        "webhook: {} deliveries for {expected} status events",
                        t.received()
                    ));
                }
                Hook {
                    delay,
                    drain,
                    received: t.received(),
                    expected,
                    duplicates: t.duplicates,
                }
            }));
        }
        errors.extend(load.late_errors());
        run.errors = errors;
        anyhow::Ok(run)
    };
    let workers = async {
        if args.flow != check::Flow::Workers {
            return std::future::pending().await;
        }
        let workers = (0..args.workers).map(|_| load.work());
        futures_util::future::try_join_all(workers).await.map(drop)
    };
    tokio::select! {
        run = phases => run,
        reason = load.follow(events) => Err(anyhow::anyhow!("the shared event stream: {reason}")),
        Err(error) = workers => Err(error.context("a worker")),
    }
}
