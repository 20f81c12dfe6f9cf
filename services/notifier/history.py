"""Reading the ledger back: what a watcher missed, and where a stream stands.

Read-only: the archiver is the only writer of ``job_events``. Gap fills (the same
missing entries wanted by many watchers of one job at once) are coalesced into one
query and remembered for a few seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import BigInteger, Select, func, literal_column, select, tuple_

from services.notifier.metrics import GAP_FILLS
from services.notifier.notes import Note
from shared.db.models import Job, JobEvent
from shared.db.session import SessionFactory
from shared.events import EventType, LedgerEntry

#: Rows per replay query; replays page through longer histories.
PAGE = 500

_GapKey = tuple[uuid.UUID, int, int]


#: Positions below this belong to transactions that have all ended (committed or not):
#: the oldest transaction id still running, in position units (see JobEvent.position).
_STABLE_HORIZON = literal_column(
    "(CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS bigint) << 16)",
    BigInteger,
)


def _note(row: JobEvent) -> Note:
    return Note(
        LedgerEntry(
            seq=row.seq,
            job_id=row.job_id,
            project=row.project_slug,
            event_type=EventType(row.event_type),
            recorded_at=row.recorded_at,
            state=row.state,
            event=row.payload,
        ),
        cursor=row.position,
    )


class LedgerReader:
    def __init__(self, sessions: SessionFactory, *, gap_ttl: float = 10.0) -> None:
        self.sessions = sessions
        self.gap_ttl = gap_ttl
        self._gaps: dict[_GapKey, tuple[float, asyncio.Future[list[Note]]]] = {}

    # ------------------------------------------------------------------ one job

    async def job_after(
        self, job_id: uuid.UUID, after: int, *, before: int | None = None, limit: int = PAGE
    ) -> list[Note]:
        """Entries of a job with ``after < seq`` (``< before``), in sequence order."""
        query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after)
        if before is not None:
            query = query.where(JobEvent.seq < before)
        return await self._notes(query.order_by(JobEvent.seq).limit(limit))

    async def job_pages(self, job_id: uuid.UUID, after: int) -> AsyncIterator[list[Note]]:
        """The whole history of a job after ``after``, a page at a time."""
        while True:
            page = await self.job_after(job_id, after)
            if page:
                yield page
                after = page[-1].seq
            if len(page) < PAGE:
                return

    async def job_gap(self, job_id: uuid.UUID, after: int, before: int) -> list[Note]:
        """Entries strictly between two sequence numbers, shared by every watcher asking."""
        key = (job_id, after, before)
        now = time.monotonic()
        cached = self._gaps.get(key)
        if cached is None or (cached[1].done() and now - cached[0] > self.gap_ttl):
            GAP_FILLS.inc()
            future: asyncio.Future[list[Note]] = asyncio.ensure_future(
                self.job_after(job_id, after, before=before)
            )
            self._gaps[key] = (now, future)
            self._forget_old(now)
        else:
            future = cached[1]
        try:
            return await asyncio.shield(future)
        except Exception:
            self._gaps.pop(key, None)
            raise

    def _forget_old(self, now: float) -> None:
        if len(self._gaps) < 256:
            return
        for key, (when, future) in list(self._gaps.items()):
            if future.done() and now - when > self.gap_ttl:
                del self._gaps[key]

    async def job_heads(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The last sequence number of each job (jobs without entries are left out)."""
        if not job_ids:
            return {}
        query = (
            select(JobEvent.job_id, func.max(JobEvent.seq))
            .where(JobEvent.job_id.in_(list(job_ids)))
            .group_by(JobEvent.job_id)
        )
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        return {job: int(seq) for job, seq in rows}

    async def recorded(
        self, keys: Sequence[tuple[uuid.UUID, int]]
    ) -> dict[tuple[uuid.UUID, int], tuple[Note, uuid.UUID]]:
        """The ledger rows at these (job, seq) positions, with their event ids; one query.

        Positions without a row are left out (a live copy naming one was never recorded).
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        query = select(JobEvent).where(tuple_(JobEvent.job_id, JobEvent.seq).in_(wanted))
        async with self.sessions() as session:
            rows = (await session.scalars(query)).all()
        return {(r.job_id, r.seq): (_note(r), r.event_id) for r in rows}

    async def job_last(self, job_id: uuid.UUID) -> Note | None:
        query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc())
        notes = await self._notes(query.limit(1))
        return notes[0] if notes else None

    async def job_project(self, job_id: uuid.UUID) -> str | None:
        """The project of a submitted job; None while ingest has not recorded it."""
        async with self.sessions() as session:
            return await session.scalar(select(Job.project_slug).where(Job.id == job_id))

    # ------------------------------------------------------------------ one project

    async def project_after(self, project: str, after: int, *, limit: int = PAGE) -> list[Note]:
        """Entries of a project after position ``after``, in commit order.

        Only rows below the *stable horizon* are read: positions of transactions older
        than the oldest one still running. A row that commits later always has a
        higher position than every row read here, so resuming from the last position
        read never skips one (see docs/progress.md, "Project streams").
        """
        query = (
            select(JobEvent)
            .where(
                JobEvent.project_slug == project,
                JobEvent.position > after,
                JobEvent.position < _STABLE_HORIZON,
            )
            .order_by(JobEvent.position)
            .limit(limit)
        )
        return await self._notes(query)

    async def project_head(self, project: str) -> int:
        """The position after which the project's future entries will come.

        The horizon itself (less one): every row below it is in the past; every row
        at or above it is in flight or yet to come, and a stream starting here gets it.
        """
        async with self.sessions() as session:
            return int(await session.scalar(select(_STABLE_HORIZON - 1)) or 0)

    async def _notes(self, query: Select[JobEvent]) -> list[Note]:
        async with self.sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_note(r) for r in rows]
