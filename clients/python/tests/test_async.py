"""The async client's main flows against a real hitl."""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

from hitl_client import (
    AsyncClient,
    AsyncWorker,
    ClaimLost,
    Conflict,
    HistoryEntry,
    InvalidField,
    NotFound,
    Task,
    WaitTimeout,
)


async def first_waiting(client: AsyncClient, timeout: float = 10.0) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(status="waiting_for_review")
        if page.tasks:
            return page.tasks[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no task came up for review")


async def review_of(client: AsyncClient, task_id: str, attempt: int, timeout: float = 15.0) -> Task:
    deadline = time.monotonic() + timeout
    task = await client.get(task_id)
    while not (task.status == "waiting_for_review" and task.attempt == attempt):
        assert not task.done and task.attempt <= attempt, task
        task = await client.wait(task_id, while_=[task.status], timeout=max(0.0, deadline - time.monotonic()))
    return task


async def test_submit_wait_approve(aclient: AsyncClient) -> None:
    task = await aclient.submit("Write a limerick")
    task = await aclient.wait(task.id, while_=["pending", "running"], timeout=10)
    assert task.status == "waiting_for_review" and task.output
    done = await aclient.approve(task.id, attempt=1)
    assert done.status == "completed" and done.outcome == "approved"
    assert done.final_result == task.output


async def test_wait_times_out(aclient: AsyncClient) -> None:
    task = await aclient.submit_output("unreviewed")
    with pytest.raises(WaitTimeout) as err:
        await aclient.wait(task.id, timeout=1.2)
    assert err.value.task is not None and err.value.task.status == "waiting_for_review"


async def test_outside_loop(aclient: AsyncClient) -> None:
    task = await aclient.submit_output("first draft", metadata={"k": "v"})
    assert task.status == "waiting_for_review" and task.processor == "external"
    await aclient.request_changes(task.id, "make it second")
    task = await aclient.wait(task.id, while_="waiting_for_review", timeout=10)
    assert task.status == "pending" and task.attempt == 2
    assert [r.comment for r in await aclient.revisions(task.id)] == ["make it second"]
    task = await aclient.submit_revision(task.id, 2, "second draft")
    assert task.status == "waiting_for_review" and task.attempt == 2
    done = await aclient.approve(task.id)
    assert done.outcome == "approved" and done.final_result == "second draft"


async def test_review_and_revision(aclient: AsyncClient) -> None:
    async def reviewer() -> None:
        task = await first_waiting(aclient)
        await aclient.request_changes(task.id, "shorter")
        await review_of(aclient, task.id, 2)
        await aclient.approve(task.id, comment="ok")

    playing = asyncio.create_task(reviewer())
    result = await aclient.review("a long long draft", timeout=20)
    assert result.revision_requested and result.comment == "shorter" and result.attempt == 2
    result = await aclient.review_revision(result.task_id, result.attempt, "a draft", timeout=20)
    await playing
    assert result.approved and result.outcome == "approved"
    assert result.final_result == "a draft" and result.comment == "ok"


async def test_errors(aclient: AsyncClient) -> None:
    with pytest.raises(NotFound):
        await aclient.get("0192a3b4-0000-7000-8000-000000000000")
    with pytest.raises(InvalidField):
        await aclient.request("POST", "/api/tasks", json={"input": "x", "nope": True})
    task = await aclient.submit_output("x")
    with pytest.raises(Conflict):
        await aclient.approve(task.id, attempt=3)


async def test_claim_complete_and_lost(aclient: AsyncClient) -> None:
    assert await aclient.claim(wait_secs=0) is None
    task = await aclient.submit("async work", processor="external")
    claim = await aclient.claim(wait_secs=2, lease_secs=30)
    assert claim is not None and claim.task.id == task.id and claim.attempt == 1
    await claim.renew(30)
    await claim.progress("working")
    reviewed = await claim.complete("ASYNC WORK")
    assert reviewed.status == "waiting_for_review"
    with pytest.raises(Conflict):
        await claim.complete("again")  # the task moved on
    with pytest.raises(ClaimLost):
        await claim.renew()


async def test_claim_fail(aclient: AsyncClient) -> None:
    task = await aclient.submit("doomed", processor="external")
    claim = await aclient.claim(wait_secs=2)
    assert claim is not None
    ended = await claim.fail("no can do", retry=False)
    assert ended.status == "failed" and ended.outcome == "processing_failed"
    again = await aclient.retry(task.id)
    assert again.status == "pending"


async def test_worker_loop(aclient: AsyncClient) -> None:
    async def shout(task: Task, attempt: int, history: List[HistoryEntry]) -> str:
        await asyncio.sleep(0)
        return task.input.upper() + "".join(f"\naddressed: {h.comment}" for h in history)

    stop = asyncio.Event()
    worker = AsyncWorker(aclient, shout, wait_secs=30, stop=stop)
    running = asyncio.create_task(worker.run())

    task = await aclient.submit("quiet", processor="external")
    task = await review_of(aclient, task.id, 1)
    assert task.output == "QUIET"
    await aclient.request_changes(task.id, "louder")
    task = await review_of(aclient, task.id, 2)
    assert task.output == "QUIET\naddressed: louder"
    await aclient.approve(task.id)

    started = time.monotonic()
    stop.set()  # ends the 30 s wait for work at once
    assert await asyncio.wait_for(running, 10) == 2
    assert time.monotonic() - started < 5


async def test_worker_with_a_blocking_handler_that_fails_once(aclient: AsyncClient) -> None:
    calls: List[int] = []

    def blocking(task: Task, attempt: int, history: List[HistoryEntry]) -> str:
        calls.append(attempt)
        time.sleep(0.1)  # run in a thread: the loop keeps going
        if len(calls) == 1:
            raise ValueError("first try fails")
        return "fine"

    running = asyncio.create_task(aclient.run_worker(blocking, wait_secs=2, max_tasks=2))
    task = await aclient.submit("x", processor="external")
    task = await review_of(aclient, task.id, 1)
    assert await asyncio.wait_for(running, 15) == 2
    assert task.output == "fine" and calls == [1, 1]


async def test_pages(aclient: AsyncClient) -> None:
    for i in range(7):
        await aclient.submit_output(f"d{i}")
    page = await aclient.list(per_page=3)
    assert len(page.tasks) == 3 and page.next
    seen = [t.input async for t in aclient.iter_tasks(per_page=3)]
    assert seen == [f"d{i}" for i in reversed(range(7))]
