//! How much memory a stored finished task holds beyond its text, and that `--keep-finished`
//! gives it back.
//!
//! It runs N whole lifecycles through the service in memory (submit, request changes with a
//! comment, approve; the simulated processor with no delay), the way the HTTP handlers call it,
//! and counts the bytes the heap holds with a counting allocator around the system's: exact,
//! unlike RSS. The text is what the task must keep whatever the design (its input, each
//! attempt's output, the reviewer's comment), each counted once; the rest is the cost of
//! keeping the task. The in-memory event log (bounded by `--retain-events`) is measured apart:
//! one run keeps a single event, so only the tasks remain; one keeps the default.
//!
//!     cargo run --release --example task_memory -- [--tasks N]
//!
//! Default N = 20,000. Results are in BENCHMARKS.md.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use anyhow::{Result, ensure};
use hitl::{
    Hitl,
    auth::Actor,
    config::{Config, StoreKind},
    input::{DecisionRequest, NewTask},
    store::Retention,
    task::{Decision, TaskId, TaskStatus},
};
use tokio_util::sync::CancellationToken;

/// The system allocator, counting the bytes it holds.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes straight to `System`; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// Waits until the task is in `status` at `attempt`.
async fn until(hitl: &Hitl, id: TaskId, status: TaskStatus, attempt: u32) -> Result<()> {
    let mut changes = hitl.registry.watch(id).expect("the task exists");
    loop {
        let task = hitl.registry.get(id).expect("the task exists");
        if task.status == status && task.attempt == attempt {
            return Ok(());
        }
        ensure!(!task.status.is_terminal(), "task ended {:?}", task.status);
        changes.changed().await?;
    }
}

/// One lifecycle; returns the bytes of text the finished task must keep.
async fn lifecycle(hitl: &Hitl, n: usize) -> Result<usize> {
    let anyone = Actor::anyone();
    let input = format!(
        "Summarise invoice {n} for the customer: the amounts, the due date, and anything that \
         looks unusual about the line items, in two short paragraphs a busy person can read. \
         Reference PO-{n:05}."
    );
    let new = NewTask::parse(Some(&input), Some(3))?;
    let id = hitl.submit(new, &anyone).await?.id;
    until(hitl, id, TaskStatus::WaitingForReview, 1).await?;
    let decide = |decision, attempt, comment: Option<&str>| DecisionRequest {
        decision,
        attempt: Some(attempt),
        comment: comment.map(Into::into),
        output: None,
        output_sha256: None,
    };
    let comment = "Shorter, please, and name the due date first.";
    hitl.decide(id, decide(Decision::Rejected, 1, Some(comment)), &anyone)
        .await?;
    until(hitl, id, TaskStatus::WaitingForReview, 2).await?;
    let done = hitl
        .decide(id, decide(Decision::Approved, 2, None), &anyone)
        .await?;
    ensure!(done.status == TaskStatus::Completed);
    let outputs: usize = done.attempts.iter().map(|a| a.output.len()).sum();
    Ok(done.input.len() + outputs + comment.len())
}

struct Measured {
    per_task: f64,
    text: f64,
    left: f64,
}

/// Runs `tasks` lifecycles on a fresh service and measures what they hold.
async fn measure(tasks: usize, config: Config) -> Result<Measured> {
    let shutdown = CancellationToken::new();
    let hitl = Hitl::open(&config, shutdown.clone())?;
    // Warm up what is allocated once (the runtime, metrics, the maps' first growth).
    for n in 0..100 {
        lifecycle(&hitl, n).await?;
    }
    let before = held();
    let mut text = 0;
    for n in 0..tasks {
        text += lifecycle(&hitl, 100 + n).await?;
    }
    let after = held();
    let in_memory = hitl.registry.len();
    shutdown.cancel();
    drop(hitl);
    let total = tasks as f64;
    Ok(Measured {
        per_task: (after - before) as f64 / total,
        text: text as f64 / total,
        left: in_memory as f64,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut tasks = 20_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => tasks = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other:?} (try --tasks N)"),
        }
    }
    let base = Config {
        process_delay_ms: 0,
        store: StoreKind::Memory,
        ..Config::default()
    };
    println!("N = {tasks} finished tasks (2 attempts, 1 comment each), memory store");
    println!(
        "{:<44} {:>12} {:>10} {:>14} {:>10}",
        "case", "bytes/task", "text", "beyond text", "in memory"
    );
    let cases = [
        (
            "tasks only (--retain-events 1)",
            Config {
                retain_events: Retention::Count(1),
                ..base.clone()
            },
        ),
        ("tasks and the event log (default)", base.clone()),
        (
            "--keep-finished 1000 --retain-events 1",
            Config {
                retain_events: Retention::Count(1),
                keep_finished: Some(Retention::Count(1000)),
                ..base.clone()
            },
        ),
    ];
    for (name, config) in cases {
        let m = measure(tasks, config).await?;
        println!(
            "{name:<44} {:>12.0} {:>10.0} {:>14.0} {:>10}",
            m.per_task,
            m.text,
            m.per_task - m.text,
            m.left
        );
    }
    Ok(())
}
