"""Reading what the services wrote to PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from shared.db.models import Asset, Job, JobEvent, JobState
from shared.db.session import make_engine, make_sessionmaker


class Records:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url, pool_size=2)
        self.sessions = make_sessionmaker(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def job(self, job_id: uuid.UUID) -> Job | None:
        async with self.sessions() as s:
            return await s.get(Job, job_id)

    async def state(self, job_id: uuid.UUID) -> str | None:
        async with self.sessions() as s:
            return await s.scalar(select(JobState.state).where(JobState.job_id == job_id))

    async def state_row(self, job_id: uuid.UUID) -> JobState | None:
        async with self.sessions() as s:
            return await s.get(JobState, job_id)

    async def events(self, job_id: uuid.UUID) -> list[JobEvent]:
        async with self.sessions() as s:
            return list(
                (
                    await s.scalars(
                        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
                    )
                ).all()
            )

    async def event_types(self, job_id: uuid.UUID) -> list[str]:
        return [e.event_type for e in await self.events(job_id)]

    async def assets(self, job_id: uuid.UUID) -> list[Asset]:
        async with self.sessions() as s:
            return list(
                (
                    await s.scalars(
                        select(Asset).where(Asset.job_id == job_id).order_by(Asset.index)
                    )
                ).all()
            )

    async def final_state(self, job_id: uuid.UUID) -> str | None:
        state = await self.state(job_id)
        return state if state in {"completed", "failed", "cancelled", "rejected"} else None

    async def jobs_by_request(self, request_id: str) -> list[Job]:
        async with self.sessions() as s:
            return list((await s.scalars(select(Job).where(Job.request_id == request_id))).all())


def as_dict(row: Any) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}
