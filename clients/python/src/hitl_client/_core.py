"""What the sync and async clients share: building requests, reading answers, the wait loop's
bookkeeping. No I/O happens here."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import httpx

from .errors import HitlError, Unavailable, WaitTimeout, error_for
from .types import Task

DEFAULT_TIMEOUT = 30.0
"""Seconds a request may take (long waits and claims get their own, longer, timeouts)."""

MAX_WAIT_SECS = 120
"""The longest single ``?wait=`` the server takes."""

RETRY_MIN = 0.2
RETRY_MAX = 5.0

JSON = Any
Statuses = Union[str, Iterable[str], None]


@dataclass
class Request:
    method: str
    path: str
    params: Optional[Dict[str, Any]] = None
    json: Any = None
    headers: Dict[str, str] = field(default_factory=dict)
    timeout: Optional[float] = None


def headers(token: Optional[str], user_agent: str) -> Dict[str, str]:
    out = {"Accept": "application/json", "User-Agent": user_agent}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def drop_none(**fields: Any) -> Dict[str, Any]:
    """The fields that were given: the server is sent only what the caller set."""
    return {k: v for k, v in fields.items() if v is not None}


def input_for(output: str) -> str:
    """An input for an outside task that names none: the output's first line that says
    something, cut to 200 characters (the server requires an input that is not blank)."""
    for line in output.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= 200 else line[:199] + "…"
    return "(an output for review)"


def statuses(value: Statuses) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        return [s for s in (p.strip() for p in value.split(",")) if s]
    return [str(s) for s in value]


def submit(
    *,
    input: Optional[str],
    output: Optional[str] = None,
    processor: Optional[str] = None,
    max_attempts: Optional[int] = None,
    metadata: Optional[Mapping[str, Any]] = None,
    idempotency_key: Optional[str] = None,
    review_timeout_secs: Optional[int] = None,
    review_timeout_policy: Optional[str] = None,
    callback_url: Optional[str] = None,
    assignees: Optional[Iterable[str]] = None,
) -> Request:
    body = drop_none(
        input=input,
        output=output,
        processor=processor,
        max_attempts=max_attempts,
        metadata=dict(metadata) if metadata is not None else None,
        review_timeout_secs=review_timeout_secs,
        review_timeout_policy=review_timeout_policy,
        callback_url=callback_url,
        assignees=list(assignees) if assignees is not None else None,
    )
    hdrs = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Request("POST", "/api/tasks", json=body, headers=hdrs)


def task_path(task_id: str, *rest: str) -> str:
    if not task_id or "/" in task_id:
        raise ValueError(f"not a task id: {task_id!r}")
    return "/".join(("/api/tasks", task_id) + rest)


def claim_path(token: str, action: str) -> str:
    return f"/api/claims/{token}/{action}"


def list_params(
    status: Optional[str], q: Optional[str], page: Optional[int], per_page: Optional[int], **more: Any
) -> Dict[str, Any]:
    return drop_none(status=status, q=q, page=page, per_page=per_page, **more)


def decide(
    task_id: str,
    decision: str,
    attempt: Optional[int],
    comment: Optional[str],
    output: Optional[str],
    output_sha256: Optional[str] = None,
) -> Request:
    body = drop_none(
        decision=decision, attempt=attempt, comment=comment, output=output, output_sha256=output_sha256
    )
    return Request("POST", task_path(task_id, "feedback"), json=body)


def read(resp: httpx.Response) -> JSON:
    """The answer's JSON, or raise the matching :class:`HitlError`."""
    if resp.status_code >= 400:
        try:
            body = resp.json()
        except ValueError:
            body = None
        raise error_for(resp.status_code, body, resp.text, resp.headers.get("Retry-After"))
    if resp.status_code in (202, 204) or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        raise HitlError(resp.status_code, "not_json", f"the answer is not JSON: {exc}") from exc


def retryable(exc: BaseException) -> bool:
    """Worth trying again after a short pause: the connection failed or the server said 503."""
    return isinstance(exc, (httpx.TransportError, Unavailable))


def backoff(tries: int, exc: Optional[BaseException] = None) -> float:
    pause: float = min(RETRY_MAX, RETRY_MIN * 2.0 ** max(0, tries - 1))
    hinted: object = getattr(exc, "retry_after", None)
    if isinstance(hinted, (int, float)) and hinted > 0:
        pause = min(RETRY_MAX, max(pause, float(hinted)))
    return pause


class Waiter:
    """The bookkeeping of :meth:`Client.wait`: the next bounded ``?wait=`` to send, and what an
    answer means. Both clients drive it, each with its own I/O."""

    def __init__(
        self,
        task_id: str,
        while_: Statuses,
        timeout: Optional[float],
        max_wait: int = MAX_WAIT_SECS,
    ) -> None:
        self.task_id = task_id
        self.while_ = statuses(while_)
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self.max_wait = max(0, min(MAX_WAIT_SECS, int(max_wait)))
        self.last: Optional[Task] = None
        self.tries = 0

    def remaining(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def request(self) -> Request:
        left = self.remaining()
        secs = self.max_wait if left is None else max(0, min(self.max_wait, math.ceil(left)))
        params: Dict[str, Any] = {"wait": secs}
        if self.while_:
            params["while"] = ",".join(self.while_)
        # The answer may take `secs`; leave room for the network on top.
        return Request("GET", task_path(self.task_id), params=params, timeout=secs + 15.0)

    def answer(self, resp: httpx.Response) -> Tuple[Optional[Task], float]:
        """The task if the wait is over, else ``(None, pause)``: how long to sleep before the
        next request (0 when the server held the request, as a bounded wait does)."""
        task = Task.from_json(read(resp))
        self.last = task
        self.tries = 0
        if self.while_ is None:
            # The server waited while the task kept the status it had: from now on, name it.
            self.while_ = [task.status]
            if resp.headers.get("Hitl-Wait", "").lower() == "changed":
                return task, 0.0
        if task.status not in self.while_:
            return task, 0.0
        self.check_deadline()
        held = resp.headers.get("Hitl-Wait") is not None
        # A server that does not know `?wait=` answers at once: poll it gently instead.
        return None, 0.0 if held else self.pause(0.5)

    def failed(self, exc: BaseException) -> float:
        """A request failed: the pause before trying again, or raise if it is not worth it."""
        if not retryable(exc):
            raise exc
        self.tries += 1
        left = self.remaining()
        if left is not None and left <= 0:
            raise WaitTimeout(self.task_id, self.last, self.timeout) from exc
        return self.pause(backoff(self.tries, exc))

    def pause(self, secs: float) -> float:
        left = self.remaining()
        return secs if left is None else max(0.0, min(secs, left))

    def check_deadline(self) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise WaitTimeout(self.task_id, self.last, self.timeout)
