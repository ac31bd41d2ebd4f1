"""Receivers that are down, failing or misbehaving, and hitl killed mid-delivery: deliveries wait
(pending, with the reason), hitl keeps working, and once the receiver is back everything
arrives, in order per task, under the webhook-id it had from the start."""

from __future__ import annotations

import pytest

from checks import all_delivered, assert_loop_events, to, until
from receiver import Answer, OK


def test_a_receiver_down_for_a_while_gets_everything_once_back(start_hitl, receiver):
    receiver.down()
    hitl = start_hitl(receiver)

    ids = [hitl.loop(f"Task {n} while the receiver is down") for n in range(3)]

    # Each task's first delivery is retried (with back-off) and its later ones wait behind it.
    def retried() -> bool:
        for task_id in ids:
            mine = to(receiver, hitl.deliveries(task_id))
            if len(mine) != 6 or mine[0]["attempts"] < 2:
                return False
        return True

    until(retried, what="retries while the receiver is down")
    for task_id in ids:
        first, *later = to(receiver, hitl.deliveries(task_id))
        assert first["status"] == "pending" and first["last_status_code"] is None, first
        assert "connect" in first["last_error"], first
        assert first["next_try_at"], first
        assert all(d["status"] == "pending" and d["attempts"] == 0 for d in later), later
    assert hitl.metric("hitl_webhook_deliveries_total", outcome="retried") >= 2 * len(ids)

    receiver.up()
    for task_id in ids:
        assert_loop_events(all_delivered(hitl, receiver, task_id, timeout=20))
    # After dedupe, once per webhook-id; and nothing but these tasks' deliveries came.
    expected = {d["id"] for task_id in ids for d in hitl.deliveries(task_id)}
    assert {r.webhook_id for r in receiver.delivered()} == expected


@pytest.mark.parametrize("meanwhile", ["answers 503", "hangs"])
def test_a_delivery_interrupted_by_kill_9_arrives_after_restart_with_its_id(
    start_hitl, receiver, tmp_path, meanwhile
):
    data = tmp_path / "data"
    receiver.answer_with(Answer("hang") if meanwhile == "hangs" else Answer("status", 503))
    # A long timeout: a hanging try is still in flight when hitl is killed.
    hitl = start_hitl(receiver, "--webhook-timeout-secs", "30", data_dir=data)
    task = hitl.submit("Killed while telling the receiver")
    hitl.reach(task["id"], "waiting_for_review", 1)

    receiver.wait_for(lambda: receiver.seen_ids(task["id"]), what="a first try")
    if meanwhile == "answers 503":
        # Tried and refused at least once, as hitl recorded.
        until(lambda: to(receiver, hitl.deliveries(task["id"]))[0]["last_status_code"] == 503,
              what="the 503 recorded")
    seen = receiver.seen_ids(task["id"])[0]
    before = to(receiver, hitl.deliveries(task["id"]))
    assert before[0]["id"] == seen and before[0]["status"] == "pending", before
    assert all(d["status"] == "pending" for d in before), before

    hitl.kill()
    receiver.answer_with(OK)
    again = start_hitl(receiver, data_dir=data)

    receiver.wait_for(lambda: any(r.webhook_id == seen for r in receiver.accepted()),
                      timeout=20, what=f"delivery {seen} after the restart")
    # The review goes on after the restart; every event, from before the kill too, arrives
    # in order, each under the id hitl had given it before the kill.
    again.decide(task["id"], "rejected", 1, "Shorter, please")
    again.reach(task["id"], "waiting_for_review", 2)
    again.decide(task["id"], "approved", 2, "Good now")
    again.reach(task["id"], "completed")
    events = all_delivered(again, receiver, task["id"], timeout=20)
    assert_loop_events(events)
    assert events[0].webhook_id == seen
    ids_after = [d["id"] for d in to(receiver, again.deliveries(task["id"]))]
    assert ids_after[: len(before)] == [d["id"] for d in before]


BAD = {
    "500": (Answer("status", 500, b"oops"), 500, "500"),
    "404": (Answer("status", 404, b"no such hook"), 404, "404"),
    "301 redirect": (
        Answer("status", 301, headers={"Location": "/moved"}), 301, "redirect"),
    "10 MB body": (Answer("status", 502, b"x" * (10 * 1024 * 1024)), 502, "502"),
    "garbage": (Answer("garbage"), None, "HTTP"),
    "closed without answer": (Answer("close"), None, "closed"),
}


@pytest.mark.parametrize("bad", list(BAD))
def test_a_bad_receiver_leaves_deliveries_pending_until_it_recovers(
    start_hitl, receiver, bad
):
    answer, code, words = BAD[bad]
    receiver.answer_with(answer)
    hitl = start_hitl(receiver)
    task = hitl.submit(f"Told to a receiver whose answer is {bad}")
    hitl.reach(task["id"], "waiting_for_review", 1)

    until(lambda: to(receiver, hitl.deliveries(task["id"]))[0]["attempts"] >= 2,
          what="two tries", receivers=[receiver])
    first, *later = to(receiver, hitl.deliveries(task["id"]))
    assert first["status"] == "pending", first
    assert first["last_status_code"] == code, first
    assert first["last_error"] and words in first["last_error"], first
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in later), later
    # Every try was the first event, under one id; a redirect was not followed.
    tries = receiver.snapshot()
    assert {r.webhook_id for r in tries} == {first["id"]}, tries
    assert {r.path for r in tries} == {"/hook"}
    # hitl is fine: it answers, and the loop goes on while the receiver misbehaves.
    assert hitl.running()
    assert hitl.api.get("/healthz").status_code == 200
    hitl.decide(task["id"], "rejected", 1, "Shorter, please")
    hitl.reach(task["id"], "waiting_for_review", 2)
    hitl.decide(task["id"], "approved", 2, "Good now")
    hitl.reach(task["id"], "completed")

    receiver.answer_with(OK)
    assert_loop_events(all_delivered(hitl, receiver, task["id"], timeout=20))
    assert hitl.running()


def test_a_big_answer_to_a_2xx_is_delivered(start_hitl, receiver):
    receiver.answer_with(Answer("status", 200, b"y" * (10 * 1024 * 1024)))
    hitl = start_hitl(receiver)
    task_id = hitl.loop("Told to a receiver that answers 10 MB")
    assert_loop_events(all_delivered(hitl, receiver, task_id))


def test_kill_9_right_after_each_answer_loses_no_event(start_hitl, receiver, tmp_path):
    """hitl killed the moment it answered (a submission, a decision): every event it had
    answered for is delivered after the restart, in order, each under one id."""
    data = tmp_path / "data"
    hitl = start_hitl(receiver, data_dir=data)
    ids = []
    for n in range(3):
        task = hitl.submit(f"Task {n}, killed after its submission")
        ids.append(task["id"])
        hitl.kill()
        hitl = start_hitl(receiver, data_dir=data)
        hitl.reach(task["id"], "waiting_for_review", 1)
        hitl.decide(task["id"], "rejected", 1, "Shorter, please")
        hitl.kill()
        hitl = start_hitl(receiver, data_dir=data)
        hitl.reach(task["id"], "waiting_for_review", 2)
        hitl.decide(task["id"], "approved", 2, "Good now")
        hitl.kill()
        hitl = start_hitl(receiver, data_dir=data)
    for task_id in ids:
        hitl.reach(task_id, "completed")
        assert_loop_events(all_delivered(hitl, receiver, task_id, timeout=20))
