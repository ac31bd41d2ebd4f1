#!/usr/bin/env bash
# hitl end to end: builds hitl, serves it on a free port with a short processing delay, runs the
# browser suite in Debian's Chromium against it, stops it, and ends with "N passed, N failed".
# Screenshots go to target/e2e/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

cargo build --locked --quiet
[ -d tests/e2e/node_modules ] || (cd tests/e2e && npm ci --no-audit --no-fund --silent)
mkdir -p target/e2e

log=$(mktemp)
data=$(mktemp -d)
target/debug/hitl --addr 127.0.0.1:0 --store memory --process-delay-ms 300 >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$log" "$data"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$log" && break
  sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$log" | head -1)
[ -n "$url" ] || { echo "hitl did not start:"; cat "$log"; exit 1; }

out=$(mktemp)
status=0
# --test-force-exit: a test that fails half-way may leave a server it started (lib.mjs kills
# those on exit); the file's process must end and report rather than wait on it.
(cd tests/e2e && HITL_URL="$url" HITL_BIN="$root/target/debug/hitl" HITL_SHOTS="$root/target/e2e" \
  node --test --test-concurrency=1 --test-timeout=120000 --test-force-exit \
    --test-reporter=spec ./*.test.mjs) | tee "$out" || status=$?
passed=$(sed -n 's/^ℹ pass //p' "$out" | tail -1)
failed=$(sed -n 's/^ℹ fail //p' "$out" | tail -1)
rm -f "$out"
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
