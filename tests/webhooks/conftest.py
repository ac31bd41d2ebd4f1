"""Fixtures of the webhook tests: a signing secret, receivers in this process (each checking
every signature with PyPI's standardwebhooks), and real hitl processes (the binary from
HITL_BIN, else the repository's target/debug/hitl), each on its own --data-dir. A failing test
prints the output of every hitl it started and what each receiver got."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from hitl import Hitl
from receiver import Receiver, dump

REPO = Path(__file__).resolve().parents[2]
HITL_BIN = os.environ.get("HITL_BIN") or str(REPO / "target" / "debug" / "hitl")


@pytest.fixture(scope="session")
def hitl_bin() -> str:
    if not os.access(HITL_BIN, os.X_OK):
        pytest.fail(f"no hitl binary at {HITL_BIN}: run `cargo build` first, or set HITL_BIN")
    return HITL_BIN


@pytest.fixture
def secret() -> str:
    """A Standard Webhooks secret made here, not by hitl: whsec_ and 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def receivers(request: pytest.FixtureRequest, secret: str) -> Iterator[Callable[..., Receiver]]:
    """``receivers("name")`` starts a receiver that verifies with the test's secret."""
    made: List[Receiver] = []

    def make(name: str = "receiver") -> Receiver:
        receiver = Receiver(secret, name=name)
        made.append(receiver)
        return receiver

    yield make
    failed = _failed(request)
    for receiver in made:
        receiver.close()
        if failed:
            print(f"--- {receiver.name} ({receiver.url}) received ---\n{dump(receiver.snapshot())}")
    # Any request that did not verify fails the test, even one nobody waited for.
    for receiver in made:
        receiver.check()


@pytest.fixture
def receiver(receivers: Callable[..., Receiver]) -> Receiver:
    return receivers("receiver")


@pytest.fixture
def start_hitl(
    request: pytest.FixtureRequest, hitl_bin: str, tmp_path: Path, secret: str
) -> Iterator[Callable[..., Hitl]]:
    """``start_hitl(receiver, "--flag", ...)``: a hitl on its own SQLite --data-dir that sends
    every status event to the receivers given, signed with the test's secret. ``data_dir``
    names the directory (to start again on the same one); ``store_args`` replaces the
    ``--data-dir`` flags (for PostgreSQL)."""
    started: List[Hitl] = []

    def start(*args: object, data_dir: Path | None = None,
              store_args: List[str] | None = None, retry_min_ms: int = 200) -> Hitl:
        flags: List[str] = []
        for arg in args:
            if isinstance(arg, Receiver):
                flags += ["--webhook-url", arg.url]
            else:
                flags.append(str(arg))
        if store_args is None:
            where = data_dir or tmp_path / f"hitl-{len(started)}"
            store_args = ["--data-dir", str(where)]
        flags = [*store_args, "--webhook-secret", secret,
                 "--webhook-retry-min-ms", str(retry_min_ms), *flags]
        hitl = Hitl(hitl_bin, flags)
        started.append(hitl)
        return hitl.start()

    yield start
    for hitl in started:
        hitl.stop()
    if _failed(request):
        for hitl in started:
            print(f"--- hitl output ---\n{hitl.log}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed

