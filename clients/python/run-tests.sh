#!/usr/bin/env bash
# The Python client's tests, against a real hitl: makes .venv here (git-ignored), installs the
# pinned requirements and the client (a real build, not an editable install), runs pytest.
# The server is HITL_BIN, else the repository's target/debug/hitl (`cargo build` first).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

export HITL_BIN="${HITL_BIN:-$repo/target/debug/hitl}"
[ -x "$HITL_BIN" ] || { echo "no hitl binary at $HITL_BIN: run \`cargo build\` first, or set HITL_BIN"; exit 1; }

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation --force-reinstall .
# Build leftovers stay out of the tree.
rm -rf build

export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
