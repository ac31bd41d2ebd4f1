"""Where deliveries end: given up at --webhook-max-age (and the next of the task goes on), left
unsent beyond --webhook-max-pending (and sent when redelivered); a receiver that fails now and
then still gets every event in order; a hanging receiver does not hold up a shutdown."""

from __future__ import annotations

import time

from checks import all_delivered, assert_in_order, assert_loop_events, to, until
from receiver import Answer, OK


def test_a_delivery_past_its_max_age_is_given_up_and_the_next_goes_on(start_hitl, receiver):
    receiver.answer_status(503)
    hitl = start_hitl(receiver, "--webhook-max-age", "1s")
    task = hitl.submit("Told to a receiver that fails for longer than the max age")
    hitl.reach(task["id"], "waiting_for_review", 1)

    until(lambda: to(receiver, hitl.deliveries(task["id"]))[0]["status"] == "failed",
          what="the first delivery given up", receivers=[receiver])
    receiver.answer_with(OK)
    first, *later = to(receiver, hitl.deliveries(task["id"]))
    assert first["last_status_code"] == 503 and "webhook-max-age" in first["last_error"], first
    assert first["finished_at"] and first["next_try_at"] is None, first

    # The later ones were held behind it until it was given up; now they arrive, in order.
    def sent() -> bool:
        return all(d["status"] != "pending" for d in to(receiver, hitl.deliveries(task["id"])))

    until(sent, what="the later deliveries tried", receivers=[receiver])
    got = receiver.delivered(task["id"])
    assert_in_order(got)
    assert first["id"] not in {r.webhook_id for r in got}
    assert hitl.metric("hitl_webhook_deliveries_total", outcome="failed") >= 1

    # Given up, it can still be redelivered.
    assert hitl.redeliver(first["id"]).status_code == 200
    receiver.wait_for(lambda: any(r.webhook_id == first["id"] for r in receiver.accepted()),
                      what="the redelivery of the given-up delivery")


def test_deliveries_beyond_max_pending_are_failed_not_lost(start_hitl, receiver):
    receiver.down()
    hitl = start_hitl(receiver, "--webhook-max-pending", "2")
    task = hitl.submit("More events than the outbox may hold")
    hitl.reach(task["id"], "waiting_for_review", 1)

    mine = to(receiver, hitl.deliveries(task["id"]))
    assert len(mine) == 3, mine  # pending, running, waiting_for_review
    assert [d["status"] for d in mine] == ["pending", "pending", "failed"], mine
    assert "webhook-max-pending" in mine[2]["last_error"], mine[2]

    receiver.up()
    until(lambda: [d["status"] for d in to(receiver, hitl.deliveries(task["id"]))]
          == ["delivered", "delivered", "failed"], what="the two pending ones delivered",
          receivers=[receiver])
    assert hitl.redeliver(mine[2]["id"]).status_code == 200
    events = all_delivered(hitl, receiver, task["id"])
    assert [r.webhook_id for r in events] == [d["id"] for d in mine]


def test_a_receiver_failing_now_and_then_gets_every_event_in_order(start_hitl, receiver):
    """Every third request is refused (a closed connection, 503, in turn): each task's events
    still arrive in order, after dedupe once per webhook-id."""
    receiver.answer_by(
        lambda n: OK if n % 3 else (Answer("status", 503) if n % 2 else Answer("close"))
    )
    hitl = start_hitl(receiver, retry_min_ms=50)
    ids = [hitl.loop(f"Task {n}, told to a flaky receiver") for n in range(8)]
    for task_id in ids:
        assert_loop_events(all_delivered(hitl, receiver, task_id, timeout=30))
    assert any(not r.accepted for r in receiver.snapshot()), "the receiver never failed"


def test_a_hanging_receiver_does_not_hold_up_a_shutdown(start_hitl, receiver, tmp_path):
    receiver.answer_with(Answer("hang"))
    data = tmp_path / "data"
    hitl = start_hitl(receiver, "--webhook-timeout-secs", "60", data_dir=data)
    task = hitl.submit("Told to a receiver that never answers")
    receiver.wait_for(lambda: receiver.seen_ids(task["id"]), what="a try")
    hanging = receiver.seen_ids(task["id"])[0]

    proc = hitl.proc
    assert proc is not None
    started = time.monotonic()
    proc.terminate()
    assert proc.wait(15) == 0, hitl.log
    assert time.monotonic() - started < 5, "the shutdown waited for the receiver"
    hitl.stop()

    receiver.answer_with(OK)
    again = start_hitl(receiver, data_dir=data)
    receiver.wait_for(lambda: any(r.webhook_id == hanging for r in receiver.accepted()),
                      what="the interrupted delivery after the restart")
    again.reach(task["id"], "waiting_for_review", 1)
    assert all_delivered(again, receiver, task["id"])[0].webhook_id == hanging


def test_retries_back_off_from_retry_min_ms_doubling(start_hitl, receiver):
    """The first retry comes --webhook-retry-min-ms after the failure, each next one twice as
    late, each drawn between 100 % and 120 % of its wait (never sooner)."""
    least = 0.25
    receiver.answer_status(503)
    hitl = start_hitl(receiver, retry_min_ms=int(least * 1000))
    task = hitl.submit("Told to a receiver that keeps failing")
    receiver.wait_for(lambda: len(receiver.seen_ids(task["id"])) >= 4, timeout=20,
                      what="four tries")
    tries = [r for r in receiver.snapshot() if r.task_id == task["id"]][:4]
    assert len({r.webhook_id for r in tries}) == 1, "a retry came under another id"
    gaps = [b.at - a.at for a, b in zip(tries, tries[1:])]
    for n, gap in enumerate(gaps):
        wait = least * 2 ** n
        assert wait - 0.02 <= gap <= 1.2 * wait + 1.0, f"retry {n + 1} after {gap:.3f} s: {gaps}"
