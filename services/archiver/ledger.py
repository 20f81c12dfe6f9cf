"""The job ledger: every event recorded once, numbered per job, driving the job's state.

Events are recorded in batches: whatever deliveries are waiting when the previous
batch commits (up to a bound) go into one transaction of a few set-based statements,
however many events and jobs it holds:

1. the facts of jobs not seen before are read from ``jobs`` (cached after that), and
   their ``job_states`` rows created, in one statement;
2. every job of the batch is locked (a transaction-scoped advisory lock per job, taken
   in key order, so two archivers with overlapping jobs cannot deadlock), and then
   their state rows read;
3. events already recorded (a redelivery, a re-publish) are looked up by event id,
   under those locks, so a duplicate is recorded exactly once however many
   archivers see it;
4. the new rows are inserted with one ``INSERT … SELECT FROM unnest(…)``, and
5. every job's state row is updated once.

Per-job ``seq`` is gap-free because a job's events are numbered under its lock. There
is no per-project lock: project streams resume from ``position``, which orders rows by
the id of the transaction that recorded them (see docs/progress.md). Advisory locks
assign no transaction id, so a batch gets its id at its first write, after it holds
every lock it needs: a job's later events always carry a later transaction id, and so
a higher position, than its earlier ones.

The database is the truth: an event is recorded under its job's project as ingest
recorded it; an event that names another project is refused as forged.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.archiver.facts import JobFacts, JobFactsCache
from services.archiver.locks import lock_key
from services.archiver.states import FINAL, JobStatus, next_state
from shared.events import (
    Event,
    EventType,
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRejected,
    JobRendered,
    JobRetrying,
    JobStarted,
    LedgerEntry,
)
from shared.lru import Lru

#: At most this many rows per transaction: ``position`` keeps 16 bits for the ordinal.
MAX_BATCH_ROWS = 65_535


class UnknownJob(LookupError):
    """An event for a job ingest never recorded (foreign or forged)."""


class ForgedEvent(ValueError):
    """An event whose claims disagree with what ingest recorded for its job."""


@dataclasses.dataclass(frozen=True)
class Recorded:
    entry: LedgerEntry
    duplicate: bool


#: What became of one event of a batch: recorded (or found recorded), or refused.
Outcome = Recorded | UnknownJob | ForgedEvent


@dataclasses.dataclass
class _State:
    """A job's ``job_states`` row while a batch moves it."""

    job_id: uuid.UUID
    state: str
    last_seq: int
    attempt: int
    progress: float
    reason: str | None
    backend: str | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime | None = None
    changed: bool = False


_ENSURE_STATES = text(
    """
    INSERT INTO job_states (job_id, state, last_seq, attempt, progress, updated_at)
    SELECT id, 'submitted', 0, 0, 0, now()
      FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id
    ON CONFLICT (job_id) DO NOTHING
    """
)

# Advisory locks, taken in the order given (sorted by the caller): two archivers with
# overlapping jobs cannot deadlock. Unlike row locks they need no transaction id, so
# the transaction gets its id at its first write, after every lock is held.
_LOCK_JOBS = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"
)

# A statement of its own after the locks: in READ COMMITTED each statement sees what
# was committed before it began, including the previous holder's changes.
_STATES = text(
    """
    SELECT job_id, state, last_seq, attempt, progress, reason, backend, started_at, finished_at
      FROM job_states WHERE job_id = ANY(CAST(:ids AS uuid[]))
    """
)

_RECORDED = text(
    """
    SELECT event_id, job_id, seq, event_type, project_slug, recorded_at, state, payload
      FROM job_events WHERE event_id = ANY(CAST(:ids AS uuid[]))
    """
)

# position = (this transaction's id << 16) + the row's ordinal in the batch: commit
# order between transactions, arrival order within one.
_INSERT_EVENTS = text(
    """
    INSERT INTO job_events (job_id, seq, event_id, event_type, project_slug, occurred_at,
                            recorded_at, state, payload, position)
    SELECT u.job_id, u.seq, u.event_id, u.event_type, u.project, u.occurred_at,
           CAST(:recorded_at AS timestamptz), u.state, CAST(u.payload AS jsonb),
           (CAST(CAST(pg_current_xact_id() AS text) AS bigint) << 16) + u.ord
      FROM unnest(CAST(:job_ids AS uuid[]), CAST(:seqs AS int[]), CAST(:event_ids AS uuid[]),
                  CAST(:event_types AS text[]), CAST(:projects AS text[]),
                  CAST(:occurred AS timestamptz[]), CAST(:states AS text[]),
                  CAST(:payloads AS text[]))
           WITH ORDINALITY
           AS u(job_id, seq, event_id, event_type, project, occurred_at, state, payload, ord)
    """
)

_UPDATE_STATES = text(
    """
    UPDATE job_states AS s
       SET state = u.state, last_seq = u.last_seq, attempt = u.attempt,
           progress = u.progress, reason = u.reason, backend = u.backend,
           started_at = u.started_at, finished_at = u.finished_at, updated_at = u.updated_at
      FROM unnest(CAST(:job_ids AS uuid[]), CAST(:states AS text[]), CAST(:seqs AS int[]),
                  CAST(:attempts AS int[]), CAST(:progress AS float8[]),
                  CAST(:reasons AS text[]), CAST(:backends AS text[]),
                  CAST(:started AS timestamptz[]), CAST(:finished AS timestamptz[]),
                  CAST(:updated AS timestamptz[]))
           AS u(job_id, state, last_seq, attempt, progress, reason, backend, started_at,
                finished_at, updated_at)
     WHERE s.job_id = u.job_id
    """
)


class Ledger:
    """Records batches of events; keeps the cache of job facts between batches."""

    def __init__(self, facts: JobFactsCache | None = None) -> None:
        self.facts = facts or JobFactsCache()
        #: Jobs known to have a state row (their first event created it).
        self._has_state: Lru[uuid.UUID, bool] = Lru(self.facts.capacity)

    async def record(self, conn: AsyncConnection, events: Sequence[Event]) -> list[Outcome]:
        """Record ``events`` (in order) in the caller's transaction; the caller commits.

        Returns one outcome per event, in the same order. Refused events (unknown job,
        forged project) write nothing; the others are recorded or found recorded.
        """
        if len(events) > MAX_BATCH_ROWS:
            raise ValueError(f"at most {MAX_BATCH_ROWS} events per batch")
        outcomes: list[Outcome | None] = [None] * len(events)
        facts = await self.facts.load(conn, (e.job_id for e in events))

        admitted: list[int] = []
        for index, event in enumerate(events):
            job = facts.get(event.job_id)
            if job is None:
                outcomes[index] = UnknownJob(f"no job {event.job_id} was ever submitted")
            elif event.project != job.project:
                outcomes[index] = ForgedEvent(
                    f"event names project {event.project!r}; job {event.job_id} belongs "
                    f"to {job.project!r}"
                )
            else:
                admitted.append(index)
        if not admitted:
            return [o for o in outcomes if o is not None]

        job_ids = sorted({events[i].job_id for i in admitted})
        keys = sorted({lock_key("ledger", j) for j in job_ids})
        await conn.execute(_LOCK_JOBS, {"keys": keys})
        new_jobs = [j for j in job_ids if j not in self._has_state]
        if new_jobs:
            await conn.execute(_ENSURE_STATES, {"ids": new_jobs})
        states = await _read_states(conn, job_ids)
        missing = [j for j in job_ids if j not in states]
        if missing:
            # Remembered from a batch that rolled back after creating them: create again.
            await conn.execute(_ENSURE_STATES, {"ids": missing})
            states.update(await _read_states(conn, missing))
        for job_id in new_jobs:
            self._has_state.put(job_id, True)

        event_ids = list({events[i].event_id for i in admitted})
        already = {
            row.event_id: _entry_from_row(row)
            for row in (await conn.execute(_RECORDED, {"ids": event_ids})).all()
        }

        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        first_of: dict[uuid.UUID, int] = {}
        for index in admitted:
            event = events[index]
            if event.event_id in already:
                outcomes[index] = Recorded(entry=already[event.event_id], duplicate=True)
                continue
            if event.event_id in first_of:
                continue  # the same event twice in one batch: settled below
            first_of[event.event_id] = index
            job = facts[event.job_id]
            entry = _apply(states[event.job_id], event, job, now)
            rows.append({"entry": entry, "event": event})
            outcomes[index] = Recorded(entry=entry, duplicate=False)
        for index in admitted:
            if outcomes[index] is None:
                first = outcomes[first_of[events[index].event_id]]
                assert isinstance(first, Recorded)
                outcomes[index] = Recorded(entry=first.entry, duplicate=True)

        if rows:
            await conn.execute(_INSERT_EVENTS, _insert_params(rows, now))
            changed = [s for s in states.values() if s.changed]
            await conn.execute(_UPDATE_STATES, _update_params(changed))
        result = [o for o in outcomes if o is not None]
        assert len(result) == len(events)
        return result


async def _read_states(conn: AsyncConnection, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, _State]:
    rows = (await conn.execute(_STATES, {"ids": job_ids})).all()
    return {row.job_id: _State(*row) for row in rows}


def _apply(state: _State, event: Event, job: JobFacts, now: datetime) -> LedgerEntry:
    """Number ``event`` after the job's last entry and move the job's state."""
    current = JobStatus(state.state)
    new = next_state(current, event.event_type)
    state.last_seq += 1
    state.state = new.value
    state.updated_at = now
    state.changed = True
    _apply_details(state, event, moved=new is not current)
    if new is not current and new in FINAL:
        state.finished_at = now
        if new is JobStatus.COMPLETED:
            state.progress = 100.0
    return LedgerEntry.model_construct(
        seq=state.last_seq,
        job_id=event.job_id,
        project=job.project,
        event_type=event.event_type,
        recorded_at=now,
        state=new.value,
        event=event.model_dump(mode="json"),
    )


def _apply_details(state: _State, event: Event, *, moved: bool) -> None:
    """Copy what watchers want to see at a glance (attempt, progress, reason).

    ``reason`` says why the job is where it is. While the job is in flight it is the
    last retry's reason (``retrying``, and the ``rendering`` of the attempt after it);
    a final state carries only its own: none when ``completed``, the failure's when
    ``failed``, the cancellation's when ``cancelled``, the problems when ``rejected``.
    ``attempt`` is the highest attempt any recorded event named, ``job.failed``
    included, so the state and the events agree.
    """
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
    elif isinstance(event, JobRendered) and event.attempt >= state.attempt:
        state.attempt = event.attempt
        state.progress = 100.0
    elif isinstance(event, JobRetrying):
        if JobStatus(state.state) is JobStatus.RETRYING:  # not a late one after "rendered"
            state.reason = event.reason
        state.attempt = max(state.attempt, event.attempt)
    elif isinstance(event, JobFailed):
        state.reason = event.reason
        state.attempt = max(state.attempt, event.attempt)
    elif isinstance(event, JobRejected):
        if moved:  # a rejection after acceptance is recorded but judges nothing
            state.reason = "; ".join(f"{p.field}: {p.message}" for p in event.problems)
    elif isinstance(event, JobCancelled):
        state.reason = event.reason
    if moved and JobStatus(state.state) is JobStatus.COMPLETED:
        state.reason = None  # a retry's reason is history (the ledger keeps it)


def _entry_from_row(row: Any) -> LedgerEntry:
    payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
    return LedgerEntry.model_construct(
        seq=row.seq,
        job_id=row.job_id,
        project=row.project_slug,
        event_type=EventType(row.event_type),
        recorded_at=row.recorded_at,
        state=row.state,
        event=payload,
    )


def _insert_params(rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    entries: list[LedgerEntry] = [r["entry"] for r in rows]
    events: list[Event] = [r["event"] for r in rows]
    return {
        "recorded_at": now,
        "job_ids": [e.job_id for e in entries],
        "seqs": [e.seq for e in entries],
        "event_ids": [e.event_id for e in events],
        "event_types": [e.event_type.value for e in events],
        "projects": [e.project for e in entries],
        "occurred": [e.occurred_at for e in events],
        "states": [e.state for e in entries],
        "payloads": [e.model_dump_json() for e in events],
    }


def _update_params(states: list[_State]) -> dict[str, Any]:
    return {
        "job_ids": [s.job_id for s in states],
        "states": [s.state for s in states],
        "seqs": [s.last_seq for s in states],
        "attempts": [s.attempt for s in states],
        "progress": [s.progress for s in states],
        "reasons": [s.reason for s in states],
        "backends": [s.backend for s in states],
        "started": [s.started_at for s in states],
        "finished": [s.finished_at for s in states],
        "updated": [s.updated_at for s in states],
    }
