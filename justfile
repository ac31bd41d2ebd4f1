# Conveniences; the README's two commands need none of this.

# Run the service with a short processing delay.
run:
    cargo run --release -- --process-delay-ms 1500

# The README's test command.
test:
    cargo test

# Lifecycles per second, in-memory store against the durable one, and the inbox at 100,000
# tasks (see BENCHMARKS.md).
bench:
    cargo run --release --example throughput
    cargo run --release --example inbox

# Everything CI runs.
ci:
    bash .ci/run

fmt:
    cargo fmt --all

# Accept changed fragment snapshots after reviewing them.
snapshots:
    INSTA_UPDATE=always cargo test --test it views
