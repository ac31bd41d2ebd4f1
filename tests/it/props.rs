//! A property test: random sequences of submissions, decisions (some of them racing), cancels
//! and restarts, run against the service in-process on a durable store, with the lifecycle's
//! invariants checked after every step.
//!
//! After each step every task is settled (no longer `pending` or `running`), so the state the
//! service should be in follows from the operations alone, and the test keeps a small model of it:
//! which calls must be accepted, which refused, and what each task must look like afterwards.
//! The event journal is checked after every step too: numbered 1..=head with no gap, only ever
//! appended to (a restart renumbers and rewrites nothing), each task's status events a walk along
//! the lifecycle, and each task's latest status event the task as it is now.
//!
//! - [`ops`]: the operations, how they are drawn, and how each is applied and its outcome checked.
//! - [`model`]: what the test knows of each task, and how accepted and refused calls move it.
//! - [`checks`]: the invariants checked after every step.

mod checks;
mod model;
mod ops;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};

use model::World;
use ops::{Op, op};

/// The longest any one call or wait may take before the case fails.
const WAIT: Duration = Duration::from_secs(10);

/// The attempts a submission that names none gets (the config's `max_attempts`).
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// How often each kind of outcome happened, over every case run: evidence the run covered what
/// it should.
#[derive(Default)]
struct Stats {
    submitted: AtomicUsize,
    decided: AtomicUsize,
    decision_refused: AtomicUsize,
    decision_invalid: AtomicUsize,
    races: AtomicUsize,
    cancelled: AtomicUsize,
    cancel_refused: AtomicUsize,
    restarts: AtomicUsize,
    completed: AtomicUsize,
    failed_at_limit: AtomicUsize,
    failed_final: AtomicUsize,
    next_attempt: AtomicUsize,
}

impl Stats {
    fn bump(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// Awaits `future`, failing the case if it takes longer than [`WAIT`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> Result<T, TestCaseError> {
    tokio::time::timeout(WAIT, future)
        .await
        .map_err(|_| fail(format!("timed out after {WAIT:?}: {what}")))
}

/// One case: a fresh directory, a fresh runtime, the operations in order with every check after
/// each, and the service closed at the end whatever happened.
fn run_case(ops: &[Op], stats: &Arc<Stats>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| fail(format!("no temporary directory: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(format!("no runtime: {e}")))?;
    runtime.block_on(async {
        let mut world = World::open(&dir, stats.clone())?;
        let mut result = Ok(());
        for (step, op) in ops.iter().enumerate() {
            let outcome = match world.apply(step, op).await {
                Ok(()) => world.check().await,
                Err(e) => Err(e),
            };
            if let Err(error) = outcome {
                result = Err(fail(format!(
                    "step {step} ({op:?}): {error}\nsteps taken:\n  {}",
                    world.trace.join("\n  ")
                )));
                break;
            }
        }
        world.close().await;
        result
    })
}

#[test]
fn random_operations_keep_the_lifecycle_invariants() {
    let stats = Arc::new(Stats::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        // Only this file may be written: no regressions file next to it.
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let started = Instant::now();
    let result = runner.run(&proptest::collection::vec(op(), 1..=25), |ops| {
        run_case(&ops, &stats)
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    eprintln!(
        "props: {:?}; submitted {}, decided {} (completed {}, next attempt {}, failed at the \
         limit {}, rejected for good {}), decisions refused {}, invalid {}, races {}, cancelled \
         {}, cancels refused {}, restarts {}",
        started.elapsed(),
        n(&stats.submitted),
        n(&stats.decided),
        n(&stats.completed),
        n(&stats.next_attempt),
        n(&stats.failed_at_limit),
        n(&stats.failed_final),
        n(&stats.decision_refused),
        n(&stats.decision_invalid),
        n(&stats.races),
        n(&stats.cancelled),
        n(&stats.cancel_refused),
        n(&stats.restarts),
    );
}
