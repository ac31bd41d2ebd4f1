"""Every test runs against a real hitl of its own: the binary from HITL_BIN, else the repo's
target/debug/hitl, started with --store memory on a free port."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from hitl_client import AsyncClient, Client, Task
from hitl_client.testing import HitlServer

REPO = Path(__file__).resolve().parents[3]
HITL_BIN = os.environ.get("HITL_BIN") or str(REPO / "target" / "debug" / "hitl")


@pytest.fixture
def start_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., HitlServer]]:
    """Start a hitl with extra flags: ``start_server("--auth", "token", ...)``."""
    started: List[HitlServer] = []

    def start(*args: str, env: dict | None = None, **where: str) -> HitlServer:
        server = HitlServer(HITL_BIN, args=args, env=env, **where).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"--- hitl output ({server.url}) ---\n{server.log}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


@pytest.fixture
def server(start_server: Callable[..., HitlServer]) -> HitlServer:
    return start_server()


@pytest.fixture
def client(server: HitlServer) -> Iterator[Client]:
    with Client(server.url, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(server: HitlServer):  # type: ignore[no-untyped-def]
    async with AsyncClient(server.url, timeout=10) as c:
        yield c


def until(check: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> None:
    """Poll ``check`` until it holds (for what the API does not wait on)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def in_thread(fn: Callable[[], object]) -> "Background":
    bg = Background(fn)
    bg.start()
    return bg


class Background(threading.Thread):
    """A thread whose result (or exception) ``result()`` hands back."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.value: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def result(self, timeout: float = 30.0) -> object:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("background work did not finish in time")
        if self.error is not None:
            raise self.error
        return self.value


def ready(client: Client, task_id: str, timeout: float = 10.0) -> Task:
    """Wait until the task is ready for review (or has ended)."""
    return client.wait(task_id, while_=["pending", "running"], timeout=timeout)


def first_waiting(client: Client, timeout: float = 10.0) -> Task:
    """The newest task waiting for review, once there is one (a reviewer's view of the list)."""
    found: List[Task] = []

    def check() -> bool:
        found[:] = client.list(status="waiting_for_review").tasks
        return bool(found)

    until(check, timeout, every=0.05)
    return found[0]


def review_of(client: Client, task_id: str, attempt: int, timeout: float = 15.0) -> Task:
    """Wait until attempt ``attempt`` of the task is up for review (following every status on
    the way, however fast they pass)."""
    deadline = time.monotonic() + timeout
    task = client.get(task_id)
    while not (task.status == "waiting_for_review" and task.attempt == attempt):
        if task.done or task.attempt > attempt:
            raise AssertionError(f"attempt {attempt} never came up for review: {task}")
        left = deadline - time.monotonic()
        task = client.wait(task_id, while_=[task.status], timeout=max(0.0, left))
    return task
