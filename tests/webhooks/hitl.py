"""A real hitl for the webhook tests, in the manner of clients/python's ``HitlServer``: the binary
from HITL_BIN, started on a free port (``--addr 127.0.0.1:0``, the URL read from the line
``listening on http://HOST:PORT``), with ``--process-delay-ms 0``; its output kept in ``log``.
It can also be killed with SIGKILL (``kill()``) and started again on the same ``--data-dir``.
The API calls the tests need are methods here, over httpx."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from typing import Dict, List, Optional, Sequence

import httpx

_LISTENING = re.compile(r"listening on (http://\S+)")

#: The statuses a task ends in.
ENDED = ("completed", "failed", "cancelled")


class Hitl:
    def __init__(self, binary: str, args: Sequence[str] = (), start_timeout: float = 30.0) -> None:
        self.binary = binary
        self.args = list(args)
        self.start_timeout = start_timeout
        self.url = ""
        self.lines: List[str] = []
        self.proc: "Optional[subprocess.Popen[str]]" = None
        self.http: Optional[httpx.Client] = None
        self._found = threading.Event()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    # -- the process ------------------------------------------------------------------------

    def start(self) -> "Hitl":
        # Only what the test says: no HITL_* setting of the caller's leaks in, and no proxy
        # stands between hitl and the receivers on 127.0.0.1.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HITL_") and not k.lower().endswith("_proxy")}
        env.setdefault("RUST_LOG", "hitl=info,warn")
        cmd = [self.binary, "--addr", "127.0.0.1:0", "--process-delay-ms", "0", *self.args]
        self._found.clear()
        self.lines.append(f"$ {' '.join(_masked(cmd))}\n")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, text=True, bufsize=1,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not self._found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hitl did not start ({' '.join(cmd)}):\n{self.log}")
        if self.http is not None:
            self.http.close()
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)
        return self

    def _read(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)
            if not self._found.is_set():
                m = _LISTENING.search(line)
                if m:
                    self.url = m.group(1).rstrip("/")
                    self._found.set()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed beyond what was committed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.lines.append("--- killed with SIGKILL ---\n")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if self.http is not None:
            self.http.close()
            self.http = None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    # -- the API ----------------------------------------------------------------------------

    @property
    def api(self) -> httpx.Client:
        assert self.http is not None, "hitl is not running"
        return self.http

    def submit(self, text: str = "Write a haiku about webhooks", **fields: object) -> dict:
        answer = self.api.post("/api/tasks", json={"input": text, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def task(self, task_id: str) -> dict:
        answer = self.api.get(f"/api/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def reach(self, task_id: str, status: str, attempt: Optional[int] = None,
              timeout: float = 15.0) -> dict:
        """Waits (with ``?wait=&while=``) until the task is in ``status`` (at ``attempt``)."""
        deadline = time.monotonic() + timeout
        task = self.task(task_id)
        while not (task["status"] == status and (attempt is None or task["attempt"] == attempt)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"task {task_id} never reached {status} ({attempt}): {task}")
            answer = self.api.get(
                f"/api/tasks/{task_id}",
                params={"wait": max(1, min(10, int(left))), "while": task["status"]},
            )
            assert answer.status_code == 200, answer.text
            task = answer.json()
        return task

    def decide(self, task_id: str, decision: str, attempt: int,
               comment: Optional[str] = None) -> dict:
        body: Dict[str, object] = {"decision": decision, "attempt": attempt}
        if comment is not None:
            body["comment"] = comment
        answer = self.api.post(f"/api/tasks/{task_id}/feedback", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def loop(self, text: str = "Write a haiku about webhooks", **fields: object) -> str:
        """One whole review loop: submit, review attempt 1 and ask for changes, approve attempt
        2. Returns the task's id."""
        task = self.submit(text, **fields)
        self.reach(task["id"], "waiting_for_review", 1)
        self.decide(task["id"], "rejected", 1, "Shorter, please")
        self.reach(task["id"], "waiting_for_review", 2)
        self.decide(task["id"], "approved", 2, "Good now")
        self.reach(task["id"], "completed")
        return task["id"]

    def status_events(self, task_id: str, timeout: float = 10.0) -> List[dict]:
        """The task's status events as its event stream replays them from the journal
        (``Last-Event-ID: 0``), up to the one that ended it: what webhooks must tell of."""
        events: List[dict] = []
        with httpx.Client(base_url=self.url, timeout=timeout, trust_env=False) as client:
            with client.stream("GET", "/api/events", params={"task": task_id},
                               headers={"Last-Event-ID": "0"}) as stream:
                assert stream.status_code == 200, stream.read()
                kind = None
                try:
                    for line in stream.iter_lines():
                        if line.startswith("event:"):
                            kind = line[len("event:"):].strip()
                        elif line.startswith("data:") and kind == "status":
                            events.append(json.loads(line[len("data:"):]))
                            if events[-1]["status"] in ENDED:
                                return events
                        elif not line:
                            kind = None
                except httpx.ReadTimeout:
                    pass
        raise AssertionError(f"the stream of {task_id} did not reach its end: {events}")

    def deliveries(self, task_id: str) -> List[dict]:
        answer = self.api.get(f"/api/tasks/{task_id}/deliveries")
        assert answer.status_code == 200, answer.text
        return answer.json()["deliveries"]

    def redeliver(self, delivery_id: str) -> httpx.Response:
        return self.api.post(f"/api/deliveries/{delivery_id}/redeliver")

    def metrics(self) -> str:
        answer = self.api.get("/metrics")
        assert answer.status_code == 200, answer.text
        return answer.text

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in /metrics (0 when it is not there yet)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            base, _, rest = key.partition("{")
            if base != name:
                continue
            got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
            if got == want:
                return float(value)
        return 0.0


def _masked(cmd: List[str]) -> List[str]:
    """The command line, the signing secret left out (so a log that shows it came from hitl)."""
    return ["<secret>" if i and cmd[i - 1] == "--webhook-secret" else arg
            for i, arg in enumerate(cmd)]
