"""The asynchronous client (``httpx.AsyncClient``), its claims and its worker loop. Every method
is the sync :class:`~hitl_client.Client`'s, awaited."""

from __future__ import annotations

import asyncio
import inspect
import json as jsonlib
import logging
import time
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Union,
)

import httpx

from . import _core
from ._core import DEFAULT_TIMEOUT, JSON, Request, Statuses
from .client import USER_AGENT, TaskRef
from .errors import ClaimLost, HitlError
from .types import HistoryEntry, Page, ReviewResult, Revision, Task

log = logging.getLogger("hitl_client")

AsyncHandler = Callable[[Task, int, List[HistoryEntry]], Union[str, Awaitable[str]]]
"""A worker's handler: ``handler(task, attempt, history)``, returning the output or an
awaitable of it. A plain function is run in a thread, so it may block."""


class AsyncClient:
    """The asynchronous twin of :class:`~hitl_client.Client`: same constructor, same methods,
    each a coroutine. ``async with AsyncClient(url) as hitl: ...``"""

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url,
            headers=_core.headers(token, USER_AGENT),
            timeout=timeout,
        )
        if http is not None and token:
            self._http.headers.update(_core.headers(token, USER_AGENT))

    # -- plumbing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def request(
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
        """Any request to the service (see :meth:`hitl_client.Client.request`)."""
        return _core.read(await self._raw(method, path, params, json, content, headers, timeout))

    async def _raw(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        return await self._http.request(
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            timeout=self.timeout if timeout is None else timeout,
        )

    async def _send(self, req: Request) -> httpx.Response:
        return await self._raw(req.method, req.path, req.params, req.json, None, req.headers, req.timeout)

    async def _call(self, req: Request) -> JSON:
        return _core.read(await self._send(req))

    async def _task(self, req: Request) -> Task:
        return Task.from_json(await self._call(req))

    # -- tasks -----------------------------------------------------------------------------

    async def submit(
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
        return await self._task(
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

    async def submit_output(
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
        return await self._task(
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

    async def get(self, task_id: str) -> Task:
        return await self._task(Request("GET", _core.task_path(task_id)))

    async def list(
        self,
        status: Optional[str] = None,
        q: Optional[str] = None,
        page: Optional[int] = None,
        per_page: Optional[int] = None,
        **filters: Any,
    ) -> Page:
        params = _core.list_params(status, q, page, per_page, **filters)
        return Page.from_json(await self._call(Request("GET", "/api/tasks", params=params)))

    async def pages(
        self,
        status: Optional[str] = None,
        q: Optional[str] = None,
        per_page: Optional[int] = None,
        **filters: Any,
    ) -> AsyncIterator[Page]:
        page = await self.list(status=status, q=q, per_page=per_page, **filters)
        yield page
        while page.next:
            page = Page.from_json(await self._call(Request("GET", page.next)))
            yield page

    async def iter_tasks(
        self,
        status: Optional[str] = None,
        q: Optional[str] = None,
        per_page: Optional[int] = None,
        **filters: Any,
    ) -> AsyncIterator[Task]:
        async for page in self.pages(status=status, q=q, per_page=per_page, **filters):
            for task in page.tasks:
                yield task

    async def wait(
        self,
        task_id: str,
        while_: Statuses = None,
        timeout: Optional[float] = None,
        *,
        max_wait: int = _core.MAX_WAIT_SECS,
    ) -> Task:
        """See :meth:`hitl_client.Client.wait`: raises :class:`~hitl_client.WaitTimeout` when
        ``timeout`` passes first."""
        waiter = _core.Waiter(task_id, while_, timeout, max_wait)
        while True:
            try:
                task, pause = waiter.answer(await self._send(waiter.request()))
            except (httpx.TransportError, HitlError) as exc:
                task, pause = None, waiter.failed(exc)
            if task is not None:
                return task
            if pause:
                await asyncio.sleep(pause)

    async def decide(
        self,
        task_id: str,
        decision: str,
        attempt: Optional[int] = None,
        comment: Optional[str] = None,
        output: Optional[str] = None,
        *,
        output_sha256: Optional[str] = None,
    ) -> Task:
        return await self._task(_core.decide(task_id, decision, attempt, comment, output, output_sha256))

    async def approve(
        self,
        task_id: str,
        attempt: Optional[int] = None,
        comment: Optional[str] = None,
        output: Optional[str] = None,
    ) -> Task:
        return await self.decide(task_id, "approved", attempt, comment, output)

    async def request_changes(self, task_id: str, comment: str, attempt: Optional[int] = None) -> Task:
        return await self.decide(task_id, "rejected", attempt, comment)

    async def reject(
        self, task_id: str, comment: Optional[str] = None, attempt: Optional[int] = None
    ) -> Task:
        return await self.decide(task_id, "rejected_final", attempt, comment)

    async def cancel(self, task_id: str) -> Task:
        return await self._task(Request("POST", _core.task_path(task_id, "cancel")))

    async def retry(self, task_id: str) -> Task:
        return await self._task(Request("POST", _core.task_path(task_id, "retry")))

    async def history(self, task_id: str) -> List[Dict[str, Any]]:
        resp = await self._send(Request("GET", _core.task_path(task_id, "history")))
        if resp.status_code >= 400:
            _core.read(resp)
        return [jsonlib.loads(line) for line in resp.text.splitlines() if line.strip()]

    # -- work done outside hitl ------------------------------------------------------------

    async def submit_revision(
        self, task_id: str, attempt: int, output: str, claim: Optional[str] = None
    ) -> Task:
        body = _core.drop_none(attempt=attempt, output=output, claim=claim)
        return await self._task(Request("POST", _core.task_path(task_id, "attempts"), json=body))

    async def revisions(self, task: TaskRef) -> List[Revision]:
        return (task if isinstance(task, Task) else await self.get(task)).revisions()

    async def review(
        self,
        output: str,
        input: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        *,
        max_attempts: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> ReviewResult:
        task = await self.submit_output(
            output,
            input=input,
            metadata=metadata,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        return await self._await_decision(task, timeout)

    async def review_revision(
        self, task_id: str, attempt: int, output: str, timeout: Optional[float] = None
    ) -> ReviewResult:
        return await self._await_decision(await self.submit_revision(task_id, attempt, output), timeout)

    async def wait_for_decision(self, task_id: str, timeout: Optional[float] = None) -> ReviewResult:
        return await self._await_decision(await self.get(task_id), timeout)

    async def _await_decision(self, task: Task, timeout: Optional[float]) -> ReviewResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = ReviewResult.from_task(task)
            if task.done or result.revision_requested:
                return result
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            task = await self.wait(task.id, while_=[task.status], timeout=left)

    # -- workers ---------------------------------------------------------------------------

    async def claim(self, wait_secs: int = 30, lease_secs: int = 60) -> Optional["AsyncClaim"]:
        body = {"wait_secs": wait_secs, "lease_secs": lease_secs}
        data = await self._call(
            Request("POST", "/api/claims", json=body, timeout=max(self.timeout, wait_secs + 15.0))
        )
        if data is None:
            return None
        return AsyncClaim(self, data, lease_secs)

    async def run_worker(
        self,
        handler: AsyncHandler,
        *,
        wait_secs: int = 30,
        lease_secs: int = 60,
        max_tasks: Optional[int] = None,
        stop: Optional[asyncio.Event] = None,
    ) -> int:
        worker = AsyncWorker(
            self, handler, wait_secs=wait_secs, lease_secs=lease_secs, max_tasks=max_tasks, stop=stop
        )
        return await worker.run()


class AsyncClaim:
    """A worker's hold on one attempt (see :class:`hitl_client.Claim`); methods are coroutines."""

    def __init__(self, client: AsyncClient, data: Mapping[str, Any], lease_secs: int = 60) -> None:
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
        return f"AsyncClaim(task={self.task.id!r}, attempt={self.attempt}, lease_expires_at={self.lease_expires_at!r})"

    @property
    def task_id(self) -> str:
        return self.task.id

    async def _post(self, action: str, body: Optional[Dict[str, Any]] = None) -> JSON:
        try:
            return await self._client._call(Request("POST", _core.claim_path(self.token, action), json=body))
        except ClaimLost:
            self.lost = True
            raise

    async def renew(self, lease_secs: Optional[int] = None) -> Optional[str]:
        data = await self._post("renew", _core.drop_none(lease_secs=lease_secs))
        if isinstance(data, dict) and data.get("lease_expires_at"):
            self.lease_expires_at = data["lease_expires_at"]
        return self.lease_expires_at

    async def progress(self, text: str) -> None:
        await self._post("progress", {"text": text})

    async def complete(self, output: str) -> Task:
        try:
            return await self._client.submit_revision(self.task.id, self.attempt, output, claim=self.token)
        except ClaimLost:
            self.lost = True
            raise

    async def fail(self, error: str, retry: bool = True) -> Task:
        return Task.from_json(await self._post("fail", {"error": error, "retry": retry}))


class AsyncWorker:
    """The asynchronous :class:`hitl_client.Worker`: the lease is renewed by a task of its own;
    :meth:`stop` (or setting ``stop``) ends a wait for work at once."""

    def __init__(
        self,
        client: AsyncClient,
        handler: AsyncHandler,
        *,
        wait_secs: int = 30,
        lease_secs: int = 60,
        max_tasks: Optional[int] = None,
        stop: Optional[asyncio.Event] = None,
    ) -> None:
        self.client = client
        self.handler = handler
        self.wait_secs = wait_secs
        self.lease_secs = lease_secs
        self.max_tasks = max_tasks
        self.stopping = stop or asyncio.Event()
        self.handled = 0

    def stop(self) -> None:
        self.stopping.set()

    async def _claim_or_stop(self) -> Optional[AsyncClaim]:
        claiming = asyncio.ensure_future(
            self.client.claim(wait_secs=self.wait_secs, lease_secs=self.lease_secs)
        )
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({claiming, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not claiming.done():
            claiming.cancel()
            try:
                await claiming
            except (asyncio.CancelledError, Exception):
                pass
            return None
        return claiming.result()

    async def run(self) -> int:
        tries = 0
        while not self.stopping.is_set() and (self.max_tasks is None or self.handled < self.max_tasks):
            try:
                claim = await self._claim_or_stop()
            except (httpx.TransportError, HitlError) as exc:
                if not _core.retryable(exc):
                    raise
                tries += 1
                log.warning("claiming failed (%s); trying again", exc)
                try:
                    await asyncio.wait_for(self.stopping.wait(), _core.backoff(tries, exc))
                except asyncio.TimeoutError:
                    pass
                continue
            tries = 0
            if claim is not None:
                await self.work(claim)
                self.handled += 1
        return self.handled

    async def _call_handler(self, claim: AsyncClaim) -> str:
        if inspect.iscoroutinefunction(self.handler):
            result: object = await self.handler(claim.task, claim.attempt, claim.history)
        else:
            result = await asyncio.to_thread(self.handler, claim.task, claim.attempt, claim.history)
            if inspect.isawaitable(result):
                result = await result
        if not isinstance(result, str):
            raise TypeError(f"the handler returned {type(result).__name__}, not str")
        return result

    async def work(self, claim: AsyncClaim) -> None:
        renewer = asyncio.ensure_future(self._renew(claim))
        try:
            output = await self._call_handler(claim)
        except Exception as exc:
            renewer.cancel()
            log.warning("task %s attempt %s failed: %s", claim.task.id, claim.attempt, exc)
            try:
                await claim.fail(f"{type(exc).__name__}: {exc}", retry=True)
            except (httpx.TransportError, HitlError) as fail_exc:
                log.warning("could not give up task %s: %s", claim.task.id, fail_exc)
            return
        finally:
            renewer.cancel()
            try:
                await renewer
            except asyncio.CancelledError:
                pass
        try:
            await claim.complete(output)
        except ClaimLost:
            log.warning("task %s attempt %s: the claim was lost; output dropped", claim.task.id, claim.attempt)
        except (httpx.TransportError, HitlError) as exc:
            log.warning("task %s attempt %s: handing in failed: %s", claim.task.id, claim.attempt, exc)

    async def _renew(self, claim: AsyncClaim) -> None:
        every = max(0.5, self.lease_secs / 3)
        pause = every
        while True:
            await asyncio.sleep(pause)
            try:
                await claim.renew(self.lease_secs)
                pause = every
            except ClaimLost:
                log.warning("task %s attempt %s: claim lost", claim.task.id, claim.attempt)
                return
            except (httpx.TransportError, HitlError) as exc:
                log.warning("renewing the claim on task %s failed: %s", claim.task.id, exc)
                pause = min(every, 1.0)


__all__ = ["AsyncClient", "AsyncClaim", "AsyncWorker", "AsyncHandler"]
