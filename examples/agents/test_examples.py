"""Each example against a real hitl: the example runs as its own process, and the test plays the
reviewer through the JSON API (plain HTTP, not the client): it requests changes once, checks the
revision addresses the comment, then approves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import pytest

from hitl_client.testing import HitlServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HITL_BIN = os.environ.get("HITL_BIN") or str(REPO / "target" / "debug" / "hitl")
COMMENT = "mention ferris the crab"


@pytest.fixture
def hitl() -> Iterator[HitlServer]:
    server = HitlServer(HITL_BIN).start()
    try:
        yield server
    finally:
        server.stop()


class Reviewer:
    """A person at the review queue, over the JSON API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def task(self, task_id: str) -> Dict[str, Any]:
        resp = self.http.get(f"/api/tasks/{task_id}")
        resp.raise_for_status()
        return resp.json()

    def next_waiting(self, timeout: float = 30) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self.http.get("/api/tasks", params={"status": "waiting_for_review"})
            resp.raise_for_status()
            if resp.json()["tasks"]:
                return resp.json()["tasks"][0]
            time.sleep(0.05)
        raise AssertionError("no task came up for review")

    def review_of(self, task_id: str, attempt: int, timeout: float = 30) -> Dict[str, Any]:
        """Wait (with the API's bounded wait) until `attempt` is up for review."""
        deadline = time.monotonic() + timeout
        task = self.task(task_id)
        while not (task["status"] == "waiting_for_review" and task["attempt"] == attempt):
            assert task["status"] not in ("completed", "failed", "cancelled"), (
                task["status"], task.get("outcome"), task.get("error"), task.get("attempts")
            )
            left = deadline - time.monotonic()
            assert left > 0, f"attempt {attempt} never came up for review: {task}"
            resp = self.http.get(
                f"/api/tasks/{task_id}",
                params={"wait": max(1, min(10, int(left))), "while": task["status"]},
            )
            resp.raise_for_status()
            if "Hitl-Wait" not in resp.headers:
                time.sleep(0.05)
            task = resp.json()
        return task

    def decide(self, task_id: str, **body: Any) -> Dict[str, Any]:
        resp = self.http.post(f"/api/tasks/{task_id}/feedback", json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def loop(self, task_id: str) -> Dict[str, Any]:
        """Request changes once, check the revision addressed them, approve."""
        first = self.review_of(task_id, 1)
        self.decide(task_id, decision="rejected", attempt=1, comment=COMMENT)
        second = self.review_of(task_id, 2)
        assert f"addressed: {COMMENT}" in second["output"], second["output"]
        assert second["output"] != first["output"]
        done = self.decide(task_id, decision="approved", attempt=2)
        assert done["status"] == "completed"
        return done


def run(script: List[str], url: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *script],
        cwd=HERE,
        env={**os.environ, "HITL_URL": url, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 30) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the example did not finish:\n{out}")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}"
    return out


def submit_external(reviewer: Reviewer, text: str) -> str:
    resp = reviewer.http.post("/api/tasks", json={"input": text, "processor": "external"})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_worker(hitl: HitlServer) -> None:
    reviewer = Reviewer(hitl.url)
    task_id = submit_external(reviewer, "hello from the queue")
    worker = run(["worker.py"], hitl.url, MAX_TASKS="2")
    try:
        first = reviewer.review_of(task_id, 1)
        assert first["output"] == "HELLO FROM THE QUEUE"
        done = reviewer.loop(task_id)
    finally:
        out = finish(worker)
    assert "answered 2 attempts" in out
    assert done["outcome"] == "approved"
    assert done["final_result"] == f"HELLO FROM THE QUEUE\naddressed: {COMMENT}"


def test_langgraph_agent(hitl: HitlServer) -> None:
    reviewer = Reviewer(hitl.url)
    agent = run(["langgraph_agent.py", "the", "0.5", "release"], hitl.url, REVIEW_TIMEOUT="60")
    try:
        task = reviewer.next_waiting()
        assert task["input"] == "the 0.5 release"
        assert task["processor"] == "external"
        assert task["metadata"] == {"agent": "langgraph"}
        done = reviewer.loop(task["id"])
    finally:
        out = finish(agent)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["task_id"] == task["id"]
    assert result["outcome"] == "approved"
    assert result["drafts"] == 2
    assert result["final_result"] == done["final_result"]
    assert result["final_result"] == f"A short note about the 0.5 release.\naddressed: {COMMENT}"


def readme_snippets() -> List[str]:
    text = (HERE / "README.md").read_text()
    section = text.split("## Bring your own agent", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_snippets_are_short() -> None:
    snippets = readme_snippets()
    assert len(snippets) == 2
    assert all(len(s.strip().splitlines()) < 20 for s in snippets)


def test_readme_agent_snippet(hitl: HitlServer) -> None:
    reviewer = Reviewer(hitl.url)
    agent = run(["-c", readme_snippets()[0]], hitl.url)
    try:
        task = reviewer.next_waiting()
        done = reviewer.loop(task["id"])
    finally:
        out = finish(agent)
    assert out.startswith("approved Release notes for 0.5.")
    assert done["final_result"] == f"Release notes for 0.5.\naddressed: {COMMENT}"


def test_readme_worker_snippet(hitl: HitlServer) -> None:
    reviewer = Reviewer(hitl.url)
    task_id = submit_external(reviewer, "loud please")
    worker = run(["-c", readme_snippets()[1]], hitl.url)
    try:
        done = reviewer.loop(task_id)
        assert done["final_result"] == f"LOUD PLEASE\naddressed: {COMMENT}"
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker, timeout=20)
