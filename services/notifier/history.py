"""Reading the ledger back: what a reconnecting watcher missed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from shared.db.models import JobEvent
from shared.db.session import SessionFactory
from shared.events import EventType, LedgerEntry

REPLAY_LIMIT = 10_000


async def missed_entries(
    sessions: SessionFactory,
    *,
    job_id: uuid.UUID | None = None,
    project: str | None = None,
    since_seq: int = 0,
    since_time: datetime | None = None,
    limit: int = REPLAY_LIMIT,
) -> list[LedgerEntry]:
    """Ledger entries of a job after ``since_seq``, or of a project after ``since_time``."""
    query = select(JobEvent)
    if job_id is not None:
        query = query.where(JobEvent.job_id == job_id, JobEvent.seq > since_seq)
    if project is not None:
        query = query.where(JobEvent.project_slug == project)
    if since_time is not None:
        query = query.where(JobEvent.recorded_at > since_time)
    query = query.order_by(JobEvent.id).limit(limit)
    async with sessions() as session:
        rows = (await session.scalars(query)).all()
    return [
        LedgerEntry(
            seq=r.seq,
            job_id=r.job_id,
            project=r.project_slug,
            event_type=EventType(r.event_type),
            recorded_at=r.recorded_at,
            state=r.state,
            event=r.payload,
        )
        for r in rows
    ]
