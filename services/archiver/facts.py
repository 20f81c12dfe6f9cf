"""What ingest decided about a job, read from its ``jobs`` row once and cached.

The database is the truth, a message is a claim: the project an event is recorded
under, and the placement, template and spec a render is archived with, come from the
job's row, never from the event. The row is immutable once written (only
``verdict_published_at`` changes, which the archiver does not read), so a bounded
cache of it is always right; a job missing from the cache costs one query.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import UNASSIGNED_PROJECT, JobSpec, is_slug
from shared.lru import Lru

#: Jobs whose facts are kept. A job's events arrive within minutes of each other, so
#: a few thousand covers every job in flight; the bound keeps the footprint flat.
DEFAULT_CAPACITY = 4096


@dataclasses.dataclass(frozen=True)
class JobFacts:
    """The immutable part of a job: who judged it what, under which project."""

    job_id: uuid.UUID
    #: The project every event of the job is recorded under.
    project: str
    accepted: bool
    #: ingest's spec (None for a rejected request).
    spec_json: dict[str, Any] | None

    def spec(self) -> JobSpec | None:
        return None if self.spec_json is None else JobSpec.model_validate(self.spec_json)


def ledger_project(raw_project: str) -> str:
    """The project a job's events are published and recorded under.

    An accepted job's row holds its slug. A rejected request's row holds whatever the
    client sent, and its rejection is published under ``unassigned`` when that is not
    a slug (routing keys need one); ingest does the same.
    """
    return raw_project if is_slug(raw_project) else UNASSIGNED_PROJECT


_LOAD = text(
    "SELECT id, project_slug, verdict, NULL FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"
)
_LOAD_WITH_SPEC = text(
    "SELECT id, project_slug, verdict, spec FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"
)


class JobFactsCache:
    """A bounded LRU of :class:`JobFacts`, filled from ``jobs`` in one query per batch.

    ``with_spec`` also reads the spec (the archive needs it; the ledger does not, and
    decoding it for every job would cost more than the rest of the look-up).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, with_spec: bool = False) -> None:
        self.capacity = capacity
        self._query = _LOAD_WITH_SPEC if with_spec else _LOAD
        self._facts: Lru[uuid.UUID, JobFacts] = Lru(capacity)

    def __len__(self) -> int:
        return len(self._facts)

    def cached(self, job_id: uuid.UUID) -> JobFacts | None:
        return self._facts.get(job_id)

    async def load(
        self, conn: AsyncConnection, job_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, JobFacts]:
        """Facts of every job in ``job_ids`` that ingest recorded; unknown ids are absent."""
        found: dict[uuid.UUID, JobFacts] = {}
        missing: list[uuid.UUID] = []
        for job_id in dict.fromkeys(job_ids):
            facts = self.cached(job_id)
            if facts is None:
                missing.append(job_id)
            else:
                found[job_id] = facts
        if missing:
            rows = (await conn.execute(self._query, {"ids": missing})).all()
            for job_id, project, verdict, spec in rows:
                facts = JobFacts(
                    job_id=job_id,
                    project=ledger_project(project),
                    accepted=verdict == "accepted",
                    spec_json=spec,
                )
                found[job_id] = facts
                self._facts.put(job_id, facts)
        return found
