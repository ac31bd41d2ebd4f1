"""Schemathesis hooks for hitl: keep the waits short.

`POST /api/claims` waits up to `wait_secs` (default 30) for work and `GET /api/tasks/{id}`
up to `wait` seconds for a change; both accept up to 120. The server's ranges stay as they
are; only the values this run sends are clamped, right before each call, so a run takes
seconds rather than hours.
"""

import schemathesis

# The longest wait this run lets a request ask for, in seconds.
MAX_WAIT = 1


def _is_long_wait(value):
    """A wait the server would honour for longer than MAX_WAIT seconds."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > MAX_WAIT
    if isinstance(value, str):
        text = value.strip()
        return text.isdigit() and int(text) > MAX_WAIT
    return False


@schemathesis.hook
def before_call(ctx, case, kwargs):
    path = case.operation.path
    method = case.method.upper()
    if method == "POST" and path == "/api/claims":
        body = case.body
        if isinstance(body, dict):
            # Left out or null, it is 30 s.
            if body.get("wait_secs") is None or _is_long_wait(body["wait_secs"]):
                body["wait_secs"] = 0
        elif isinstance(body, list):
            # serde reads a struct from an array too: `[wait_secs, lease_secs]`.
            if body and (body[0] is None or _is_long_wait(body[0])):
                body[0] = 0
        elif not isinstance(body, (str, int, float, bool)) and body is not None:
            # No body at all (schemathesis' NOT_SET): the server would wait 30 s.
            case.body = {"wait_secs": 0}
            case.media_type = "application/json"
    elif method == "GET" and path == "/api/tasks/{id}":
        query = case.query
        if isinstance(query, dict) and _is_long_wait(query.get("wait")):
            query["wait"] = str(MAX_WAIT)
