"""The job ledger: every event recorded once, numbered per job, driving the job's state.

Recording takes the job's ``job_states`` row lock, so events of one job are numbered
one after another (no gaps, no repeats) however many archivers run.

It also takes a per-project advisory lock from just before the row is inserted until
the transaction commits. Within one project, ``job_events.id`` values are therefore
allocated *and committed* in the same order: a reader that sees row ``n`` of a project
has seen every earlier row of that project. The notifier's project streams rely on
this to resume from an id without gaps (see docs/progress.md).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.archiver import locks
from services.archiver.states import FINAL, JobStatus, next_state
from shared.db.models import Job, JobEvent, JobState
from shared.events import (
    Event,
    EventType,
    JobFailed,
    JobProgress,
    JobRejected,
    JobRetrying,
    JobStarted,
    LedgerEntry,
)


class UnknownJob(LookupError):
    """An event for a job ingest never recorded (foreign or forged)."""


@dataclasses.dataclass(frozen=True)
class Recorded:
    entry: LedgerEntry
    duplicate: bool


def _entry(row: JobEvent) -> LedgerEntry:
    return LedgerEntry(
        seq=row.seq,
        job_id=row.job_id,
        project=row.project_slug,
        event_type=EventType(row.event_type),
        recorded_at=row.recorded_at,
        state=row.state,
        event=row.payload,
    )


async def record_event(session: AsyncSession, event: Event) -> Recorded:
    """Append ``event`` to its job's ledger and move the job's state; idempotent by event id.

    Call inside a transaction; the caller commits.
    """
    # The common case is a job that already has a state row: lock it at once (one round
    # trip). Only a job's first event checks the job and creates the row.
    state = await _locked_state(session, event.job_id)
    if state is None:
        # (The event's project is kept as is: a rejected request's job row holds the raw,
        # possibly invalid, project while its event carries a fallback slug.)
        if not await _job_exists(session, event.job_id):
            raise UnknownJob(f"no job {event.job_id} was ever submitted")
        await session.execute(
            insert(JobState)
            .values(job_id=event.job_id, state=JobStatus.SUBMITTED.value, last_seq=0)
            .on_conflict_do_nothing(index_elements=[JobState.job_id])
        )
        state = await _locked_state(session, event.job_id)
        assert state is not None
    # Under the job's lock: a concurrent delivery of the same event may have won.
    previous = (
        await session.scalars(select(JobEvent).where(JobEvent.event_id == event.event_id))
    ).first()
    if previous is not None:
        return Recorded(entry=_entry(previous), duplicate=True)

    current = JobStatus(state.state)
    new = next_state(current, event.event_type)
    now = datetime.now(UTC)
    state.last_seq += 1
    state.state = new.value
    state.updated_at = now
    _apply_details(state, event, moved=new is not current)
    if new is not current and new in FINAL:
        state.finished_at = now
        if new is JobStatus.COMPLETED:
            state.progress = 100.0
    row = JobEvent(
        job_id=event.job_id,
        seq=state.last_seq,
        event_id=event.event_id,
        event_type=event.event_type.value,
        project_slug=event.project,
        occurred_at=event.occurred_at,
        recorded_at=now,
        state=new.value,
        payload=event.model_dump(mode="json"),
    )
    await locks.hold(session, "ledger", event.project)
    session.add(row)
    await session.flush()
    return Recorded(entry=_entry(row), duplicate=False)


async def _locked_state(session: AsyncSession, job_id: uuid.UUID) -> JobState | None:
    query = select(JobState).where(JobState.job_id == job_id).with_for_update()
    return (await session.scalars(query)).first()


async def _job_exists(session: AsyncSession, job_id: uuid.UUID) -> bool:
    return (await session.scalar(select(Job.id).where(Job.id == job_id))) is not None


def _apply_details(state: JobState, event: Event, *, moved: bool) -> None:
    """Copy what watchers want to see at a glance (attempt, progress, reason)."""
    if JobStatus(state.state) in FINAL and not moved:
        return
    if isinstance(event, JobStarted):
        state.attempt = max(state.attempt, event.attempt)
        state.backend = event.backend
        state.started_at = state.started_at or event.occurred_at
        state.progress = 0.0
    elif isinstance(event, JobProgress) and event.attempt >= state.attempt:
        state.progress = (
            max(state.progress, event.percent) if event.attempt == state.attempt else event.percent
        )
        state.attempt = event.attempt
    elif isinstance(event, JobRetrying):
        state.reason = event.reason
        state.attempt = max(state.attempt, event.attempt)
    elif isinstance(event, JobFailed | JobRejected):
        state.reason = (
            event.reason
            if isinstance(event, JobFailed)
            else "; ".join(f"{p.field}: {p.message}" for p in event.problems)
        )
