"""The synchronous client, its claims and its worker loop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Union

import httpx

from . import _core
from ._core import DEFAULT_TIMEOUT, JSON, Request, Statuses
from .errors import ClaimLost, HitlError
from .types import HistoryEntry, Page, ReviewResult, Revision, Task

log = logging.getLogger("hitl_client")

USER_AGENT = "hitl-client-python"

Handler = Callable[[Task, int, List[HistoryEntry]], str]
"""A worker's handler: ``handler(task, attempt, history) -> output``."""

TaskRef = Union[str, Task]


def _id(task: TaskRef) -> str:
    return task.id if isinstance(task, Task) else task


class Client:
    """A client of one hitl service.

    ``Client("http://127.0.0.1:3000", token="alice:secret")`` sends ``Authorization: Bearer
    alice:secret`` on every request (only needed under ``--auth token``). ``timeout`` is how long
    an ordinary request may take, in seconds; waits and claims, which the server holds open on
    purpose, get their own longer timeouts. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        http: Optional[httpx.Client] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._own_http = http is None
        self._http = http or httpx.Client(
            base_url=self.base_url,
            headers=_core.headers(token, USER_AGENT),
            timeout=timeout,
        )
        if http is not None and token:
            self._http.headers.update(_core.headers(token, USER_AGENT))

    # -- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> JSON:
        """Any request to the service; the answer's JSON (``None`` for 202 and 204), or the
        matching :class:`~hitl_client.HitlError`. For routes this client has no method for."""
        return _core.read(self._raw(method, path, params, json, content, headers, timeout))

    def _raw(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        return self._http.request(
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            timeout=self.timeout if timeout is None else timeout,
        )

    def _send(self, req: Request) -> httpx.Response:
        return self._raw(req.method, req.path, req.params, req.json, None, req.headers, req.timeout)

    def _call(self, req: Request) -> JSON:
        return _core.read(self._send(req))

    def _task(self, req: Request) -> Task:
        return Task.from_json(self._call(req))

    # -- tasks -----------------------------------------------------------------------------

    def submit(
        self,
        input: str,
        max_attempts: Optional[int] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
        review_timeout_secs: Optional[int] = None,
        review_timeout_policy: Optional[str] = None,
        *,
        processor: Optional[str] = None,
        callback_url: Optional[str] = None,
        assignees: Optional[Iterable[str]] = None,
    ) -> Task:
        """Submit a task. hitl's own processor makes its attempts, unless
        ``processor="external"``: then workers claim them (see :meth:`claim`)."""
        return self._task(
            _core.submit(
                input=input,
                processor=processor,
                max_attempts=max_attempts,
                metadata=metadata,
                idempotency_key=idempotency_key,
                review_timeout_secs=review_timeout_secs,
                review_timeout_policy=review_timeout_policy,
                callback_url=callback_url,
                assignees=assignees,
            )
        )

    def submit_output(
        self,
        output: str,
        input: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        max_attempts: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        review_timeout_secs: Optional[int] = None,
        review_timeout_policy: Optional[str] = None,
        *,
        callback_url: Optional[str] = None,
        assignees: Optional[Iterable[str]] = None,
    ) -> Task:
        """Hand in work done outside hitl for review: the task is ``waiting_for_review`` with
        ``output`` as attempt 1. Without an ``input``, the output's first line names it."""
        return self._task(
            _core.submit(
                input=input if input is not None else _core.input_for(output),
                output=output,
                max_attempts=max_attempts,
                metadata=metadata,
                idempotency_key=idempotency_key,
                review_timeout_secs=review_timeout_secs,
                review_timeout_policy=review_timeout_policy,
                callback_url=callback_url,
                assignees=assignees,
            )
        )

    def get(self, task_id: str) -> Task:
        return self._task(Request("GET", _core.task_path(task_id)))

    def list(
        self,
        status: Optional[str] = None,
        q: Optional[str] = None,
        page: Optional[int] = None,
        per_page: Optional[int] = None,
        **filters: Any,
    ) -> Page:
        """One page of tasks, newest first; ``Page.next`` is the next page's path, if any.
        More filters the server takes (``assigned="me"``) pass through as keywords."""
        params = _core.list_params(status, q, page, per_page, **filters)
        return Page.from_json(self._call(Request("GET", "/api/tasks", params=params)))

    def pages(
        self,
        status: Optional[str] = None,
        q: Optional[str] = None,
        per_page: Optional[int] = None,
        **filters: Any,
    ) -> Iterator[Page]:
        """Every page, following ``next`` until there is none."""
        page = self.list(status=status, q=q, per_page=per_page, **filters)
        yield page
        while page.next:
            page = Page.from_json(self._call(Request("GET", page.next)))
            yield page

    def iter_tasks(
        self,
        status: Optional[str] = None,
        q: Optional[str] = None,
        per_page: Optional[int] = None,
        **filters: Any,
    ) -> Iterator[Task]:
        """Every matching task over all pages, newest first."""
        for page in self.pages(status=status, q=q, per_page=per_page, **filters):
            yield from page.tasks

    def wait(
        self,
        task_id: str,
        while_: Statuses = None,
        timeout: Optional[float] = None,
        *,
        max_wait: int = _core.MAX_WAIT_SECS,
    ) -> Task:
        """Wait until the task's status is not one of ``while_`` (a status, a comma-separated
        string or a list; by default the status it has now) and return the task.

        It repeats the server's bounded wait (``GET /api/tasks/{id}?wait=S&while=...``, S at
        most ``max_wait``, 120) until then. Connection errors and 503 answers (a restart of hitl
        ends every wait) are retried after a short back-off. ``timeout`` is the overall limit in
        seconds (``None``: no limit); when it passes first, :class:`~hitl_client.WaitTimeout` is
        raised, carrying the task as last seen in its ``task``.
        """
        waiter = _core.Waiter(task_id, while_, timeout, max_wait)
        while True:
            try:
                task, pause = waiter.answer(self._send(waiter.request()))
            except (httpx.TransportError, HitlError) as exc:
                task, pause = None, waiter.failed(exc)
            if task is not None:
                return task
            if pause:
                time.sleep(pause)

    def decide(
        self,
        task_id: str,
        decision: str,
        attempt: Optional[int] = None,
        comment: Optional[str] = None,
        output: Optional[str] = None,
        *,
        output_sha256: Optional[str] = None,
    ) -> Task:
        """Decide on the attempt under review: ``approved``, ``rejected`` (request changes,
        ``comment`` required) or ``rejected_final``. ``attempt`` defaults to the one under
        review; another one is refused with :class:`~hitl_client.Conflict`."""
        return self._task(_core.decide(task_id, decision, attempt, comment, output, output_sha256))

    def approve(
        self,
        task_id: str,
        attempt: Optional[int] = None,
        comment: Optional[str] = None,
        output: Optional[str] = None,
    ) -> Task:
        """Approve; an ``output`` given replaces the attempt's as the ``final_result``."""
        return self.decide(task_id, "approved", attempt, comment, output)

    def request_changes(self, task_id: str, comment: str, attempt: Optional[int] = None) -> Task:
        return self.decide(task_id, "rejected", attempt, comment)

    def reject(self, task_id: str, comment: Optional[str] = None, attempt: Optional[int] = None) -> Task:
        """Reject for good: the task ends ``failed`` (outcome ``rejected``)."""
        return self.decide(task_id, "rejected_final", attempt, comment)

    def cancel(self, task_id: str) -> Task:
        return self._task(Request("POST", _core.task_path(task_id, "cancel")))

    def retry(self, task_id: str) -> Task:
        """Start again the attempt of a task whose processing failed."""
        return self._task(Request("POST", _core.task_path(task_id, "retry")))

    def history(self, task_id: str) -> List[Dict[str, Any]]:
        """The task's audit trail, oldest entry first."""
        import json

        resp = self._send(Request("GET", _core.task_path(task_id, "history")))
        if resp.status_code >= 400:
            _core.read(resp)
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    # -- work done outside hitl ------------------------------------------------------------

    def submit_revision(
        self, task_id: str, attempt: int, output: str, claim: Optional[str] = None
    ) -> Task:
        """Hand in attempt ``attempt``'s output (``POST /api/tasks/{id}/attempts``): the task
        waits for review of it. ``claim`` is the token of a worker holding the attempt."""
        body = _core.drop_none(attempt=attempt, output=output, claim=claim)
        return self._task(Request("POST", _core.task_path(task_id, "attempts"), json=body))

    def revisions(self, task: TaskRef) -> List[Revision]:
        """The reviewers' requests for changes, oldest first: each rejected attempt's output and
        the comment to address."""
        return (task if isinstance(task, Task) else self.get(task)).revisions()

    def review(
        self,
        output: str,
        input: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        *,
        max_attempts: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> ReviewResult:
        """Submit ``output`` for review and wait for the reviewer (see
        :meth:`wait_for_decision`). When ``result.revision_requested``, revise the output to
        address ``result.comment`` and call :meth:`review_revision`."""
        task = self.submit_output(
            output,
            input=input,
            metadata=metadata,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        return self._await_decision(task, timeout)

    def review_revision(
        self, task_id: str, attempt: int, output: str, timeout: Optional[float] = None
    ) -> ReviewResult:
        """Hand in a revision and wait for the reviewer's answer to it."""
        return self._await_decision(self.submit_revision(task_id, attempt, output), timeout)

    def wait_for_decision(self, task_id: str, timeout: Optional[float] = None) -> ReviewResult:
        """Wait until the reviewer answers: the task ends, or (outside tasks) changes are
        requested (``revision_requested``). While the attempt is still being made, it waits for
        it too. Raises :class:`~hitl_client.WaitTimeout` when ``timeout`` seconds pass first."""
        return self._await_decision(self.get(task_id), timeout)

    def _await_decision(self, task: Task, timeout: Optional[float]) -> ReviewResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = ReviewResult.from_task(task)
            if task.done or result.revision_requested:
                return result
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            task = self.wait(task.id, while_=[task.status], timeout=left)

    # -- workers ---------------------------------------------------------------------------

    def claim(self, wait_secs: int = 30, lease_secs: int = 60) -> Optional["Claim"]:
        """Claim the oldest outside attempt nobody holds, waiting up to ``wait_secs`` for one;
        ``None`` when none came. Renew the claim within ``lease_secs`` or lose it."""
        body = {"wait_secs": wait_secs, "lease_secs": lease_secs}
        data = self._call(
            Request("POST", "/api/claims", json=body, timeout=max(self.timeout, wait_secs + 15.0))
        )
        if data is None:
            return None
        return Claim(self, data, lease_secs)

    def run_worker(
        self,
        handler: Handler,
        *,
        wait_secs: int = 30,
        lease_secs: int = 60,
        max_tasks: Optional[int] = None,
        stop: Optional[threading.Event] = None,
        handle_signals: bool = False,
    ) -> int:
        """Run a :class:`Worker` until ``stop`` is set, a signal comes (with
        ``handle_signals``: SIGINT and SIGTERM) or ``max_tasks`` claims were handled; returns how
        many were."""
        worker = Worker(
            self, handler, wait_secs=wait_secs, lease_secs=lease_secs, max_tasks=max_tasks, stop=stop
        )
        return worker.run(handle_signals=handle_signals)


class Claim:
    """A worker's hold on one attempt, as ``POST /api/claims`` answered it."""

    def __init__(self, client: Client, data: Mapping[str, Any], lease_secs: int = 60) -> None:
        self._client = client
        self.token: str = str(data["claim"])
        self.lease_expires_at: Optional[str] = data.get("lease_expires_at")
        self.task: Task = Task.from_json(data["task"])
        self.attempt: int = int(data.get("attempt", self.task.attempt))
        self.history: List[HistoryEntry] = [HistoryEntry.from_json(h) for h in data.get("history") or []]
        self.lease_secs = lease_secs
        self.lost = False
        self.raw: Dict[str, Any] = dict(data)

    def __repr__(self) -> str:
        return f"Claim(task={self.task.id!r}, attempt={self.attempt}, lease_expires_at={self.lease_expires_at!r})"

    @property
    def task_id(self) -> str:
        return self.task.id

    def _post(self, action: str, body: Optional[Dict[str, Any]] = None) -> JSON:
        try:
            return self._client._call(Request("POST", _core.claim_path(self.token, action), json=body))
        except ClaimLost:
            self.lost = True
            raise

    def renew(self, lease_secs: Optional[int] = None) -> Optional[str]:
        """Extend the lease (by ``lease_secs``, default the claim's); the new expiry.
        :class:`~hitl_client.ClaimLost` if it already ran out or the task moved on."""
        data = self._post("renew", _core.drop_none(lease_secs=lease_secs))
        if isinstance(data, dict) and data.get("lease_expires_at"):
            self.lease_expires_at = data["lease_expires_at"]
        return self.lease_expires_at

    def progress(self, text: str) -> None:
        """Report intermediate results: a ``progress`` event of the attempt."""
        self._post("progress", {"text": text})

    def complete(self, output: str) -> Task:
        """Hand in the attempt's output: the task waits for review."""
        try:
            return self._client.submit_revision(self.task.id, self.attempt, output, claim=self.token)
        except ClaimLost:
            self.lost = True
            raise

    def fail(self, error: str, retry: bool = True) -> Task:
        """Give up: with ``retry`` the attempt goes back to ``pending`` for another worker,
        else the task ends ``failed``."""
        return Task.from_json(self._post("fail", {"error": error, "retry": retry}))


class _Interrupted(BaseException):
    """Raised by the signal handler to end an idle wait for work at once."""


class Worker:
    """Claims attempts of outside tasks, one at a time, and answers them with ``handler``.

    For each claim it renews the lease in a background thread every third of ``lease_secs``,
    calls ``handler(task, attempt, history)``, and hands in the text it returns. When the handler
    raises, the attempt is given up with ``retry=True`` (another worker, or this one, gets it
    again). It stops when :meth:`stop` is called (or the ``stop`` event is set): at once while it
    waits for work, else once the attempt at hand is answered; or after ``max_tasks`` claims.
    Connection errors and 503 answers while waiting for work are retried with back-off.
    """

    def __init__(
        self,
        client: Client,
        handler: Handler,
        *,
        wait_secs: int = 30,
        lease_secs: int = 60,
        max_tasks: Optional[int] = None,
        stop: Optional[threading.Event] = None,
    ) -> None:
        self.client = client
        self.handler = handler
        self.wait_secs = wait_secs
        self.lease_secs = lease_secs
        self.max_tasks = max_tasks
        self.stopping = stop or threading.Event()
        self.handled = 0
        self._idle = False

    def stop(self) -> None:
        self.stopping.set()

    def run(self, handle_signals: bool = False) -> int:
        """Work until stopped; the number of claims handled."""
        if not handle_signals:
            return self._loop()
        def on_signal(signum: int, frame: Any) -> None:
            log.info("signal %s: stopping", signum)
            self.stop()
            if self._idle:
                raise _Interrupted()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._loop()
        except _Interrupted:
            return self.handled
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _loop(self) -> int:
        tries = 0
        while not self.stopping.is_set() and (self.max_tasks is None or self.handled < self.max_tasks):
            try:
                self._idle = True
                claim = self.client.claim(wait_secs=self.wait_secs, lease_secs=self.lease_secs)
            except (httpx.TransportError, HitlError) as exc:
                if not _core.retryable(exc):
                    raise
                tries += 1
                log.warning("claiming failed (%s); trying again", exc)
                self.stopping.wait(_core.backoff(tries, exc))
                continue
            finally:
                self._idle = False
            tries = 0
            if claim is not None:
                self.work(claim)
                self.handled += 1
        return self.handled

    def work(self, claim: Claim) -> None:
        """Answer one claim: run the handler with the lease renewed, then hand in or give up."""
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(claim, done), name=f"hitl-renew-{claim.task.id}", daemon=True
        )
        renewer.start()
        try:
            output = self.handler(claim.task, claim.attempt, claim.history)
            if not isinstance(output, str):
                raise TypeError(f"the handler returned {type(output).__name__}, not str")
        except Exception as exc:  # the handler's failure is the attempt's, not the worker's
            done.set()
            renewer.join()
            log.warning("task %s attempt %s failed: %s", claim.task.id, claim.attempt, exc)
            try:
                claim.fail(f"{type(exc).__name__}: {exc}", retry=True)
            except (httpx.TransportError, HitlError) as fail_exc:
                log.warning("could not give up task %s: %s", claim.task.id, fail_exc)
            return
        done.set()
        renewer.join()
        try:
            claim.complete(output)
        except ClaimLost:
            log.warning("task %s attempt %s: the claim was lost; output dropped", claim.task.id, claim.attempt)
        except (httpx.TransportError, HitlError) as exc:
            log.warning("task %s attempt %s: handing in failed: %s", claim.task.id, claim.attempt, exc)

    def _renew(self, claim: Claim, done: threading.Event) -> None:
        every = max(0.5, self.lease_secs / 3)
        pause = every
        while not done.wait(pause):
            try:
                claim.renew(self.lease_secs)
                pause = every
            except ClaimLost:
                log.warning("task %s attempt %s: claim lost", claim.task.id, claim.attempt)
                return
            except (httpx.TransportError, HitlError) as exc:
                log.warning("renewing the claim on task %s failed: %s", claim.task.id, exc)
                pause = min(every, 1.0)


def run_worker(
    base_url: str,
    handler: Handler,
    *,
    token: Optional[str] = None,
    wait_secs: int = 30,
    lease_secs: int = 60,
    max_tasks: Optional[int] = None,
    stop: Optional[threading.Event] = None,
    handle_signals: bool = True,
) -> int:
    """Connect to ``base_url`` and run a :class:`Worker` there (SIGINT and SIGTERM stop it)."""
    with Client(base_url, token=token) as client:
        return client.run_worker(
            handler,
            wait_secs=wait_secs,
            lease_secs=lease_secs,
            max_tasks=max_tasks,
            stop=stop,
            handle_signals=handle_signals,
        )


__all__ = ["Client", "Claim", "Worker", "Handler", "run_worker"]
