"""The job state machine. Pure: given a state and an event, the next state.

::

    submitted → accepted → rendering ⇄ retrying → rendered → completed
        ↘ rejected            ↘ failed, cancelled (from any non-final state)
                                 failed → retrying only by job.redriven (an operator's replay)

Transitions only move forward. A late, duplicated or out-of-order event that would
move a job backwards (``job.started`` after ``job.rendered``, anything after a final
state) is still recorded in the ledger but leaves the state as it is.
"""

from __future__ import annotations

from enum import StrEnum

from shared.events import EventType


class JobStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RENDERING = "rendering"
    RETRYING = "retrying"
    RENDERED = "rendered"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.REJECTED})

#: How far along the happy path a state is; a transition never lowers it.
_RANK = {
    JobStatus.SUBMITTED: 0,
    JobStatus.ACCEPTED: 1,
    JobStatus.RENDERING: 2,
    JobStatus.RETRYING: 2,
    JobStatus.RENDERED: 3,
}

#: The state each event asks for.
_TARGET: dict[EventType, JobStatus | None] = {
    EventType.SUBMITTED: None,
    EventType.CANCEL_REQUESTED: None,
    EventType.ACCEPTED: JobStatus.ACCEPTED,
    EventType.REJECTED: JobStatus.REJECTED,
    EventType.STARTED: JobStatus.RENDERING,
    EventType.PROGRESS: JobStatus.RENDERING,
    EventType.RETRYING: JobStatus.RETRYING,
    EventType.RENDERED: JobStatus.RENDERED,
    EventType.ARCHIVED: JobStatus.COMPLETED,
    EventType.FAILED: JobStatus.FAILED,
    EventType.CANCELLED: JobStatus.CANCELLED,
    EventType.REDRIVEN: JobStatus.RETRYING,
}


def next_state(current: JobStatus, event: EventType) -> JobStatus:
    """The state after ``event``; ``current`` when the event may not move the job."""
    target = _TARGET[event]
    if event is EventType.REDRIVEN:
        # The one way out of a final state: an operator replays a failed job.
        return JobStatus.RETRYING if current is JobStatus.FAILED else current
    if target is None or current in FINAL or target == current:
        return current
    if target in FINAL:
        # Rejection only judges a request that has not been accepted.
        if target is JobStatus.REJECTED and current is not JobStatus.SUBMITTED:
            return current
        return target
    # RENDERING ⇄ RETRYING share a rank: a new attempt may start after a retry and a
    # retry may follow a started attempt, but a retry never follows "rendered".
    if _RANK[target] > _RANK[current] or (
        _RANK[target] == _RANK[current] == _RANK[JobStatus.RENDERING]
    ):
        return target
    return current
