"""Workers: claims, leases, progress, failures, and the Worker loop, against a real hitl."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

from hitl_client import ClaimLost, Client, Conflict, HistoryEntry, NotFound, Task, Worker

from .conftest import in_thread, review_of, until


def external(client: Client, text: str = "make this loud", **kw) -> Task:  # type: ignore[no-untyped-def]
    return client.submit(text, processor="external", **kw)


def test_an_external_task_waits_for_a_worker(client: Client) -> None:
    task = external(client)
    assert task.processor == "external"
    time.sleep(0.3)
    task = client.get(task.id)
    assert task.status == "pending" and task.output is None, "hitl never processes it"


def test_claim_none_when_there_is_no_work(client: Client) -> None:
    started = time.monotonic()
    assert client.claim(wait_secs=0) is None
    assert client.claim(wait_secs=1) is None
    assert 0.9 <= time.monotonic() - started < 10, "wait_secs=1 held the request a second"
    client.submit("processed by hitl itself")
    assert client.claim(wait_secs=0) is None, "only outside tasks are claimed"


def test_claim_waits_for_work_to_come(client: Client) -> None:
    claiming = in_thread(lambda: client.claim(wait_secs=20))
    time.sleep(0.5)
    task = external(client)
    claim = claiming.result()
    assert claim is not None and claim.task.id == task.id


def test_claim_answer_and_revise(client: Client) -> None:
    task = external(client, "hello worker", metadata={"lang": "en"})
    claim = client.claim(wait_secs=5, lease_secs=30)
    assert claim is not None
    assert claim.task.id == task.id and claim.attempt == 1
    assert claim.task.status == "running"
    assert claim.task.metadata == {"lang": "en"}
    assert claim.history == []
    assert claim.token and claim.lease_expires_at
    assert client.get(task.id).status == "running"
    assert client.claim(wait_secs=0) is None, "a claimed attempt is nobody else's"

    claim.progress("halfway")
    with pytest.raises(Conflict):
        client.submit_revision(task.id, 1, "not the holder")  # running under a claim
    reviewed = claim.complete("HELLO WORKER")
    assert reviewed.status == "waiting_for_review" and reviewed.output == "HELLO WORKER"

    client.request_changes(task.id, "add an exclamation mark")
    second = client.claim(wait_secs=5)
    assert second is not None and second.task.id == task.id and second.attempt == 2
    assert second.history == [
        HistoryEntry(attempt=1, output="HELLO WORKER", comment="add an exclamation mark")
    ]
    second.complete("HELLO WORKER!")
    done = client.approve(task.id, attempt=2)
    assert done.status == "completed" and done.final_result == "HELLO WORKER!"
    assert done.outcome == "approved"


def test_claims_are_oldest_first(client: Client) -> None:
    first, second = external(client, "one"), external(client, "two")
    a, b = client.claim(wait_secs=0), client.claim(wait_secs=0)
    assert a is not None and b is not None
    assert (a.task.id, b.task.id) == (first.id, second.id)


def test_renewed_lease_holds_and_unrenewed_one_is_lost(client: Client) -> None:
    kept_task, lost_task = external(client, "kept"), external(client, "lost")
    kept = client.claim(wait_secs=0, lease_secs=5)
    lost = client.claim(wait_secs=0, lease_secs=5)
    assert kept is not None and lost is not None and kept.task.id == kept_task.id

    before = kept.lease_expires_at
    after = kept.renew(60)
    assert after is not None and before is not None and after > before

    time.sleep(6.0)  # past the 5 s lease
    with pytest.raises(ClaimLost) as err:
        lost.complete("too late")
    assert err.value.status == 409 and err.value.code == "claim_lost"
    assert isinstance(err.value, Conflict)
    assert lost.lost
    with pytest.raises(ClaimLost):
        lost.renew()

    # The lost attempt went back to pending for another worker.
    until(lambda: client.get(lost_task.id).status == "pending")
    again = client.claim(wait_secs=2)
    assert again is not None and again.task.id == lost_task.id and again.attempt == 1
    assert again.complete("on time").status == "waiting_for_review"

    assert kept.complete("kept its lease").status == "waiting_for_review"


def test_fail_with_retry_then_without(client: Client) -> None:
    task = external(client, "fragile")
    claim = client.claim(wait_secs=0)
    assert claim is not None
    back = claim.fail("the model timed out", retry=True)
    assert back.status == "pending" and back.attempt == 1

    claim = client.claim(wait_secs=2)
    assert claim is not None and claim.task.id == task.id and claim.attempt == 1
    ended = claim.fail("cannot be done", retry=False)
    assert ended.status == "failed"
    assert ended.outcome == "processing_failed"
    assert ended.error and "cannot be done" in ended.error

    restarted = client.retry(task.id)
    assert restarted.status == "pending" and restarted.attempt == 1
    claim = client.claim(wait_secs=2)
    assert claim is not None and claim.task.id == task.id
    assert claim.complete("done at last").status == "waiting_for_review"
    with pytest.raises(Conflict):
        client.retry(task.id)  # only a task whose processing failed


def test_unknown_claim(client: Client) -> None:
    external(client)
    claim = client.claim(wait_secs=0)
    assert claim is not None
    claim.token = "not-a-real-token"
    with pytest.raises((ClaimLost, NotFound)):
        claim.renew()


# -- the Worker loop ---------------------------------------------------------------------------


def shout(task: Task, attempt: int, history: List[HistoryEntry]) -> str:
    text = task.input.upper()
    for h in history:
        if h.comment:
            text += f"\naddressed: {h.comment}"
    return text


def test_worker_answers_and_addresses_comments(client: Client) -> None:
    handled = in_thread(lambda: client.run_worker(shout, wait_secs=2, max_tasks=2))
    task = external(client, "hello")
    task = client.wait(task.id, while_=["pending", "running"], timeout=10)
    assert task.status == "waiting_for_review" and task.output == "HELLO"

    client.request_changes(task.id, "say please")
    task = review_of(client, task.id, 2)
    assert task.attempt == 2 and task.output == "HELLO\naddressed: say please"
    assert client.approve(task.id).outcome == "approved"
    assert handled.result() == 2


def test_worker_gives_up_with_retry_when_the_handler_raises(client: Client) -> None:
    calls: List[int] = []

    def flaky(task: Task, attempt: int, history: List[HistoryEntry]) -> str:
        calls.append(attempt)
        if len(calls) == 1:
            raise RuntimeError("model overloaded")
        return "second time lucky"

    handled = in_thread(lambda: client.run_worker(flaky, wait_secs=2, max_tasks=2))
    task = external(client)
    task = client.wait(task.id, while_=["pending", "running"], timeout=15)
    assert handled.result() == 2
    assert calls == [1, 1]
    assert task.status == "waiting_for_review" and task.output == "second time lucky"


def test_worker_renews_the_lease_in_the_background(client: Client) -> None:
    def slow(task: Task, attempt: int, history: List[HistoryEntry]) -> str:
        time.sleep(7)  # longer than the 5 s lease: only renewals keep it
        return "slow but sure"

    handled = in_thread(lambda: client.run_worker(slow, wait_secs=2, lease_secs=5, max_tasks=1))
    task = external(client)
    task = client.wait(task.id, while_=["pending", "running"], timeout=20)
    assert handled.result() == 1
    assert task.status == "waiting_for_review" and task.output == "slow but sure"


def test_worker_stops_when_told(client: Client) -> None:
    stop = threading.Event()
    worker = Worker(client, shout, wait_secs=1, stop=stop)
    running = in_thread(worker.run)
    time.sleep(0.3)
    stop.set()
    assert running.result(timeout=10) == 0
