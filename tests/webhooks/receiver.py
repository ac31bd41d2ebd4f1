"""A webhook receiver in the test process: a threaded HTTP server on 127.0.0.1 that checks every
request's signature with the official ``standardwebhooks`` package (never hitl's own code),
records what came, and answers as the test says: a status code (with a body and headers), no
answer at all (``hang``), bytes that are not HTTP (``garbage``), a closed connection
(``close``); or it is ``down()``: nothing listens on its port until ``up()``.

Each request is recorded *before* it is answered, so the order of ``requests`` is the order in
which hitl sent them (hitl sends a task's next delivery only after this one's 2xx came back).
A request whose signature does not verify is answered 400 and kept in ``failures``; every wait
fails at once when there is one.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional

from standardwebhooks import Webhook

#: The longest a hanging answer is held (hitl cuts it well before, at --webhook-timeout-secs).
HANG_AT_MOST = 60.0


@dataclass(frozen=True)
class Answer:
    """How the receiver answers: ``kind`` is ``status``, ``hang``, ``garbage`` or ``close``."""

    kind: str = "status"
    code: int = 200
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (a slow receiver).
    delay: float = 0.0

    @property
    def accepts(self) -> bool:
        return self.kind == "status" and 200 <= self.code < 300


OK = Answer()


@dataclass
class Received:
    """One request, its signature verified."""

    webhook_id: str
    timestamp: str
    path: str
    payload: dict
    headers: Dict[str, str]
    answer: Answer
    at: float
    #: For a hanging answer: when hitl closed the connection (None while it is open).
    closed_at: Optional[float] = None

    @property
    def accepted(self) -> bool:
        return self.answer.accepts

    @property
    def data(self) -> dict:
        return self.payload["data"]

    @property
    def task_id(self) -> str:
        return self.data["task_id"]

    @property
    def seq(self) -> int:
        return self.data["seq"]

    @property
    def status(self) -> str:
        return self.data["status"]


class Receiver:
    def __init__(self, secret: str, name: str = "receiver", port: int = 0) -> None:
        self.name = name
        self.verifier = Webhook(secret)
        self.answer: Answer = OK
        self.script: Optional[Callable[[int], Answer]] = None
        self._count = 0
        self.requests: List[Received] = []
        self.failures: List[str] = []
        self.changed = threading.Condition()
        self._released = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._open: set = set()
        self.port = port
        self.up()

    # -- where it is ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> "Receiver":
        """Listen (again) on the receiver's port."""
        if self._server is not None:
            return self
        deadline = time.monotonic() + 10
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError as error:
                # The port was ours a moment ago; wait for the kernel to let it go.
                if error.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"{self.name}-accept",
        ).start()
        return self

    def down(self) -> "Receiver":
        """Stop listening (a connection is refused) and drop every open connection."""
        server, self._server = self._server, None
        if server is None:
            return self
        server.shutdown()
        server.server_close()
        with self.changed:
            open_now = list(self._open)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return self

    def close(self) -> None:
        self._released.set()
        self.down()

    def answer_with(self, answer: Answer) -> "Receiver":
        self.answer = answer
        return self

    def answer_by(self, script: Callable[[int], Answer]) -> "Receiver":
        """Answers request number n (from 0) with ``script(n)``."""
        self.script = script
        return self

    def _next_answer(self) -> Answer:
        with self.changed:
            n, self._count = self._count, self._count + 1
            return self.script(n) if self.script is not None else self.answer

    def answer_status(self, code: int, body: bytes = b"", **headers: str) -> "Receiver":
        return self.answer_with(Answer("status", code, body, dict(headers)))

    # -- what came --------------------------------------------------------------------------

    def check(self) -> None:
        """Fails if any request came unsigned or wrongly signed."""
        with self.changed:
            if self.failures:
                raise AssertionError(f"{self.name}: requests that did not verify: {self.failures}")

    def snapshot(self) -> List[Received]:
        with self.changed:
            return list(self.requests)

    def accepted(self, task_id: Optional[str] = None) -> List[Received]:
        """The requests answered with a 2xx, in arrival order, duplicates included."""
        return [
            r for r in self.snapshot()
            if r.accepted and (task_id is None or r.task_id == task_id)
        ]

    def delivered(self, task_id: Optional[str] = None) -> List[Received]:
        """The first 2xx-answered request of each webhook-id (deliveries after dedupe)."""
        seen: set = set()
        out = []
        for r in self.accepted(task_id):
            if r.webhook_id not in seen:
                seen.add(r.webhook_id)
                out.append(r)
        return out

    def seen_ids(self, task_id: Optional[str] = None) -> List[str]:
        return [r.webhook_id for r in self.snapshot() if task_id is None or r.task_id == task_id]

    def wait_for(
        self, holds: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
    ) -> None:
        """Waits, woken by every request, until ``holds()``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                if self.failures:
                    raise AssertionError(
                        f"{self.name}: requests that did not verify: {self.failures}"
                    )
                if holds():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name}: {what} not met within {timeout} s; received "
                        f"{[(r.webhook_id, r.task_id, r.seq, r.status, r.answer.kind, r.answer.code) for r in self.requests]}"
                    )
                self.changed.wait(min(left, 0.25))

    # -- the handler's side -----------------------------------------------------------------

    def _record(self, received: Optional[Received], failure: Optional[str]) -> None:
        with self.changed:
            if received is not None:
                self.requests.append(received)
            if failure is not None:
                self.failures.append(failure)
            self.changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    receiver: Receiver

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self.receiver.changed:
            self.receiver._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self.receiver.changed:
            self.receiver._open.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no pooled connection outlives a down().
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        receiver = self.server.receiver
        answer = receiver._next_answer()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        received, failure = None, None
        try:
            payload = receiver.verifier.verify(body, headers)
        except Exception as error:  # any way of failing verification is a test failure
            failure = f"{self.path} {headers.get('webhook-id')}: {type(error).__name__}: {error}"
            payload = None
        if payload is not None:
            problems = _shape_problems(payload, headers)
            if problems:
                failure = f"{headers.get('webhook-id')}: {problems}: {body[:300]!r}"
            else:
                received = Received(
                    webhook_id=headers["webhook-id"],
                    timestamp=headers["webhook-timestamp"],
                    path=self.path,
                    payload=payload,
                    headers=headers,
                    answer=answer,
                    at=time.monotonic(),
                )
        receiver._record(received, failure)
        if failure is not None:
            self._status(400, b"signature or body refused")
            return
        assert received is not None
        if answer.kind == "hang":
            self._hang(received)
        elif answer.kind == "garbage":
            self.wfile.write(b"\x00\x01 this is not HTTP at all\r\n\r\n")
            self.close_connection = True
        elif answer.kind == "close":
            self.close_connection = True
        else:
            if answer.delay:
                time.sleep(answer.delay)
            self._status(answer.code, answer.body, answer.headers)

    def _status(self, code: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
        try:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            if body:
                self.wfile.write(body)
        except OSError:
            pass  # hitl stopped reading (it reads no body): nothing to do

    def _hang(self, received: Received) -> None:
        """Holds the request unanswered until hitl closes the connection (noting when), the
        receiver is released, or HANG_AT_MOST passes."""
        receiver = self.server.receiver
        deadline = time.monotonic() + HANG_AT_MOST
        while time.monotonic() < deadline and not receiver._released.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    with receiver.changed:
                        received.closed_at = time.monotonic()
                        receiver.changed.notify_all()
                    break
        self.close_connection = True


def _shape_problems(payload: object, headers: Dict[str, str]) -> str:
    """What is wrong with a verified body's shape or headers ('' if nothing)."""
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    if payload.get("type") != "task.status":
        return f"type is {payload.get('type')!r}"
    if not isinstance(payload.get("timestamp"), str):
        return "no timestamp"
    data = payload.get("data")
    if not isinstance(data, dict):
        return "no data object"
    for key in ("seq", "task_id", "status", "attempt", "task"):
        if key not in data:
            return f"data has no {key}"
    if not isinstance(data["task"], dict) or data["task"].get("id") != data["task_id"]:
        return "data.task is not the event's task"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"content-type {headers.get('content-type')!r}"
    return ""


def dump(requests: List[Received]) -> str:
    return json.dumps(
        [(r.webhook_id, r.task_id[-6:], r.seq, r.status, r.answer.kind, r.answer.code)
         for r in requests]
    )
