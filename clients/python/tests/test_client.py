"""The sync client against a real hitl: tasks, waiting, decisions, outside work, errors, pages."""

from __future__ import annotations

import time

import httpx
import pytest

from hitl_client import (
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    HitlError,
    InvalidField,
    NotFound,
    Revision,
    TooLarge,
    Unauthorized,
    WaitTimeout,
)
from hitl_client.testing import hash_secret

from .conftest import HITL_BIN, first_waiting, in_thread, ready, review_of


# -- hitl's own processor ----------------------------------------------------------------------


def test_submit_wait_approve(client: Client) -> None:
    task = client.submit("Write a haiku about rust", max_attempts=2)
    assert task.status in ("pending", "running", "waiting_for_review")
    assert task.attempt == 1 and task.max_attempts == 2

    task = client.wait(task.id, while_=["pending", "running"], timeout=10)
    assert task.status == "waiting_for_review"
    assert task.output and "Write a haiku about rust" in task.output

    done = client.approve(task.id, attempt=1, comment="lovely")
    assert done.status == "completed"
    assert done.final_result == task.output
    assert done.outcome == "approved"
    assert done.attempts[-1].decision == "approved"
    assert done.attempts[-1].comment == "lovely", "an approval's comment is kept as its note"
    assert client.get(task.id) == done


def test_request_changes_reaches_the_next_attempt(client: Client) -> None:
    task = ready(client, client.submit("Summarise the report").id)
    client.request_changes(task.id, "mention the budget")
    task = review_of(client, task.id, 2)
    assert task.status == "waiting_for_review" and task.attempt == 2
    assert task.output and "mention the budget" in task.output
    assert task.processor in (None, "simulated")
    done = client.reject(task.id, comment="not good enough")
    assert done.status == "failed"
    assert done.outcome == "rejected"


def test_edit_on_approval_becomes_the_final_result(client: Client) -> None:
    task = ready(client, client.submit("x").id)
    done = client.approve(task.id, output="edited by hand")
    assert done.final_result == "edited by hand"


def test_cancel(client: Client) -> None:
    task = client.submit("to be cancelled", processor="external")
    done = client.cancel(task.id)
    assert done.status == "cancelled"
    assert done.outcome == "cancelled"
    with pytest.raises(Conflict):
        client.cancel(task.id)


# -- waiting -----------------------------------------------------------------------------------


def test_wait_answers_with_the_hitl_wait_header(client: Client, server) -> None:  # type: ignore[no-untyped-def]
    task = client.submit_output("a draft to review")
    started = time.monotonic()
    resp = httpx.get(f"{server.url}/api/tasks/{task.id}", params={"wait": 1}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers.get("Hitl-Wait") == "timeout"
    assert time.monotonic() - started >= 0.9, "the server held the request for `wait` seconds"

    waiting = in_thread(
        lambda: httpx.get(
            f"{server.url}/api/tasks/{task.id}",
            params={"wait": 30, "while": "waiting_for_review"},
            timeout=40,
        )
    )
    time.sleep(0.3)
    client.approve(task.id)
    resp = waiting.result()
    assert resp.headers.get("Hitl-Wait") == "changed"
    assert resp.json()["status"] == "completed"


def test_wait_times_out_with_the_task(client: Client) -> None:
    task = client.submit_output("nobody reviews this")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as err:
        client.wait(task.id, timeout=1.5)
    assert 1.0 <= time.monotonic() - started < 10
    assert err.value.task is not None and err.value.task.status == "waiting_for_review"


def test_wait_returns_when_the_status_leaves(client: Client) -> None:
    task = client.submit_output("decide me")
    later = in_thread(lambda: (time.sleep(0.5), client.approve(task.id)))
    done = client.wait(task.id, timeout=20)  # default: while it has the status it has now
    later.result()
    assert done.status == "completed"


def test_wait_rides_out_a_restart(start_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A restart of hitl ends every wait; the client retries until the server is back."""
    data = str(tmp_path / "data")
    first = start_server(store="sqlite", data_dir=data)
    with Client(first.url, timeout=5) as c:
        task = c.submit_output("survives a restart")
        waiting = in_thread(lambda: c.wait(task.id, while_="waiting_for_review", timeout=30))
        time.sleep(0.5)
        first.stop()
        time.sleep(1.0)  # connections refused meanwhile
        second = start_server(store="sqlite", data_dir=data, addr=f"127.0.0.1:{first.port}")
        with Client(second.url) as reviewer:
            reviewer.approve(task.id)
        done = waiting.result()
        assert done.status == "completed"


def test_wait_gives_up_at_its_deadline_while_the_server_is_gone(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server()
    with Client(server.url, timeout=5) as c:
        task = c.submit_output("soon gone")
        server.stop()
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as err:
            c.wait(task.id, timeout=1.5)
        assert time.monotonic() - started < 8
        assert isinstance(err.value.__cause__, httpx.TransportError)


# -- work done outside hitl --------------------------------------------------------------------


def test_outside_task_loop(client: Client) -> None:
    task = client.submit_output(
        "Draft one of the release notes", metadata={"run": 7, "tags": ["notes"]}
    )
    assert task.status == "waiting_for_review" and task.attempt == 1
    assert task.output == "Draft one of the release notes"
    assert task.input == "Draft one of the release notes"
    assert task.processor == "external"
    assert task.metadata == {"run": 7, "tags": ["notes"]}
    assert task.outcome is None

    client.request_changes(task.id, "mention ferris", attempt=1)
    task = client.wait(task.id, while_="waiting_for_review", timeout=10)
    assert task.status == "pending" and task.attempt == 2
    assert task.attempts[-1].decision == "rejected"
    assert task.attempts[-1].comment == "mention ferris"
    assert client.revisions(task.id) == [
        Revision(
            attempt=1,
            output="Draft one of the release notes",
            comment="mention ferris",
            decided_by=task.attempts[-1].decided_by,
            decided_at=task.attempts[-1].decided_at,
        )
    ]

    task = client.submit_revision(task.id, 2, "Draft two, with ferris")
    assert task.status == "waiting_for_review" and task.attempt == 2
    assert task.output == "Draft two, with ferris"

    done = client.approve(task.id, attempt=2)
    assert done.status == "completed"
    assert done.outcome == "approved"
    assert done.final_result == "Draft two, with ferris"
    assert [r.comment for r in client.revisions(done)] == ["mention ferris"]


def test_submit_output_names_an_input(client: Client) -> None:
    task = client.submit_output("\n\n  Title line  \nbody")
    assert task.input == "Title line"
    given = client.submit_output("out", input="what it is for")
    assert given.input == "what it is for"


def test_review_then_revision(client: Client) -> None:
    def reviewer() -> None:
        with Client(client.base_url) as r:
            task = first_waiting(r)
            r.request_changes(task.id, "add a title")
            r.wait(task.id, while_=["pending", "running"], timeout=10)
            r.approve(task.id, comment="good")

    bg = in_thread(reviewer)
    result = client.review("a body without a title", input="write a note", timeout=20)
    assert result.revision_requested
    assert result.status == "pending" and result.attempt == 2
    assert result.comment == "add a title" and result.decision == "rejected"
    assert result.outcome is None

    result = client.review_revision(result.task_id, result.attempt, "Title\n\na body", timeout=20)
    bg.result()
    assert not result.revision_requested
    assert result.approved and result.outcome == "approved"
    assert result.decision == "approved" and result.comment == "good"
    assert result.final_result == "Title\n\na body"
    assert result.attempt == 2


def test_review_ending_in_rejection(client: Client) -> None:
    bg = in_thread(lambda: client.reject(first_waiting(client).id, "no"))
    result = client.review("hopeless")
    bg.result()
    assert not result.revision_requested and not result.approved
    assert result.status == "failed" and result.outcome == "rejected"
    assert result.decision == "rejected_final" and result.comment == "no"


def test_changes_on_the_last_attempt_exhaust_them(client: Client) -> None:
    task = client.submit_output("only one go", max_attempts=1)
    done = client.request_changes(task.id, "more")
    assert done.status == "failed"
    assert done.outcome == "changes_exhausted"


# -- errors ------------------------------------------------------------------------------------


def test_unknown_task_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as err:
        client.get("0192a3b4-0000-7000-8000-000000000000")
    assert err.value.status == 404 and err.value.code == "not_found"
    assert err.value.message
    with pytest.raises(NotFound):
        client.approve("0192a3b4-0000-7000-8000-000000000000")


def test_unknown_field_is_invalid_field(client: Client) -> None:
    with pytest.raises(InvalidField) as err:
        client.request("POST", "/api/tasks", json={"input": "x", "bogus": 1})
    assert err.value.status == 422 and err.value.code == "invalid_field"
    assert "bogus" in err.value.message


def test_out_of_range_is_invalid_field(client: Client) -> None:
    with pytest.raises(InvalidField):
        client.submit("x", max_attempts=0)
    with pytest.raises(InvalidField):
        client.claim(wait_secs=0, lease_secs=1)  # lease_secs is 5..=3600
    with pytest.raises(InvalidField):
        client.submit_output("x", metadata=None, max_attempts=21)
    task = client.submit_output("needs a comment")
    with pytest.raises(InvalidField):
        client.decide(task.id, "rejected")


def test_wrong_attempt_is_a_conflict(client: Client) -> None:
    task = client.submit_output("one")
    with pytest.raises(Conflict) as err:
        client.approve(task.id, attempt=2)
    assert err.value.status == 409
    with pytest.raises(Conflict):
        client.submit_revision(task.id, 2, "not asked for")
    assert client.get(task.id).status == "waiting_for_review", "a refusal changes nothing"
    client.approve(task.id, attempt=1)
    with pytest.raises(Conflict):
        client.approve(task.id, attempt=1)


def test_attempts_on_a_task_hitl_processes_are_a_conflict(client: Client) -> None:
    task = client.submit("processed by hitl")
    with pytest.raises(Conflict):
        client.submit_revision(task.id, 1, "from outside")


def test_malformed_body_is_bad_request(client: Client) -> None:
    with pytest.raises(BadRequest) as err:
        client.request("POST", "/api/tasks", content=b"{not json")
    assert err.value.status == 400


def test_unreadable_wait_is_bad_request(client: Client) -> None:
    task = client.submit_output("x")
    with pytest.raises(BadRequest):
        client.request("GET", f"/api/tasks/{task.id}", params={"wait": "soon"})
    with pytest.raises(InvalidField):
        client.request("GET", f"/api/tasks/{task.id}", params={"wait": 121})


def test_too_large(client: Client) -> None:
    with pytest.raises(TooLarge) as err:
        client.submit("x" * 70_000)
    assert err.value.status == 413
    with pytest.raises(TooLarge):
        client.submit_output("y" * 70_000)


def test_every_error_is_a_hitl_error(client: Client) -> None:
    with pytest.raises(HitlError):
        client.get("0192a3b4-0000-7000-8000-000000000000")


def test_token_auth(start_server) -> None:  # type: ignore[no-untyped-def]
    alice = hash_secret(HITL_BIN, "alice secret")
    bob = hash_secret(HITL_BIN, "bob secret")
    server = start_server(
        "--auth", "token", "--users", f"alice:reviewer:{alice},bob:submitter:{bob}"
    )
    with Client(server.url) as anonymous:
        with pytest.raises(Unauthorized) as err:
            anonymous.list()
        assert err.value.code == "unauthenticated"
    with Client(server.url, token="bob:bob secret") as b, Client(
        server.url, token="alice:alice secret"
    ) as a:
        task = b.submit_output("bob's draft")
        assert task.submitted_by == "bob"
        with pytest.raises(Forbidden):
            b.approve(task.id)
        done = a.approve(task.id)
        assert done.status == "completed"
        assert done.attempts[-1].decided_by == "alice"


# -- lists -------------------------------------------------------------------------------------


def test_pages_follow_next(client: Client) -> None:
    ids = [client.submit_output(f"draft {i}").id for i in range(105)]

    first = client.list()
    assert len(first.tasks) == 100, "without page or per_page: the first 100"
    assert first.next is not None and "page=2" in first.next
    assert first.total == 105

    second = client.list(page=2, per_page=100)
    assert len(second.tasks) == 5 and second.next is None

    seen = [t.id for t in client.iter_tasks()]
    assert seen == list(reversed(ids)), "every task once, newest first"

    small = list(client.pages(per_page=40))
    assert [len(p) for p in small] == [40, 40, 25]
    assert small[-1].next is None

    assert [t.id for t in client.iter_tasks(status="waiting_for_review", per_page=50)] == seen
    assert list(client.iter_tasks(status="completed")) == []
