#!/usr/bin/env bash
# The webhook tests, against a real hitl: receivers in the test process check every signature
# with PyPI's standardwebhooks (never hitl's own code). Makes .venv here (git-ignored), installs
# the pinned requirements, runs pytest; arguments go to pytest (`-k redeliver`, `-x`, ...).
#
#   tests/webhooks/run.sh        after `cargo build`
#
# The server is HITL_BIN, else the repository's target/debug/hitl. The PostgreSQL test uses
# HITL_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test, and psql; it is
# skipped, saying why, where none answers (under CI=true it fails instead).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

export HITL_BIN="${HITL_BIN:-$repo/target/debug/hitl}"
[ -x "$HITL_BIN" ] || { echo "no hitl binary at $HITL_BIN: run \`cargo build\` first, or set HITL_BIN"; exit 1; }

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
.venv/bin/python -m pip install --quiet -r requirements.txt

export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
