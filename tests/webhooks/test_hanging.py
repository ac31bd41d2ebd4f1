"""A receiver that never answers is cut at --webhook-timeout-secs and slows nothing: the loop
runs as fast as without it, and other receivers get every event."""

from __future__ import annotations

import time

from checks import all_delivered, assert_loop_events, to, until
from receiver import Answer

#: More tasks than hitl sends to one receiver at once (16), so every slot of the hanging one is
#: taken while the loop runs.
TASKS = 20


def loops(hitl, n: int) -> tuple[list, float]:
    started = time.monotonic()
    ids = [hitl.loop(f"Task {i}: throughput") for i in range(n)]
    return ids, time.monotonic() - started


def test_a_hanging_receiver_is_cut_at_the_timeout_and_slows_nothing(start_hitl, receivers):
    good_alone, good, hanging = receivers("good-alone"), receivers("good"), receivers("hanging")
    hanging.answer_with(Answer("hang"))

    alone = start_hitl(good_alone, "--webhook-timeout-secs", "1")
    _, baseline = loops(alone, TASKS)
    alone.stop()

    hitl = start_hitl(good, hanging, "--webhook-timeout-secs", "1")
    ids, took = loops(hitl, TASKS)
    print(f"{TASKS} loops: {took:.2f} s with a hanging receiver, {baseline:.2f} s without")
    assert took < 2 * baseline + 1.0, f"{TASKS} loops: {took:.2f} s, {baseline:.2f} s without"

    for task_id in ids:
        assert_loop_events(all_delivered(hitl, good, task_id, timeout=20))

    # Each task's first delivery to the hanging receiver was tried and cut; the rest wait.
    def cut() -> bool:
        return all(
            to(hanging, hitl.deliveries(task_id))[0]["last_error"] for task_id in ids
        )

    until(cut, timeout=20, what="every task's first delivery to the hanging receiver cut")
    for task_id in ids:
        mine = to(hanging, hitl.deliveries(task_id))
        assert len(mine) == 6 and all(d["status"] == "pending" for d in mine), mine
        first = mine[0]
        assert first["attempts"] >= 1 and first["last_status_code"] is None, first
        assert "webhook-timeout-secs" in first["last_error"], first
    # hitl closed each hanging request about a second after sending it.
    hanging.wait_for(lambda: any(r.closed_at for r in hanging.requests), what="a cut try")
    held = [r.closed_at - r.at for r in hanging.snapshot() if r.closed_at]
    assert held and all(0.8 <= s <= 3.0 for s in held), held
    assert {r.seq for r in hanging.snapshot()} <= {
        to(hanging, hitl.deliveries(task_id))[0]["event_seq"] for task_id in ids
    }, "a later delivery went out while an earlier one of its task was pending"

    # The outbox's gauges (read every few seconds) show what waits.
    until(lambda: hitl.metric("hitl_webhook_pending") >= TASKS * 6, timeout=15,
          what="hitl_webhook_pending")
    assert hitl.metric("hitl_webhook_oldest_seconds") > 0
    assert hitl.metric("hitl_webhook_deliveries_total", outcome="retried") >= TASKS
