//! hitl on PostgreSQL: several instances on one database, tested against a real one.
//!
//! Its own test binary with its own harness (`libtest-mimic`), so that where no PostgreSQL can
//! be reached every test is reported as ignored, with the reason, rather than passed. The
//! database is `HITL_TEST_DATABASE_URL`, or `postgres://postgres@127.0.0.1:5432/test`; each test
//! gets a schema of its own, dropped afterwards.

use std::{future::Future, pin::Pin, time::Duration};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

#[allow(dead_code, unused_imports)]
#[path = "../it/helpers/mod.rs"]
mod helpers;

mod failover;
mod instances;
mod lifecycles;
mod outside;
mod proxy;
mod webhooks;
mod writes;

use instances::Db;

type Test = fn(Db) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// `module::test, ...` as (name, test) pairs: each test is named by its function.
macro_rules! tests {
    ($($module:ident :: $test:ident),* $(,)?) => {
        &[$((stringify!($test), |db| Box::pin($module::$test(db)))),*]
    };
}

/// Every test.
const TESTS: &[(&str, Test)] = tests![
    lifecycles::lifecycle_spread_across_three_instances,
    lifecycles::two_hundred_lifecycles_across_three_instances,
    lifecycles::racing_decisions_on_two_instances_decide_once,
    failover::instances_starting_at_once_migrate_once,
    failover::a_killed_instance_s_claim_is_taken_over_without_a_duplicate,
    failover::a_decision_while_the_claim_holder_is_dead_is_carried_on,
    failover::a_stopped_instance_hands_its_work_over_at_once,
    failover::review_deadlines_apply_once_across_instances,
    failover::the_database_lost_and_back_under_a_running_instance,
    failover::a_frozen_instance_does_not_stop_the_others_writes,
    writes::a_change_its_requester_gave_up_on_is_not_applied,
    writes::a_write_that_times_out_does_not_fail_the_task,
    writes::a_keyed_submission_is_made_once_across_instances,
    outside::each_outside_attempt_is_handed_out_once_across_instances,
    outside::a_revision_and_a_lapsed_lease_cross_instances,
    webhooks::two_instances_deliver_each_event_once,
    webhooks::a_dead_senders_delivery_is_taken_over_with_its_id,
];

/// Tests that restart the PostgreSQL server: run only when `HITL_TEST_PG_RESTART=1` says that
/// is allowed, and then alone (`.ci/run` does), since every other test's connections go too.
const RESTARTS: &[(&str, Test)] = tests![failover::the_database_restarted_under_a_running_instance];

fn main() {
    let args = Arguments::from_args();
    let base = std::env::var("HITL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let reachable = instances::probe(&base);
    if let Err(why) = &reachable {
        eprintln!(
            "\nNo PostgreSQL at {base} ({why}): the {} PostgreSQL tests are SKIPPED, not passed. \
             Start one (see .ci/run) or set HITL_TEST_DATABASE_URL.\n",
            TESTS.len()
        );
    }
    let may_restart = std::env::var("HITL_TEST_PG_RESTART").is_ok_and(|v| v == "1");
    let trials = TESTS
        .iter()
        .map(|test| (test, true))
        .chain(RESTARTS.iter().map(|test| (test, may_restart)))
        .map(|(&(name, test), allowed)| {
            let base = base.clone();
            let reachable = reachable.clone();
            // Ignored when listed, too, so runners that list first (cargo nextest) skip them
            // rather than count the runtime "ignored" below as a pass.
            let ignored = reachable.is_err() || !allowed;
            Trial::ignorable_test(name, move || match reachable {
                Err(why) => Ok(Completion::ignored_with(format!(
                    "no PostgreSQL at {base}: {why}"
                ))),
                Ok(()) if !allowed => Ok(Completion::ignored_with(
                    "restarts PostgreSQL; run alone with HITL_TEST_PG_RESTART=1 (.ci/run does)",
                )),
                Ok(()) => run(&base, test).map(|()| Completion::Completed),
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Runs one test on a runtime of its own, in a fresh schema.
fn run(base: &str, test: Test) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("a runtime: {e}")))?;
    let db = runtime.block_on(Db::create(base))?;
    let schema = db.schema.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(180), test(db)).await })
    }));
    // Instances still running in this runtime stop with it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    instances::drop_schema(base, &schema);
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the test took longer than 3 minutes".into()),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
