#!/usr/bin/env bash
# The OpenAPI document, checked from outside with tools that are not ours: it is a valid
# OpenAPI 3.1 document (openapi-spec-validator), and a real hitl answers as it says
# (schemathesis: no 5xx; every status, content type, header and body as documented).
#
#   tests/openapi/run.sh        from the repository root, after `cargo build`
#
# HITL_BIN names the binary (default target/debug/hitl); OPENAPI_VENV the virtual environment
# (default tests/openapi/.venv); OPENAPI_SEED replays a schemathesis run; OPENAPI_EXAMPLES
# sets its examples per operation (default 25).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bin="${HITL_BIN:-target/debug/hitl}"
venv="${OPENAPI_VENV:-$here/.venv}"
examples="${OPENAPI_EXAMPLES:-25}"
started=$SECONDS

if [ ! -x "$bin" ]; then
    echo "no hitl binary at $bin: run cargo build first, or set HITL_BIN" >&2
    exit 1
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
py="$venv/bin/python"

work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" --store memory --addr 127.0.0.1:0 --process-delay-ms 0 >"$work/hitl.log" 2>&1 &
pid=$!
url=""
for _ in $(seq 100); do
    url="$(sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$work/hitl.log" | head -n 1)"
    [ -n "$url" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "hitl did not start:" >&2
        cat "$work/hitl.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "hitl printed no 'listening on' line within 10 s" >&2
    exit 1
fi
echo "hitl at $url"

# The document, as served; then is it valid OpenAPI 3.1?
"$py" - "$url" "$work/openapi.json" <<'PY'
import json, sys, urllib.request

url, out = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=10) as answer:
    assert answer.status == 200, answer.status
    assert answer.headers.get_content_type() == "application/json"
    doc = json.load(answer)
assert doc["openapi"].startswith("3.1."), doc["openapi"]
with open(out, "w") as f:
    json.dump(doc, f)
print(f"openapi {doc['openapi']}: {sum(len(v) for v in doc['paths'].values())} operations")
PY
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

# The event stream never ends, so schemathesis leaves it out; its answers are checked here:
# a stream opens as text/event-stream, and an unknown task is a documented 404.
"$py" - "$url" "$work/openapi.json" <<'PY'
import json, sys, urllib.error, urllib.request

url, path = sys.argv[1], sys.argv[2]
doc = json.load(open(path))
answers = doc["paths"]["/api/events"]["get"]["responses"]
with urllib.request.urlopen(f"{url}/api/events", timeout=10) as stream:
    assert stream.status == 200 and "200" in answers
    media = stream.headers.get_content_type()
    assert media in answers["200"]["content"], media
try:
    urllib.request.urlopen(f"{url}/api/events?task=0192f000-0000-7000-8000-000000000000", timeout=10)
    raise AssertionError("a stream of an unknown task opened")
except urllib.error.HTTPError as refused:
    assert refused.code == 404 and "404" in answers, refused.code
    assert refused.headers.get_content_type() == "application/json"
    assert json.load(refused)["error"]["code"] == "not_found"
print("GET /api/events: as documented")
PY

# Waits are kept short by hooks.py; the server's accepted ranges stay as they are. Run in the
# scratch folder, so schemathesis' caches go with it.
cd "$work"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" "$venv/bin/st" run "$work/openapi.json" \
    --url "$url" \
    --exclude-path /api/events \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --request-timeout 10 \
    ${OPENAPI_SEED:+--seed "$OPENAPI_SEED"}

echo "tests/openapi: done in $((SECONDS - started)) s"
