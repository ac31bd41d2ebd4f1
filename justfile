# Conveniences; the README's two commands need none of this.

# Run the service with a short processing delay.
run:
    cargo run --release -- --process-delay-ms 1500

# The README's test command.
test:
    cargo test

# Everything in BENCHMARKS.md: lifecycles per second in process, the inbox at 100,000 tasks,
# memory per stored task, hitl against the floor, and the load generator on both stores.
bench:
    cargo run --release --example throughput
    cargo run --release --example inbox
    cargo run --release --example task_memory
    just bench-floor
    just bench-load

# The load generator against a separate server, memory then sqlite, checking every event
# (see BENCHMARKS.md, "The load generator").
bench-load:
    cargo build --release --example hitl-bench --bin hitl
    target/release/examples/hitl-bench --spawn target/release/hitl --store memory --lifecycles 2000 --concurrency 64 --busy-watchers 100 --idle-watchers 1000 --runs 3
    target/release/examples/hitl-bench --spawn target/release/hitl --store sqlite --lifecycles 2000 --concurrency 64 --busy-watchers 100 --idle-watchers 1000 --runs 3

# The floor: hitl (memory) and bare axum of the same shape (examples/floor.rs) taking turns,
# run by run, at both sizes of BENCHMARKS.md ("The floor: bare axum on the same machine").
bench-floor:
    cargo build --release --example hitl-bench --example floor --bin hitl
    target/release/examples/hitl-bench --spawn target/release/hitl --store memory --floor target/release/examples/floor --lifecycles 2000 --concurrency 64 --busy-watchers 100 --idle-watchers 1000 --runs 3
    target/release/examples/hitl-bench --spawn target/release/hitl --store memory --floor target/release/examples/floor --lifecycles 2000 --concurrency 64 --busy-watchers 1000 --idle-watchers 10000 --runs 3

# Outside work (issue 16): the simulated loop, an agent handing in its attempts, and 16 workers
# claiming every attempt, in turn, on both stores; then 10,000 bounded waits beside 10,000 idle
# streams (BENCHMARKS.md, "Outside work").
bench-outside:
    cargo build --release --example hitl-bench --example wait_memory --bin hitl
    for store in memory sqlite; do for flow in simulated outside workers; do target/release/examples/hitl-bench --spawn target/release/hitl --store $store --flow $flow --lifecycles 2000 --concurrency 64 --runs 3; done; done
    target/release/examples/hitl-bench --spawn target/release/hitl --store memory --lifecycles 500 --concurrency 32 --idle-watchers 10000 --runs 3
    target/release/examples/hitl-bench --spawn target/release/hitl --store memory --lifecycles 500 --concurrency 32 --idle-waiters 10000 --runs 3
    target/release/examples/wait_memory

# Webhooks (issue 17): the spawned hitl (SQLite) without a webhook receiver, then with one in the
# generator answering 200 at once, taking turns run by run; event -> delivery delays, every
# delivery counted (BENCHMARKS.md, "Webhooks").
bench-webhooks:
    cargo build --release --example hitl-bench --bin hitl
    target/release/examples/hitl-bench --spawn target/release/hitl --store sqlite --webhook-turns --lifecycles 2000 --concurrency 64 --runs 3

# Everything CI runs.
ci:
    bash .ci/run

fmt:
    cargo fmt --all

# Accept changed fragment snapshots after reviewing them.
snapshots:
    INSTA_UPDATE=always cargo test --test it views
