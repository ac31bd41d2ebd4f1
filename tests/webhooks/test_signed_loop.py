"""The review loop's events reach --webhook-url receivers and allowed callback_urls, signed and
in order; a redelivery carries the same webhook-id."""

from __future__ import annotations

import time

from checks import all_delivered, assert_in_order, assert_loop_events, assert_once_each, to, until
from receiver import OK, Answer


def test_the_loop_s_events_arrive_signed_and_in_order(start_hitl, receivers):
    first, second = receivers("first"), receivers("second")
    hitl = start_hitl(first, second)

    ids = [hitl.loop(f"Task {n}: a haiku about webhooks") for n in range(3)]

    for receiver in (first, second):
        for task_id in ids:
            events = all_delivered(hitl, receiver, task_id)
            assert_loop_events(events)
            assert all(r.data["task"]["id"] == task_id for r in events)
        # Nobody answered anything but 200, so nothing needed a second try.
        assert_once_each(receiver)
    # The two receivers were told the same events, each under a delivery id of its own.
    for task_id in ids:
        one, two = first.delivered(task_id), second.delivered(task_id)
        assert [r.payload for r in one] == [r.payload for r in two]
        assert not {r.webhook_id for r in one} & {r.webhook_id for r in two}
    assert hitl.metric("hitl_webhook_deliveries_total", outcome="delivered") == 2 * 6 * len(ids)


def test_a_callback_url_needs_an_allowed_host_and_gets_its_task_s_events(
    start_hitl, receivers
):
    allowed, other = receivers("allowed"), receivers("not-allowed")
    hitl = start_hitl("--callback-allow", allowed.host)

    for url in (other.url, "http://example.com:80/cb", f"http://localhost:{allowed.port}/cb",
                "ftp://127.0.0.1/cb", "not a url"):
        answer = hitl.api.post("/api/tasks", json={"input": "x", "callback_url": url})
        assert answer.status_code == 422, (url, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_field", (url, error)
        assert "callback_url" in error["message"], (url, error)

    with_callback = hitl.loop("Told by callback", callback_url=allowed.url)
    without = hitl.loop("Not told by callback")

    events = all_delivered(hitl, allowed, with_callback)
    assert_loop_events(events)
    assert_once_each(allowed)
    # Only its own task's events, and nothing to the host that was not allowed.
    assert {r.task_id for r in allowed.snapshot()} == {with_callback}
    assert hitl.deliveries(without) == []
    assert other.snapshot() == []


def test_a_redelivery_carries_the_same_webhook_id(start_hitl, receiver):
    hitl = start_hitl(receiver)
    task_id = hitl.loop()
    delivered = all_delivered(hitl, receiver, task_id)
    first = delivered[0]

    answer = hitl.redeliver(first.webhook_id)
    assert answer.status_code == 200, answer.text
    again = answer.json()
    assert again["id"] == first.webhook_id
    assert again["event_seq"] == first.seq
    assert again["status"] in ("pending", "delivered"), again

    receiver.wait_for(lambda: len(receiver.accepted(task_id)) == len(delivered) + 1,
                      what="the redelivery")
    resent = receiver.accepted(task_id)[-1]
    assert resent.webhook_id == first.webhook_id
    assert resent.payload == first.payload
    until(lambda: to(receiver, hitl.deliveries(task_id))[0]["status"] == "delivered",
          what="the redelivery recorded as delivered")
    record = to(receiver, hitl.deliveries(task_id))[0]
    assert record["id"] == first.webhook_id and record["attempts"] == 2, record
    # Every other delivery stays as it was: once each.
    assert [r.webhook_id for r in receiver.accepted(task_id)[:-1]] == [
        r.webhook_id for r in delivered
    ]
    assert_in_order(delivered)

    missing = hitl.redeliver("01a00000-0000-7000-8000-000000000000")
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "not_found"


def test_a_redelivery_asked_for_while_a_try_is_in_flight_is_still_sent(start_hitl, receiver):
    """Redeliver answers 200 with the delivery pending again: it must then be sent again, even
    when a try of it was already on its way (and succeeds) when the redelivery was asked for."""
    receiver.answer_with(Answer("status", 200, delay=1.0))  # slow, but within the timeout
    hitl = start_hitl(receiver)
    task = hitl.submit("Redelivered while its first try is under way")
    receiver.wait_for(lambda: receiver.seen_ids(task["id"]), what="the first try")
    first = receiver.seen_ids(task["id"])[0]

    answer = hitl.redeliver(first)
    asked = time.monotonic()
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "pending", answer.json()

    receiver.answer_with(OK)
    try:
        receiver.wait_for(
            lambda: any(r.webhook_id == first and r.at > asked for r in receiver.snapshot()),
            timeout=5, what=f"delivery {first} sent again after the redelivery was answered",
        )
    except AssertionError as missing:
        now = to(receiver, hitl.deliveries(task["id"]))[0]
        raise AssertionError(f"{missing}\nhitl now says of it: {now}") from None
