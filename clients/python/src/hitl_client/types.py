"""The values hitl answers with, as typed dataclasses.

Every value keeps the JSON it was read from in ``raw``: the contract lets shapes grow, so a field
a newer server adds is never lost, only not yet typed here. Timestamps are kept as the RFC 3339
strings the server sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Literal, Mapping, Optional, Tuple

Status = Literal["pending", "running", "waiting_for_review", "completed", "failed", "cancelled"]
"""A task's status, as written on the wire."""

Decision = Literal["approved", "rejected", "rejected_final"]
"""A reviewer's decision: approve, request changes (``rejected``), or reject for good."""

Outcome = Literal[
    "approved", "rejected", "changes_exhausted", "processing_failed", "timed_out", "cancelled"
]
"""How a task ended (``None`` until it ends)."""

STATUSES: Tuple[str, ...] = ("pending", "running", "waiting_for_review", "completed", "failed", "cancelled")
TERMINAL: FrozenSet[str] = frozenset({"completed", "failed", "cancelled"})
"""Statuses a task never leaves."""


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


@dataclass(frozen=True)
class AttemptRecord:
    """One decided attempt, from a Task's ``attempts``."""

    attempt: int
    output: Optional[str]
    decision: Optional[str]
    comment: Optional[str] = None
    decided_at: Optional[str] = None
    decided_by: Optional[str] = None
    edited_output: Optional[str] = None
    timed_out: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AttemptRecord":
        return cls(
            attempt=int(data.get("attempt", 0)),
            output=_opt_str(data.get("output")),
            decision=_opt_str(data.get("decision")),
            comment=_opt_str(data.get("comment")),
            decided_at=_opt_str(data.get("decided_at")),
            decided_by=_opt_str(data.get("decided_by")),
            edited_output=_opt_str(data.get("edited_output")),
            timed_out=bool(data.get("timed_out", False)),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Task:
    """A task as ``GET /api/tasks/{id}`` answers it."""

    id: str
    status: str
    input: str
    attempt: int
    max_attempts: int
    output: Optional[str] = None
    final_result: Optional[str] = None
    error: Optional[str] = None
    outcome: Optional[str] = None
    processor: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    attempts: List[AttemptRecord] = field(default_factory=list)
    submitted_by: Optional[str] = None
    cancelled_by: Optional[str] = None
    assignees: List[str] = field(default_factory=list)
    review_deadline: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Task":
        metadata = data.get("metadata")
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            input=str(data.get("input", "")),
            attempt=int(data.get("attempt", 0)),
            max_attempts=int(data.get("max_attempts", 0)),
            output=_opt_str(data.get("output")),
            final_result=_opt_str(data.get("final_result")),
            error=_opt_str(data.get("error")),
            outcome=_opt_str(data.get("outcome")),
            processor=_opt_str(data.get("processor")),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else None,
            attempts=[AttemptRecord.from_json(a) for a in data.get("attempts") or []],
            submitted_by=_opt_str(data.get("submitted_by")),
            cancelled_by=_opt_str(data.get("cancelled_by")),
            assignees=[str(a) for a in data.get("assignees") or []],
            review_deadline=_opt_str(data.get("review_deadline")),
            created_at=_opt_str(data.get("created_at")),
            updated_at=_opt_str(data.get("updated_at")),
            raw=dict(data),
        )

    @property
    def done(self) -> bool:
        """Has the task ended (``completed``, ``failed`` or ``cancelled``)?"""
        return self.status in TERMINAL

    @property
    def last_decision(self) -> Optional[AttemptRecord]:
        """The newest decided attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    def revisions(self) -> List["Revision"]:
        """The reviewers' requests for changes, oldest first (see :class:`Revision`)."""
        return [
            Revision(
                attempt=a.attempt,
                output=a.output,
                comment=a.comment or "",
                decided_by=a.decided_by,
                decided_at=a.decided_at,
            )
            for a in self.attempts
            if a.decision == "rejected"
        ]


@dataclass(frozen=True)
class Revision:
    """A request for changes: the output of ``attempt`` and the comment that asked for more."""

    attempt: int
    output: Optional[str]
    comment: str
    decided_by: Optional[str] = None
    decided_at: Optional[str] = None


@dataclass(frozen=True)
class HistoryEntry:
    """An earlier attempt as a worker is given it: its output and the reviewer's comment."""

    attempt: int
    output: Optional[str]
    comment: Optional[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "HistoryEntry":
        return cls(
            attempt=int(data.get("attempt", 0)),
            output=_opt_str(data.get("output")),
            comment=_opt_str(data.get("comment")),
        )


@dataclass(frozen=True)
class Page:
    """One page of ``GET /api/tasks``. ``next`` is the path of the next page, or ``None``."""

    tasks: List[Task]
    next: Optional[str] = None
    total: Optional[int] = None
    counts: Dict[str, int] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Page":
        total = data.get("total")
        return cls(
            tasks=[Task.from_json(t) for t in data.get("tasks") or []],
            next=_opt_str(data.get("next")),
            total=None if total is None else int(total),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            raw=dict(data),
        )

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


@dataclass(frozen=True)
class ReviewResult:
    """Where a review stands once hitl has an answer for the agent that asked for it.

    - ``revision_requested``: the reviewer asked for changes; ``comment`` says which, and
      ``attempt`` is the number of the attempt to hand in next with ``submit_revision``.
    - ``approved``: ``final_result`` is what counts (the output, or the reviewer's edit);
      ``comment`` is the approval's note, if any.
    - otherwise the task ended another way: ``outcome`` says how (``rejected``,
      ``changes_exhausted``, ``timed_out``, ``cancelled``, ...), ``comment`` is the reason given.
    """

    task: Task
    status: str
    outcome: Optional[str]
    decision: Optional[str]
    comment: Optional[str]
    final_result: Optional[str]
    attempt: int
    revision_requested: bool

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def approved(self) -> bool:
        return self.status == "completed"

    @property
    def done(self) -> bool:
        return self.task.done

    @classmethod
    def from_task(cls, task: Task) -> "ReviewResult":
        last = task.last_decision
        decision = last.decision if last else None
        comment = last.comment if last else None
        revision = (
            task.status in ("pending", "running")
            # hitl's own processor makes the next attempt of its tasks by itself.
            and task.processor in (None, "external")
            and last is not None
            and last.decision == "rejected"
            and last.attempt == task.attempt - 1
        )
        if task.status == "waiting_for_review" or (
            task.status in ("pending", "running") and not revision
        ):
            # Nothing decided on the attempt at hand yet.
            decision, comment = None, None
        outcome = task.outcome
        if outcome is None and task.status == "completed":
            outcome = "approved"
        elif outcome is None and task.status == "cancelled":
            outcome = "cancelled"
        return cls(
            task=task,
            status=task.status,
            outcome=outcome,
            decision=decision,
            comment=comment,
            final_result=task.final_result,
            attempt=task.attempt,
            revision_requested=revision,
        )
