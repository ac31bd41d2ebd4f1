"""A client of hitl, the human-in-the-loop review service: submit work, wait for the reviewer,
hand in revisions, and run workers that claim attempts over HTTP.

    from hitl_client import Client

    with Client("http://127.0.0.1:3000") as hitl:
        result = hitl.review("my draft", input="what it is for")
        while result.revision_requested:
            result = hitl.review_revision(result.task_id, result.attempt, revise(result.comment))
        print(result.outcome, result.final_result)
"""

from .aio import AsyncClaim, AsyncClient, AsyncHandler, AsyncWorker
from .client import Claim, Client, Handler, Worker, run_worker
from .errors import (
    BadRequest,
    ClaimLost,
    Conflict,
    Forbidden,
    HitlError,
    IdempotencyKeyReused,
    InvalidField,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    WaitTimeout,
)
from .types import (
    STATUSES,
    TERMINAL,
    AttemptRecord,
    Decision,
    HistoryEntry,
    Outcome,
    Page,
    ReviewResult,
    Revision,
    Status,
    Task,
)

__version__ = "0.5.0"

__all__ = [
    "AsyncClaim",
    "AsyncClient",
    "AsyncHandler",
    "AsyncWorker",
    "AttemptRecord",
    "BadRequest",
    "Claim",
    "ClaimLost",
    "Client",
    "Conflict",
    "Decision",
    "Forbidden",
    "Handler",
    "HistoryEntry",
    "HitlError",
    "IdempotencyKeyReused",
    "InvalidField",
    "MethodNotAllowed",
    "NotFound",
    "Outcome",
    "Page",
    "ReviewResult",
    "Revision",
    "STATUSES",
    "Status",
    "TERMINAL",
    "Task",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "WaitTimeout",
    "Worker",
    "run_worker",
]
