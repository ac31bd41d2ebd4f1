"""Errors: one class per status the server answers with, and subclasses per error code.

The server answers every refusal with ``{"error": {"code": "...", "message": "..."}}``;
:func:`error_for` turns one into the most specific class below. Catch :class:`HitlError` for any
of them, :class:`Conflict` for any 409, :class:`ClaimLost` for a worker's lost lease.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Type

if TYPE_CHECKING:  # pragma: no cover
    from .types import Task


class HitlError(Exception):
    """A refusal from hitl: the HTTP ``status``, the error ``code`` and the server's ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body


class BadRequest(HitlError):
    """400: a body that is not JSON (``malformed_body``), a path or query that cannot be read."""


class Unauthorized(HitlError):
    """401 ``unauthenticated``: no token, or a wrong one, under ``--auth token``."""


class Forbidden(HitlError):
    """403 ``forbidden`` (the role does not allow it) or ``cross_site``."""


class NotFound(HitlError):
    """404 ``not_found``: no such task (or claim, or delivery)."""


class MethodNotAllowed(HitlError):
    """405 ``method_not_allowed``."""


class Conflict(HitlError):
    """409: the task is not in a state that allows the request (any 409 code)."""


class ClaimLost(Conflict):
    """409 ``claim_lost``: the worker's lease ran out, or the task moved on without it."""


class TooLarge(HitlError):
    """413 ``too_large``: a text or the body is over the server's limit."""


class Unprocessable(HitlError):
    """422: a field the server does not take (any 422 code)."""


class InvalidField(Unprocessable):
    """422 ``invalid_field``: a field missing, unknown, out of range or of the wrong type."""


class IdempotencyKeyReused(Unprocessable):
    """422 ``idempotency_key_reused``: the key was used before with another body."""


class TooManyRequests(HitlError):
    """429: too many event streams from one client (``retry_after`` says when to try again)."""


class Unavailable(HitlError):
    """503: the server cannot answer now (``unavailable``, ``too_many_tasks``,
    ``shutting_down``, ``store_unavailable``, ``database_unavailable``, ...)."""


class WaitTimeout(TimeoutError):
    """A wait's overall deadline passed while the task stayed in the statuses waited on.

    ``task`` is the task as last seen (or ``None`` if it could not be read at all).
    """

    def __init__(self, task_id: str, task: "Optional[Task]", timeout: Optional[float]) -> None:
        status = task.status if task is not None else "unknown"
        super().__init__(f"task {task_id} still {status} after waiting {timeout} s")
        self.task_id = task_id
        self.task = task
        self.timeout = timeout


_BY_STATUS: Dict[int, Type[HitlError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: TooLarge,
    422: Unprocessable,
    429: TooManyRequests,
    503: Unavailable,
}

_BY_CODE: Dict[str, Type[HitlError]] = {
    "claim_lost": ClaimLost,
    "invalid_field": InvalidField,
    "idempotency_key_reused": IdempotencyKeyReused,
}


def error_for(
    status: int,
    body: Any,
    text: str = "",
    retry_after: Optional[str] = None,
) -> HitlError:
    """The exception for an error answer: ``body`` is its parsed JSON (or ``None``)."""
    code = "http_error"
    message = text.strip()[:500] or f"HTTP {status}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
    cls = _BY_CODE.get(code)
    if cls is None or not issubclass(cls, _BY_STATUS.get(status, HitlError)):
        cls = _BY_STATUS.get(status, HitlError)
    wait: Optional[float] = None
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = None
    return cls(status, code, message, retry_after=wait, body=body)
