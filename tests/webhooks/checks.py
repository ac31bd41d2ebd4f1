"""Waiting with deadlines, and the checks the tests share: what a receiver got against what
hitl says it delivered (``GET /api/tasks/{id}/deliveries``), event order, the review loop's
events."""

from __future__ import annotations

import time
from typing import Callable, List, Sequence

from hitl import ENDED, Hitl
from receiver import Receiver, Received, dump


def until(check: Callable[[], bool], timeout: float = 15.0, every: float = 0.05,
          what: str = "condition", receivers: Sequence[Receiver] = ()) -> None:
    """Polls ``check`` until it holds (for what no request signals); fails at the deadline, or
    at once when a receiver got a request that did not verify."""
    deadline = time.monotonic() + timeout
    while True:
        for receiver in receivers:
            receiver.check()
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(every)


def to(receiver: Receiver, deliveries: List[dict]) -> List[dict]:
    return [d for d in deliveries if d["url"] == receiver.url]


def all_delivered(hitl: Hitl, receiver: Receiver, task_id: str,
                  timeout: float = 15.0) -> List[Received]:
    """Waits until hitl has every delivery of the task to ``receiver`` as delivered, then checks
    that the receiver got each of them (same webhook-id, same event), in event order. Returns
    what the receiver got, once per webhook-id."""

    # Deliveries are stored with their events, before anyone is told of them.
    assert to(receiver, hitl.deliveries(task_id)), (
        f"hitl lists no delivery of task {task_id} to {receiver.name} ({receiver.url}): "
        f"its events were not stored as deliveries"
    )

    def done() -> bool:
        mine = to(receiver, hitl.deliveries(task_id))
        return all(d["status"] == "delivered" for d in mine)

    until(done, timeout, what=f"every delivery of {task_id} to {receiver.name} delivered",
          receivers=[receiver])
    mine = to(receiver, hitl.deliveries(task_id))
    got = receiver.delivered(task_id)
    assert [(r.webhook_id, r.seq) for r in got] == [(d["id"], d["event_seq"]) for d in mine], (
        f"{receiver.name} got {dump(got)}\nhitl says it delivered {mine}"
    )
    assert_in_order(got)
    if hitl.task(task_id)["status"] in ENDED:
        assert_tells_the_journal(hitl, got, task_id)
    return got


def assert_tells_the_journal(hitl: Hitl, got: List[Received], task_id: str) -> None:
    """What the receiver got of an ended task is its every status event, as the event stream
    replays it from the journal: same seq, same fields (and the Task besides)."""
    journal = hitl.status_events(task_id)
    assert [e["seq"] for e in journal] == [r.seq for r in got], (
        f"the journal has {[(e['seq'], e['status']) for e in journal]}; delivered {dump(got)}"
    )
    for event, r in zip(journal, got):
        told = {k: v for k, v in r.data.items() if k != "task"}
        assert told == event, f"webhook data {told}\nstream data {event}"


def assert_in_order(events: List[Received]) -> None:
    """Each task's events came with their seq strictly increasing."""
    last: dict = {}
    for r in events:
        assert r.seq > last.get(r.task_id, 0), f"out of order: {dump(events)}"
        last[r.task_id] = r.seq


def assert_once_each(receiver: Receiver, task_id: str | None = None) -> None:
    """Every webhook-id was accepted exactly once (the receiver always answered 2xx)."""
    ids = [r.webhook_id for r in receiver.accepted(task_id)]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert not twice, f"delivered more than once: {twice}\n{dump(receiver.accepted(task_id))}"


def assert_loop_events(events: List[Received]) -> None:
    """The events of ``Hitl.loop``: attempt 1 reviewed, changes requested with a comment,
    attempt 2 approved with a note; each decision's event says so."""
    shown = dump(events)
    statuses = [(r.status, r.data["attempt"]) for r in events]
    assert statuses[0] == ("pending", 1), shown
    assert ("waiting_for_review", 1) in statuses, shown
    assert ("waiting_for_review", 2) in statuses, shown
    assert statuses[-1] == ("completed", 2), shown
    # The first event of attempt 2 is the one the request for changes caused.
    changes = next(r.data for r in events if r.data["attempt"] == 2)
    assert changes["decision"] == "rejected", changes
    assert changes["comment"] == "Shorter, please", changes
    assert "decided_by" in changes, changes
    approval = events[-1].data
    assert approval["decision"] == "approved", approval
    assert approval["comment"] == "Good now", approval
    assert "decided_by" in approval, approval
    assert approval["outcome"] == "approved", approval
    assert approval["final_result"], approval
    assert approval["task"]["status"] == "completed", approval
    for r in events:
        # Events that no decision caused carry no decision.
        if r.data is not changes and r.data is not approval:
            assert r.data.get("decision") is None, r.data
        # The Task is as the event left it, not as it is when the delivery is sent.
        task = r.data["task"]
        assert (task["status"], task["attempt"]) == (r.status, r.data["attempt"]), r.data
    assert_in_order(events)
