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

import asyncio
import dataclasses
import difflib
import functools
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Set
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import bindparam, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.characters import CharacterResolver, ReferenceUrl
from services.ingest.hygiene import clean_text, header_token, scrub
from services.ingest.problems import clean_problem, problems_from_validation
from services.ingest.prompting import compose_negative, compose_prompt
from services.ingest.screening import ENVELOPE_FIELDS, capped, screen
from shared.db.models import Job
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
from shared.lru import Lru
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


#: Statements run outside any transaction (each one is its own): the hot path reads
#: only rows that are immutable or read once, writes one row, then marks it published.
AUTOCOMMIT: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}

_RECORDED = select(
    Job.id,
    Job.request_id,
    Job.request_hash,
    Job.correlation_id,
    Job.verdict,
    Job.request,
    Job.spec,
    Job.problems,
    Job.verdict_published_at,
)
#: One query for both questions about a request id: was this very request (same id,
#: same body) recorded, and is another body already accepted under the id?
_BY_REQUEST = _RECORDED.where(
    Job.request_id == bindparam("request_id"),
    or_(Job.request_hash == bindparam("request_hash"), Job.verdict == "accepted"),
)
_BY_ID = _RECORDED.where(Job.id == bindparam("job_id"))
_PROJECT_ID = text("SELECT id FROM projects WHERE slug = :slug")
_PROJECT_SLUGS = text("SELECT slug FROM projects")
#: The verdict row. JSON goes in as text serialised once (pydantic for the spec).
#: With ``guard`` it is written only if no row answers for its request id yet (neither
#: this very request nor another body accepted under the id): for a new request that
#: saves asking first. Nothing returned means the guard or a unique key stopped it
#: (a repeat, a conflict, or the same request or job id recorded concurrently).
_INSERT_JOB = text(
    """
    INSERT INTO jobs (id, request_id, request_hash, correlation_id, project_slug, project_id,
                      episode, scene, shot, template, priority, verdict, request, spec,
                      problems, character_versions, character_version_ids, submitted_via)
    SELECT CAST(:id AS uuid), CAST(:request_id AS text), CAST(:request_hash AS text),
           CAST(:correlation_id AS text), CAST(:project_slug AS text),
           CAST(:project_id AS uuid), CAST(:episode AS text), CAST(:scene AS text),
           CAST(:shot AS text), CAST(:template AS text), CAST(:priority AS integer),
           CAST(:verdict AS text), CAST(CAST(:request AS text) AS jsonb),
           CAST(CAST(:spec AS text) AS jsonb), CAST(CAST(:problems AS text) AS jsonb),
           CAST(CAST(:character_versions AS text) AS jsonb),
           CAST(:character_version_ids AS uuid[]), CAST(:submitted_via AS text)
     WHERE NOT (CAST(:guard AS boolean) AND EXISTS (
                SELECT 1 FROM jobs
                 WHERE request_id = CAST(:request_id AS text)
                   AND (request_hash = CAST(:request_hash AS text) OR verdict = 'accepted')))
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
_MARK_PUBLISHED = text(
    "UPDATE jobs SET verdict_published_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"
)
_PROBLEMS = TypeAdapter(list[Problem])


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """A request's row in ``jobs``: what a repeat of the request is answered from."""

    id: uuid.UUID
    request_id: str | None
    request_hash: str
    correlation_id: str
    verdict: str
    request: dict[str, Any]
    spec: dict[str, Any] | None
    problems: list[Any] | None
    verdict_published_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Judged:
    status: Status
    job_id: uuid.UUID
    problems: list[Problem]
    event: JobAccepted | JobRejected


@asynccontextmanager
async def _autocommit(sessions: SessionFactory) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which every statement commits on its own (no BEGIN)."""
    async with sessions() as session:
        yield await session.connection(execution_options=AUTOCOMMIT)


class PublishedMarks:
    """Notes in ``jobs`` that the broker confirmed verdicts, many jobs per statement.

    :meth:`note` returns once the mark is committed, exactly as a statement of its own
    would, so a caller still acks (or answers) only after it; but every job confirmed
    while one ``UPDATE`` runs shares the next one (group commit). Under load that is
    one statement for many jobs, alone it is one statement without ``BEGIN``/``COMMIT``.
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self._pending: list[tuple[uuid.UUID, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def note(self, job_id: uuid.UUID) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((job_id, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with _autocommit(self.sessions) as conn:
                    await conn.execute(_MARK_PUBLISHED, {"ids": [job_id for job_id, _ in batch]})
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


class SubmissionDesk:
    """Judges requests. Shared by the AMQP handler and the HTTP API.

    Hot path (see the README): project ids by slug and character version definitions
    are cached (both immutable once they exist; only found ones are cached); a new
    request costs two statements (its characters, the guarded insert) plus a share of
    one ``UPDATE`` marking confirmed verdicts, none in a transaction. A repeat or a
    conflict costs one more (its rows by request id), and a second judgement if need be.
    """

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        bus: EventBus,
        template_names: Callable[[], Set[str]],
        reference_url: ReferenceUrl,
        cache_size: int = 1024,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.template_names = template_names
        self.reference_url = reference_url
        #: Project id by slug. Projects are never renamed nor deleted; a slug not found
        #: is not remembered (it may be created any moment).
        self.projects: Lru[str, uuid.UUID] = Lru(cache_size)
        self.characters = CharacterResolver(reference_url, cache_size=cache_size)
        self.marks = PublishedMarks(sessions)

    async def submit(
        self,
        body: Any,
        *,
        via: Door,
        correlation_id: str,
        job_id: uuid.UUID | None = None,
        named: bool | None = None,
    ) -> Verdict:
        """Validate ``body`` (a decoded JSON value), record the verdict, publish it.

        ``job_id``: the id the submitter chose (the AMQP door). A request already
        recorded under another job id is then answered on this id with a
        ``duplicate_request`` rejection naming that job (see :meth:`_duplicate`);
        ``named=False`` for an id of ingest's own choosing.
        """
        named = job_id is not None if named is None else named
        raw: dict[str, Any] = body if isinstance(body, dict) else {}
        correlation_id = header_token(correlation_id) or uuid.uuid4().hex
        request, problems = validate_request(body, via=via)
        request_id = _storable_request_id(raw.get("request_id"))
        request_hash = canonical_hash(raw, request if not problems else None)
        job_id = job_id or (
            derived_id("job", request_id, request_hash) if request_id else uuid.uuid4()
        )
        existing: Recorded | None = None
        judge = functools.partial(
            self._judge,
            raw=raw,
            request=request,
            job_id=job_id,
            request_id=request_id,
            request_hash=request_hash,
            via=via,
            correlation_id=correlation_id,
        )
        async with _autocommit(self.sessions) as conn:
            # Optimistically new: judged and written in one go, unless a row already
            # answers for the request id (then look, and judge again if need be).
            judged = await judge(conn, problems=list(problems), conflict=None, guard=True)
            if judged is None and request_id is not None:
                rows = await self._by_request(conn, request_id, request_hash)
                existing = next((r for r in rows if r.request_hash == request_hash), None)
                if existing is None:
                    conflict = next((r for r in rows if r.verdict == "accepted"), None)
                    judged = await judge(conn, problems=problems, conflict=conflict, guard=False)
        if existing is not None:
            if named and existing.id != job_id:
                return await self._duplicate(
                    existing,
                    raw=raw,
                    job_id=job_id,
                    request_hash=request_hash,
                    via=via,
                    correlation_id=correlation_id,
                )
            return await self._replay(existing)
        if judged is None:
            # Someone recorded the same request (or the same job id) concurrently.
            return await self._after_race(
                raw, request_id, request_hash, job_id, via, correlation_id
            )
        await self._publish_verdict(judged.job_id, judged.event)
        log.info(
            "ingest.verdict",
            job_id=str(judged.job_id),
            status=judged.status,
            via=via,
            problems=[f"{p.field}: {p.message}" for p in judged.problems],
        )
        return Verdict(
            status=judged.status, job_id=judged.job_id, problems=judged.problems, event=judged.event
        )

    # ------------------------------------------------------------------ steps

    async def _by_request(
        self, conn: AsyncConnection, request_id: str, request_hash: str
    ) -> list[Recorded]:
        """This request's row, and the job accepted under its id (at most two rows)."""
        result = await conn.execute(
            _BY_REQUEST, {"request_id": request_id, "request_hash": request_hash}
        )
        return [Recorded(*row) for row in result]

    async def _judge(
        self,
        conn: AsyncConnection,
        *,
        raw: dict[str, Any],
        request: ShotRequest | None,
        problems: list[Problem],
        conflict: Recorded | None,
        guard: bool,
        job_id: uuid.UUID,
        request_id: str | None,
        request_hash: str,
        via: Door,
        correlation_id: str,
    ) -> _Judged | None:
        """Judge a new request and record the verdict; None if a row stopped it (see
        ``_INSERT_JOB``). ``conflict``: the job accepted under the request id with
        another body, which makes the verdict a conflict without further checks."""
        spec: JobSpec | None = None
        project_id: uuid.UUID | None = None
        status: Status = "rejected"
        if request is not None:
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
                project_id, more = await self._check_project_and_template(conn, request)
                problems.extend(more)
                characters, more = await self.characters.resolve(
                    conn, project_id, request.characters
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
        snapshots = spec.characters if spec else []
        row = {
            "id": job_id,
            "request_id": request_id,
            "request_hash": request_hash,
            "correlation_id": correlation_id,
            "project_slug": clean_text(str(raw.get("project", "")))[:200],
            "project_id": project_id,
            "episode": request.episode if request else None,
            "scene": request.scene if request else None,
            "shot": request.shot if request else None,
            "template": request.template if request else None,
            "priority": request.priority if request else 0,
            "verdict": "accepted" if spec else "rejected",
            "request": json.dumps(scrub(raw)),
            "spec": spec.model_dump_json() if spec else None,
            "problems": _PROBLEMS.dump_json(problems).decode() if problems else None,
            "character_versions": json.dumps(
                [
                    {
                        "character_id": str(c.character_id),
                        "name": c.name,
                        "version": c.version,
                        "version_id": str(c.version_id),
                    }
                    for c in snapshots
                ]
            ),
            "character_version_ids": [c.version_id for c in snapshots],
            "submitted_via": via,
            "guard": guard and request_id is not None,
        }
        try:
            inserted = (await conn.execute(_INSERT_JOB, row)).first()
        except IntegrityError:
            # Not a duplicate (those are DO NOTHING): a project that vanished under the
            # cache. Forget it; the requeued request finds out afresh.
            if request is not None:
                self.projects.discard(request.project)
            raise
        if inserted is None:
            return None
        return _Judged(status=status, job_id=job_id, problems=problems, event=event)

    async def _after_race(
        self,
        raw: dict[str, Any],
        request_id: str | None,
        request_hash: str,
        job_id: uuid.UUID,
        via: Door,
        correlation_id: str,
    ) -> Verdict:
        async with _autocommit(self.sessions) as conn:
            existing: Recorded | None = None
            if request_id is not None:
                rows = await self._by_request(conn, request_id, request_hash)
                existing = next((r for r in rows if r.request_hash == request_hash), None)
            if existing is None:
                row = (await conn.execute(_BY_ID, {"job_id": job_id})).first()
                existing = Recorded(*row) if row is not None else None
        if existing is not None and existing.request_hash == request_hash:
            return await self._replay(existing)
        # The submitter's job id is taken by another request: judge it under a fresh id.
        return await self.submit(
            raw, via=via, correlation_id=correlation_id, job_id=uuid.uuid4(), named=False
        )

    async def _check_project_and_template(
        self, conn: AsyncConnection, request: ShotRequest
    ) -> tuple[uuid.UUID | None, list[Problem]]:
        problems: list[Problem] = []
        project_id = self.projects.get(request.project)
        if project_id is None:
            project_id = (await conn.execute(_PROJECT_ID, {"slug": request.project})).scalar()
            if project_id is not None:
                self.projects.put(request.project, project_id)
        if project_id is None:
            known = (await conn.execute(_PROJECT_SLUGS)).scalars().all()
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
        return project_id, problems

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
        renderers, which would have to tell them apart from a new attempt. The note is
        committed before this returns (shared with other jobs' notes, see
        :class:`PublishedMarks`), so the caller acks only after it, as before.
        """
        await self.bus.publish(event)
        await self.marks.note(job_id)

    async def _duplicate(
        self,
        existing: Recorded,
        *,
        raw: dict[str, Any],
        job_id: uuid.UUID,
        request_hash: str,
        via: Door,
        correlation_id: str,
    ) -> Verdict:
        """The same request again under a new job id: a rejection on the new id naming
        the job that holds the request id, recorded (verdict rejected) so the ledger
        takes it. Nothing is sent for the existing job, unless its own verdict was
        never confirmed (then it is healed, as a repeat would)."""
        await self._replay(existing)
        problem = Problem(
            field="request_id",
            code="duplicate_request",
            message=(
                f"request_id {existing.request_id!r} already names job {existing.id} "
                f"(the same request, verdict {existing.verdict}); watch that job, or use "
                "a new request_id for a new shot"
            ),
            suggestions=[str(existing.id)],
        )
        # Its own row, keyed apart from the request (request_id and request_hash are
        # unique together): a repeat of this very message finds it by its job id.
        dup_hash = hashlib.sha256(f"duplicate:{request_hash}:{job_id}".encode()).hexdigest()
        async with _autocommit(self.sessions) as conn:
            judged = await self._judge(
                conn,
                raw=raw,
                request=None,
                problems=[problem],
                conflict=None,
                guard=False,
                job_id=job_id,
                request_id=existing.request_id,
                request_hash=dup_hash,
                via=via,
                correlation_id=correlation_id,
            )
            if judged is None:
                row = (await conn.execute(_BY_ID, {"job_id": job_id})).first()
                recorded = Recorded(*row) if row is not None else None
        if judged is None:
            if recorded is not None and recorded.request_hash == dup_hash:
                return await self._replay(recorded)
            # The job id belongs to another request: answer as before, from the record.
            return await self._replay(existing)
        await self._publish_verdict(judged.job_id, judged.event)
        log.info(
            "ingest.verdict",
            job_id=str(job_id),
            status="conflict",
            via=via,
            existing_job_id=str(existing.id),
            problems=[f"{p.field}: {p.message}" for p in judged.problems],
        )
        return Verdict(
            status="conflict", job_id=job_id, problems=judged.problems, event=judged.event
        )

    async def _replay(self, job: Recorded) -> Verdict:
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
