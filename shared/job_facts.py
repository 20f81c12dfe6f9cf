"""What the database says about a job: the truth a message is checked against.

Everything ingest decided (project, spec, characters, references) is in the immutable
``jobs`` row; a message that carries a job is only a *claim* about it. Readers take the
immutable facts from the row (once, cached) and the mutable part (the job's state, a
cancel request) fresh, in one query per look.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sqlalchemy import select

from shared.db.models import Job, JobEvent, JobState
from shared.db.session import SessionFactory
from shared.events import EventType, JobAccepted, JobSpec, Producer, derived_id
from shared.lru import Lru


@dataclasses.dataclass(frozen=True, slots=True)
class JobFacts:
    """The immutable facts of a job ingest accepted, as its ``jobs`` row records them."""

    job_id: uuid.UUID
    project: str
    correlation_id: str
    spec: JobSpec

    def accepted(self) -> JobAccepted:
        """The ``job.accepted`` ingest published for this job, rebuilt from the row."""
        return JobAccepted(
            event_id=derived_id(self.job_id, "accepted"),
            job_id=self.job_id,
            correlation_id=self.correlation_id,
            producer=Producer.INGEST,
            project=self.project,
            spec=self.spec,
        )

    def disagreements(self, claim: JobAccepted) -> list[str]:
        """What a ``job.accepted`` claims that the row does not say (empty: it agrees)."""
        wrong = []
        if claim.job_id != self.job_id:
            wrong.append("job_id")
        if claim.project != self.project:
            wrong.append("project")
        if claim.correlation_id != self.correlation_id:
            wrong.append("correlation_id")
        if claim.spec != self.spec:
            wrong += [
                f"spec.{name}"
                for name in JobSpec.model_fields
                if getattr(claim.spec, name) != getattr(self.spec, name)
            ] or ["spec"]
        return wrong


@dataclasses.dataclass(frozen=True, slots=True)
class JobView:
    """One look at a job: its facts (None: ingest did not accept it), state, cancel."""

    facts: JobFacts | None
    state: str | None
    cancel_requested: bool


class JobFactsReader:
    """Reads a job's facts once (then from a bounded LRU) and its state on every look.

    One query per :meth:`view`: on a miss it reads the row with the state; on a hit only
    the state and whether a cancel was requested.
    """

    def __init__(self, sessions: SessionFactory, *, cache_size: int = 2048) -> None:
        self.sessions = sessions
        self.cache: Lru[uuid.UUID, JobFacts] = Lru(cache_size)
        #: Rows read from the database (for tests and metrics): misses of the cache.
        self.rows_read = 0

    async def view(self, job_id: uuid.UUID) -> JobView:
        cancel = (
            select(JobEvent.id)
            .where(
                JobEvent.job_id == job_id,
                JobEvent.event_type == EventType.CANCEL_REQUESTED.value,
            )
            .exists()
        )
        facts = self.cache.get(job_id)
        if facts is not None:
            state = select(JobState.state).where(JobState.job_id == job_id).scalar_subquery()
            async with self.sessions() as session:
                hit = (await session.execute(select(state, cancel))).one()
            return JobView(facts=facts, state=hit[0], cancel_requested=bool(hit[1]))
        query = (
            select(
                Job.verdict,
                Job.project_slug,
                Job.correlation_id,
                Job.spec,
                JobState.state,
                cancel,
            )
            .outerjoin(JobState, JobState.job_id == Job.id)
            .where(Job.id == job_id)
        )
        async with self.sessions() as session:
            row = (await session.execute(query)).first()
        self.rows_read += 1
        if row is None:
            return JobView(facts=None, state=None, cancel_requested=False)
        verdict, project, correlation_id, spec, state, cancel_requested = row
        facts = _facts(job_id, verdict, project, correlation_id, spec)
        if facts is not None:
            self.cache.put(job_id, facts)
        return JobView(facts=facts, state=state, cancel_requested=bool(cancel_requested))


def _facts(
    job_id: uuid.UUID, verdict: str, project: str, correlation_id: str, spec: Any
) -> JobFacts | None:
    if verdict != "accepted" or spec is None:
        return None
    return JobFacts(
        job_id=job_id,
        project=project,
        correlation_id=correlation_id,
        spec=JobSpec.model_validate(spec),
    )
