"""The read side of jobs: one job's document, and filtered, cursor-paged lists.

A job's *state* is its ``job_states`` row, written by the archiver's ledger. Until the
ledger has recorded the job there is no row: an accepted job is then ``submitted``
and a rejected one ``rejected`` (the same rule for the document and the filter).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.api_models import JobDocument, JobFailure, JobSummary
from services.ingest.characters import suggest_names, visible_to
from services.ingest.errors import Invalid
from services.ingest.projects_service import project_for_write
from shared.db.models import (
    Asset,
    CharacterDefinition,
    CharacterVersion,
    Job,
    JobEvent,
    JobState,
    Project,
)


def state_of() -> ColumnElement[str]:
    """The job's state as a SQL expression (needs ``job_states`` outer-joined)."""
    return func.coalesce(
        JobState.state, case((Job.verdict == "accepted", "submitted"), else_="rejected")
    )


def state_without_ledger(job: Job) -> str:
    return "submitted" if job.verdict == "accepted" else "rejected"


def job_summary(job: Job, state: JobState | None) -> JobSummary:
    return JobSummary(
        job_id=job.id,
        request_id=job.request_id,
        project=job.project_slug,
        episode=job.episode,
        scene=job.scene,
        shot=job.shot,
        template=job.template,
        priority=job.priority,
        verdict=job.verdict,  # type: ignore[arg-type]
        state=state.state if state else state_without_ledger(job),
        character_versions=job.character_versions,
        created_at=job.created_at,
        updated_at=state.updated_at if state else job.created_at,
    )


def job_document(
    job: Job, state: JobState | None, events: Sequence[JobEvent], assets: Sequence[Asset]
) -> JobDocument:
    """A job as clients see it: request, verdict, lifecycle, ledger and assets."""
    return JobDocument(
        **job_summary(job, state).model_dump(),
        progress=state.progress if state else 0.0,
        attempt=state.attempt if state else 0,
        reason=state.reason if state else None,
        problems=job.problems or [],
        failure=job_failure(state, events),
        events=[
            {
                "seq": e.seq,
                "event_type": e.event_type,
                "state": e.state,
                "occurred_at": e.occurred_at,
            }
            for e in events
        ],
        assets=[
            {
                "index": a.index,
                "path": a.path,
                "sha256": a.sha256,
                "width": a.width,
                "height": a.height,
                "bytes": a.bytes,
                "mime": a.mime,
            }
            for a in assets
        ],
    )


def job_failure(state: JobState | None, events: Sequence[JobEvent]) -> JobFailure | None:
    """The failure document of a failed job: its last ``job.failed`` event's payload."""
    if state is None or state.state != "failed":
        return None
    for event in reversed(events):
        if event.event_type == "job.failed":
            payload = event.payload
            return JobFailure(
                reason=payload.get("reason", state.reason or ""),
                error_kind=payload.get("error_kind", ""),
                attempt=payload.get("attempt", state.attempt),
                problems=payload.get("problems", []),
                details=payload.get("details", []),
            )
    return None


async def load_job(session: AsyncSession, job_id: uuid.UUID) -> tuple[Job, JobState | None] | None:
    job = await session.get(Job, job_id)
    if job is None:
        return None
    return job, await session.get(JobState, job_id)


async def load_job_document(session: AsyncSession, job_id: uuid.UUID) -> JobDocument | None:
    found = await load_job(session, job_id)
    if found is None:
        return None
    job, state = found
    events = (
        await session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        )
    ).all()
    assets = (
        await session.scalars(select(Asset).where(Asset.job_id == job_id).order_by(Asset.index))
    ).all()
    return job_document(job, state, events, assets)


@dataclasses.dataclass(frozen=True)
class JobFilter:
    project: str | None = None
    status: str | None = None
    character: str | None = None
    #: Project slugs the caller may see (None: all).
    visible: frozenset[str] | None = None
    after: tuple[datetime, uuid.UUID] | None = None
    order: Literal["asc", "desc"] = "asc"
    limit: int = 50


async def list_jobs(session: AsyncSession, where: JobFilter) -> list[tuple[Job, JobState | None]]:
    """Up to ``where.limit`` jobs in (created_at, id) order after the cursor position."""
    query = select(Job, JobState).outerjoin(JobState, JobState.job_id == Job.id)
    if where.project is not None:
        await project_for_write(session, where.project)  # a typo is a 422, not an empty page
        query = query.where(Job.project_slug == where.project)
    if where.visible is not None:
        query = query.where(Job.project_slug.in_(sorted(where.visible)))
    if where.status is not None:
        query = query.where(state_of() == where.status)
    if where.character is not None:
        version_ids = await character_version_ids(session, where.character, where.project)
        query = query.where(Job.character_version_ids.overlap(version_ids))
    key = tuple_(Job.created_at, Job.id)
    if where.after is not None:
        position = tuple_(*where.after)
        query = query.where(key > position if where.order == "asc" else key < position)
    if where.order == "asc":
        query = query.order_by(Job.created_at, Job.id)
    else:
        query = query.order_by(Job.created_at.desc(), Job.id.desc())
    rows = (await session.execute(query.limit(where.limit))).all()
    return [(row[0], row[1]) for row in rows]


async def character_version_ids(
    session: AsyncSession, name_or_id: str, project: str | None
) -> list[uuid.UUID]:
    """Every version id of the characters ``name_or_id`` names; 422 if there is none.

    A name may name several characters (a project's own and a global one, or the same
    name in two projects when no project is given): all of them count.
    """
    query = select(CharacterDefinition.id)
    project_id: uuid.UUID | None = None
    if project is not None:
        project_id = await session.scalar(select(Project.id).where(Project.slug == project))
        query = query.where(visible_to(project_id))
    try:
        query = query.where(CharacterDefinition.id == uuid.UUID(name_or_id))
    except ValueError:
        query = query.where(func.lower(CharacterDefinition.name) == name_or_id.strip().lower())
    ids = list((await session.scalars(query)).all())
    if not ids:
        close = await suggest_names(session, project_id, name_or_id)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise Invalid(
            f"no character {name_or_id!r}{hint}",
            field="character",
            code="unknown_character",
            suggestions=close,
        )
    versions = await session.scalars(
        select(CharacterVersion.id).where(CharacterVersion.character_id.in_(ids))
    )
    return list(versions.all())
