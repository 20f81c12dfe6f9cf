"""One validation for both doors: judge a request, record the verdict, publish it.

The order matters for "nothing lost, nothing twice":

1. the verdict is committed to PostgreSQL (``jobs``) first;
2. then ``job.accepted`` / ``job.rejected`` is published and confirmed by the broker;
3. only then does the AMQP handler ack (or the HTTP handler answer).

A crash between 1 and 2 is healed by redelivery: the same request finds its row and
publishes the same event again, with the same deterministic ``event_id``, which every
consumer de-duplicates.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.characters import ReferenceUrl, resolve_characters
from services.ingest.hygiene import clean_text, header_token, scrub
from services.ingest.problems import clean_problem, problems_from_validation
from services.ingest.prompting import compose_negative, compose_prompt
from services.ingest.screening import ENVELOPE_FIELDS, capped, screen
from shared.db.models import Job, Project
from shared.db.session import SessionFactory
from shared.events import (
    SHOT_REQUEST_FIELDS,
    JobAccepted,
    JobRejected,
    JobSpec,
    Problem,
    Producer,
    ShotLocation,
    ShotRequest,
    derived_id,
    is_slug,
)
from shared.logging import get_logger
from shared.messaging import EventBus

log = get_logger(__name__)

#: Project segment used on the routing key of a rejection whose project is unusable.
UNASSIGNED_PROJECT = "unassigned"

Door = Literal["amqp", "http"]
Status = Literal["created", "existing", "rejected", "conflict"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What became of a submission."""

    status: Status
    job_id: uuid.UUID
    problems: list[Problem]
    event: JobAccepted | JobRejected

    @property
    def accepted(self) -> bool:
        return isinstance(self.event, JobAccepted)


def canonical_hash(body: Mapping[str, Any], request: ShotRequest | None = None) -> str:
    """sha256 of what a request asks for: the identity behind "same request again".

    A well-formed request hashes its normalised form (defaults filled in), so spelling
    the same request differently (key order, an explicit default, the AMQP envelope)
    is still the same request. Anything else hashes the body without the envelope,
    unknown fields included, so a corrected body is a new request.
    """
    content: Any = (
        request.model_dump(mode="json")
        if request is not None
        else {k: v for k, v in body.items() if k not in ENVELOPE_FIELDS}
    )
    data = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def resolve_seed(request: ShotRequest, job_id: uuid.UUID, default_seeds: list[int | None]) -> int:
    """Explicit seed, else the first character's default seed, else one derived from the job."""
    if request.params.seed is not None:
        return request.params.seed
    for seed in default_seeds:
        if seed is not None:
            return seed
    return job_id.int % 2**32


class SubmissionDesk:
    """Judges requests. Shared by the AMQP handler and the HTTP API."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        bus: EventBus,
        template_names: Callable[[], set[str]],
        reference_url: ReferenceUrl,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.template_names = template_names
        self.reference_url = reference_url

    async def submit(
        self,
        body: Any,
        *,
        via: Door,
        correlation_id: str,
        job_id: uuid.UUID | None = None,
    ) -> Verdict:
        """Validate ``body`` (a decoded JSON value), record the verdict, publish it."""
        raw: dict[str, Any] = body if isinstance(body, dict) else {}
        correlation_id = header_token(correlation_id) or uuid.uuid4().hex
        request, problems = validate_request(body, via=via)
        request_id = _storable_request_id(raw.get("request_id"))
        request_hash = canonical_hash(raw, request if not problems else None)
        if request_id is not None:
            async with self.sessions() as session:
                existing = await self._existing(session, request_id, request_hash)
            if existing is not None:
                return await self._replay(existing)

        job_id = job_id or (
            derived_id("job", request_id, request_hash) if request_id else uuid.uuid4()
        )
        return await self._judge(
            raw=raw,
            request=request,
            problems=problems,
            job_id=job_id,
            request_id=request_id,
            request_hash=request_hash,
            via=via,
            correlation_id=correlation_id,
        )

    # ------------------------------------------------------------------ steps

    async def _existing(
        self, session: AsyncSession, request_id: str | None, request_hash: str
    ) -> Job | None:
        if request_id is None:
            return None
        return (
            await session.scalars(
                select(Job).where(Job.request_id == request_id, Job.request_hash == request_hash)
            )
        ).first()

    async def _judge(
        self,
        *,
        raw: dict[str, Any],
        request: ShotRequest | None,
        problems: list[Problem],
        job_id: uuid.UUID,
        request_id: str | None,
        request_hash: str,
        via: Door,
        correlation_id: str,
    ) -> Verdict:
        async with self.sessions() as session, session.begin():
            spec: JobSpec | None = None
            project: Project | None = None
            status: Status = "rejected"
            if request is not None:
                conflict = await self._accepted_with_other_body(session, request.request_id)
                if conflict is not None:
                    status = "conflict"
                    problems.append(
                        Problem(
                            field="request_id",
                            code="conflict",
                            message=(
                                f"request_id {request.request_id!r} already names job {conflict.id} "
                                "with a different body; use a new request_id for a new shot"
                            ),
                        )
                    )
                else:
                    project, more = await self._check_project_and_template(session, request)
                    problems.extend(more)
                    characters, more = await resolve_characters(
                        session,
                        project.id if project else None,
                        request.characters,
                        self.reference_url,
                    )
                    problems.extend(more)
                    if not problems:
                        seed = resolve_seed(
                            request, job_id, [c.definition.default_seed for c in characters]
                        )
                        spec = JobSpec(
                            request_id=request.request_id,
                            location=ShotLocation(
                                project=request.project,
                                episode=request.episode,
                                scene=request.scene,
                                shot=request.shot,
                            ),
                            template=request.template,
                            prompt=request.prompt,
                            negative_prompt=request.negative_prompt,
                            composed_prompt=compose_prompt(characters, request.prompt),
                            composed_negative=compose_negative(characters, request.negative_prompt),
                            params=request.params.model_copy(update={"seed": seed}),
                            priority=request.priority,
                            characters=characters,
                        )
                        status = "created"

            problems = [clean_problem(p) for p in capped(problems)]
            event = self._event(
                job_id=job_id,
                correlation_id=correlation_id,
                request_id=request_id,
                raw=raw,
                spec=spec,
                problems=problems,
            )
            job = Job(
                id=job_id,
                request_id=request_id,
                request_hash=request_hash,
                correlation_id=correlation_id,
                project_slug=clean_text(str(raw.get("project", "")))[:200],
                project_id=project.id if project else None,
                episode=request.episode if request else None,
                scene=request.scene if request else None,
                shot=request.shot if request else None,
                template=request.template if request else None,
                priority=request.priority if request else 0,
                verdict="accepted" if spec else "rejected",
                request=scrub(raw),
                spec=spec.model_dump(mode="json") if spec else None,
                problems=[p.model_dump(mode="json") for p in problems] or None,
                character_versions=[
                    {
                        "character_id": str(c.character_id),
                        "name": c.name,
                        "version": c.version,
                        "version_id": str(c.version_id),
                    }
                    for c in (spec.characters if spec else [])
                ],
                character_version_ids=[c.version_id for c in (spec.characters if spec else [])],
                submitted_via=via,
            )
            session.add(job)
            try:
                await session.flush()
            except IntegrityError:
                # Someone recorded the same request (or the same job id) concurrently.
                await session.rollback()
                return await self._after_race(
                    raw, request_id, request_hash, job_id, via, correlation_id
                )
        await self._publish_verdict(job_id, event)
        log.info(
            "ingest.verdict",
            job_id=str(job_id),
            status=status,
            via=via,
            problems=[f"{p.field}: {p.message}" for p in problems],
        )
        return Verdict(status=status, job_id=job_id, problems=problems, event=event)

    async def _after_race(
        self,
        raw: dict[str, Any],
        request_id: str | None,
        request_hash: str,
        job_id: uuid.UUID,
        via: Door,
        correlation_id: str,
    ) -> Verdict:
        async with self.sessions() as session:
            existing = await self._existing(session, request_id, request_hash)
            if existing is None:
                existing = await session.get(Job, job_id)
        if existing is not None and existing.request_hash == request_hash:
            return await self._replay(existing)
        # The submitter's job id is taken by another request: judge it under a fresh id.
        return await self.submit(raw, via=via, correlation_id=correlation_id, job_id=uuid.uuid4())

    async def _accepted_with_other_body(self, session: AsyncSession, request_id: str) -> Job | None:
        return (
            await session.scalars(
                select(Job).where(Job.request_id == request_id, Job.verdict == "accepted")
            )
        ).first()

    async def _check_project_and_template(
        self, session: AsyncSession, request: ShotRequest
    ) -> tuple[Project | None, list[Problem]]:
        problems: list[Problem] = []
        project = (
            await session.scalars(select(Project).where(Project.slug == request.project))
        ).first()
        if project is None:
            known = (await session.scalars(select(Project.slug))).all()
            close = difflib.get_close_matches(request.project, known, n=3, cutoff=0.5)
            problems.append(
                Problem(
                    field="project",
                    code="unknown_project",
                    message=f"no project {request.project!r}"
                    + (f"; did you mean {', '.join(close)}?" if close else ""),
                    suggestions=close,
                )
            )
        names = self.template_names()
        if request.template not in names:
            close = difflib.get_close_matches(request.template, sorted(names), n=3, cutoff=0.4)
            problems.append(
                Problem(
                    field="template",
                    code="unknown_template",
                    message=f"no workflow template {request.template!r}; known: {', '.join(sorted(names))}",
                    suggestions=close,
                )
            )
        return project, problems

    def _event(
        self,
        *,
        job_id: uuid.UUID,
        correlation_id: str,
        request_id: str | None,
        raw: dict[str, Any],
        spec: JobSpec | None,
        problems: list[Problem],
    ) -> JobAccepted | JobRejected:
        if spec is not None:
            return JobAccepted(
                event_id=derived_id(job_id, "accepted"),
                job_id=job_id,
                correlation_id=correlation_id,
                producer=Producer.INGEST,
                project=spec.location.project,
                spec=spec,
            )
        project = raw.get("project")
        return JobRejected(
            event_id=derived_id(job_id, "rejected"),
            job_id=job_id,
            correlation_id=correlation_id,
            producer=Producer.INGEST,
            project=project
            if isinstance(project, str) and is_slug(project)
            else UNASSIGNED_PROJECT,
            request_id=request_id,
            problems=problems,
        )

    async def _publish_verdict(self, job_id: uuid.UUID, event: JobAccepted | JobRejected) -> None:
        """Publish (confirmed), then note it, so a repeat of the request does not re-publish.

        A repeat must not re-publish a delivered job.accepted: every copy would reach the
        renderers, which would have to tell them apart from a new attempt.
        """
        await self.bus.publish(event)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.id == job_id).values(verdict_published_at=func.now())
            )

    async def _replay(self, job: Job) -> Verdict:
        """The same request again: answer with the recorded verdict and re-publish it."""
        problems = [Problem.model_validate(p) for p in (job.problems or [])]
        event: JobAccepted | JobRejected
        if job.verdict == "accepted" and job.spec is not None:
            spec = JobSpec.model_validate(job.spec)
            event = JobAccepted(
                event_id=derived_id(job.id, "accepted"),
                job_id=job.id,
                correlation_id=job.correlation_id,
                producer=Producer.INGEST,
                project=spec.location.project,
                spec=spec,
            )
        else:
            event = self._event(
                job_id=job.id,
                correlation_id=job.correlation_id,
                request_id=job.request_id,
                raw=job.request,
                spec=None,
                problems=problems,
            )
        if job.verdict_published_at is None:
            # Ingest stopped between recording the verdict and the broker's confirm:
            # publish it now (same event id, so a copy that did get out is dropped).
            await self._publish_verdict(job.id, event)
        log.info("ingest.duplicate_request", job_id=str(job.id), verdict=job.verdict)
        return Verdict(status="existing", job_id=job.id, problems=problems, event=event)


def validate_request(body: Any, *, via: Door) -> tuple[ShotRequest | None, list[Problem]]:
    """Everything that can be said about a body without the database.

    Returns the request (None when it cannot be used, or must not reach the database)
    and every problem found.
    """
    if not isinstance(body, dict):
        return None, [
            Problem(field="body", code="type", message="the request must be a JSON object")
        ]
    screening = screen(body, via=via)
    problems = list(screening.problems)
    request: ShotRequest | None = None
    try:
        request = ShotRequest.model_validate(
            {k: v for k, v in body.items() if k in SHOT_REQUEST_FIELDS}
        )
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc))
    return (None if screening.blocking else request), problems


def _storable_request_id(request_id: object) -> str | None:
    """The request id if it can serve as an idempotency key (and be stored), else None."""
    if not isinstance(request_id, str):
        return None
    if not 0 < len(request_id) <= 200 or not request_id.isprintable():
        return None
    return request_id
