"""``anime jobs list/show/cancel`` and ``anime projects``: the read side from PostgreSQL,
the cancel request as a ``job.cancel_requested`` event on the bus."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import aio_pika
import typer
from rich.table import Table
from sqlalchemy import String, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    age_text,
    console,
    fail,
    print_json,
    run_async,
)
from cli.failures import failure_lines, print_wrapped
from cli.watching import FINAL_STATES, STATE_STYLE
from services.ingest.jobs_query import load_job_document
from shared.db.models import Job, JobEvent, JobState, Project
from shared.db.session import make_engine, make_sessionmaker
from shared.events import JobCancelRequested, Producer, derived_id, utcnow
from shared.publishers import broker_user
from shared.queues import connect
from shared.settings import Settings, get_settings

jobs_app = typer.Typer(
    help="Look at jobs and cancel them.\n\nExamples: anime jobs list --state failed; "
    "anime jobs show 3f2a…; anime jobs cancel 3f2a…",
    no_args_is_help=True,
)


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def resolve_job_id(settings: Settings, given: str) -> uuid.UUID:
    """A job id from a whole id or a unique prefix of one (``3f2a9c1e``, with or without
    dashes). No such job: exit 1; an ambiguous prefix: exit 2, listing the candidates."""
    text = given.strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    compact = text.replace("-", "")
    if not compact or len(compact) > 32 or any(c not in "0123456789abcdef" for c in compact):
        raise CliError(f"{given!r} is not a job id or the start of one", EXIT_USAGE)
    dashed = "-".join(
        part
        for part in (
            compact[:8],
            compact[8:12],
            compact[12:16],
            compact[16:20],
            compact[20:],
        )
        if part
    )
    async with _session(settings) as session:
        found = list(
            await session.scalars(
                select(Job.id)
                .where(cast(Job.id, String).startswith(dashed, autoescape=True))
                .order_by(Job.created_at.desc())
                .limit(6)
            )
        )
    if not found:
        raise CliError(f"no job {given}", EXIT_FAILED)
    if len(found) > 1:
        shown = ", ".join(str(j) for j in found[:5]) + (", …" if len(found) > 5 else "")
        raise CliError(f"job id prefix {given!r} is ambiguous: {shown}", EXIT_USAGE)
    return found[0]


def _state_expr() -> Any:
    return func.coalesce(
        JobState.state, case((Job.verdict == "rejected", "rejected"), else_="submitted")
    )


async def list_jobs(
    settings: Settings, *, project: str | None = None, state: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    state_expr = _state_expr()
    query = (
        select(Job, JobState, state_expr.label("state"))
        .join(JobState, JobState.job_id == Job.id, isouter=True)
        .order_by(Job.created_at.desc())
        .limit(limit)
    )
    if project:
        query = query.where(Job.project_slug == project)
    if state:
        query = query.where(state_expr == state)
    async with _session(settings) as session:
        rows = (await session.execute(query)).all()
        failures = await _failures(
            session,
            [job.id for job, job_state, _ in rows if job_state and job_state.state == "failed"],
        )
    return [
        {
            "job_id": str(job.id),
            "request_id": job.request_id,
            "project": job.project_slug,
            "shot": "/".join(p for p in (job.episode, job.scene, job.shot) if p) or None,
            "template": job.template,
            "state": current,
            "progress": job_state.progress if job_state else 0.0,
            "attempt": job_state.attempt if job_state else 0,
            "backend": job_state.backend if job_state else None,
            "reason": job_state.reason if job_state else None,
            "problems": failures.get(job.id, {}).get("problems", []),
            "details": failures.get(job.id, {}).get("details", []),
            "created_at": job.created_at.isoformat(),
            "updated_at": (job_state.updated_at if job_state else job.created_at).isoformat(),
        }
        for job, job_state, current in rows
    ]


async def _failures(
    session: AsyncSession, job_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The last ``job.failed`` payload of each of ``job_ids``."""
    if not job_ids:
        return {}
    events = await session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id.in_(job_ids), JobEvent.event_type == "job.failed")
        .order_by(JobEvent.job_id, JobEvent.seq)
    )
    return {event.job_id: event.payload for event in events}


async def show_job(settings: Settings, job_id: uuid.UUID) -> dict[str, Any] | None:
    """Ingest's ``GET /v1/jobs/{id}`` document, plus what an operator wants on a terminal:
    the correlation id, the backend, when it finished, and absolute asset paths."""
    async with _session(settings) as session:
        document = await load_job_document(session, job_id)
        if document is None:
            return None
        job = await session.get(Job, job_id)
        job_state = await session.get(JobState, job_id)
    assert job is not None
    root = Path(settings.asset_root)
    shown: dict[str, Any] = document.model_dump(mode="json")
    shown["correlation_id"] = job.correlation_id
    shown["backend"] = job_state.backend if job_state else None
    shown["finished_at"] = (
        job_state.finished_at.isoformat() if job_state and job_state.finished_at else None
    )
    shown["assets"] = [{**a, "path": str(root / a["path"])} for a in shown["assets"]]
    return shown


async def request_cancel(settings: Settings, job_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """Publish ``job.cancel_requested`` for a job that has not ended yet."""
    async with _session(settings) as session:
        job = await session.get(Job, job_id)
        job_state = await session.get(JobState, job_id)
    if job is None:
        raise CliError(f"no job {job_id}", EXIT_FAILED)
    state = job_state.state if job_state else ("rejected" if job.verdict == "rejected" else None)
    if state in FINAL_STATES:
        raise CliError(f"job {job_id} has already ended ({state}); nothing to cancel")
    event = JobCancelRequested(
        event_id=derived_id(job_id, "cancel_requested"),
        job_id=job_id,
        correlation_id=job.correlation_id,
        producer=Producer.CLI,
        project=job.project_slug,
        occurred_at=utcnow(),
        reason=reason,
    )
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(settings.exchange, ensure=True)
        await exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                headers=dict(event.headers()),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                correlation_id=event.correlation_id,
                message_id=str(event.event_id),
                user_id=broker_user(settings.amqp_url),
            ),
            routing_key=event.routing_key(),
            mandatory=True,
        )
    return {"job_id": str(job_id), "state": state, "cancel_requested": str(event.event_id)}


async def list_projects(settings: Settings) -> list[dict[str, Any]]:
    state = _state_expr()
    counts = (
        select(
            Job.project_slug.label("slug"),
            func.count().label("jobs"),
            func.count().filter(state == "completed").label("completed"),
            func.count().filter(state == "failed").label("failed"),
            func.count().filter(state == "rejected").label("rejected"),
            func.count().filter(state == "cancelled").label("cancelled"),
            func.count().filter(state.not_in(list(FINAL_STATES))).label("active"),
            func.max(Job.created_at).label("last_job_at"),
        )
        .join(JobState, JobState.job_id == Job.id, isouter=True)
        .group_by(Job.project_slug)
        .subquery()
    )
    query = (
        select(Project, counts)
        .join(counts, counts.c.slug == Project.slug, isouter=True)
        .order_by(Project.slug)
    )
    async with _session(settings) as session:
        rows = (await session.execute(query)).all()
    return [
        {
            "slug": project.slug,
            "name": project.name,
            "jobs": jobs or 0,
            "active": active or 0,
            "completed": completed or 0,
            "failed": failed or 0,
            "rejected": rejected or 0,
            "cancelled": cancelled or 0,
            "last_job_at": last.isoformat() if last else None,
            "created_at": project.created_at.isoformat(),
        }
        for project, _, jobs, completed, failed, rejected, cancelled, active, last in rows
    ]


def _ago(iso: str) -> str:
    from datetime import UTC, datetime

    return age_text((datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds())


@jobs_app.command("list")
def jobs_list(
    project: Annotated[str | None, typer.Option(help="Only this project's jobs.")] = None,
    state: Annotated[
        str | None,
        typer.Option(
            help="Only jobs in this state (submitted, accepted, rendering, retrying, "
            "rendered, completed, failed, cancelled, rejected)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The latest jobs, newest first.

    Examples: anime jobs list; anime jobs list --project neon-skies --state failed --json
    """
    rows = run_async(list_jobs(get_settings(), project=project, state=state, limit=limit))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} job(s)", title_justify="left")
    # Ids are never wrapped or cut (they are pasted into `jobs show`); reasons, which
    # are long, go under the table, wrapped at word boundaries.
    for column in ("job", "project", "shot", "state", "progress", "attempt", "age"):
        table.add_column(
            column,
            no_wrap=column != "shot",
            overflow="fold" if column == "shot" else "ignore",
            min_width=36 if column == "job" else None,
        )
    for row in rows:
        style = STATE_STYLE.get(row["state"], "")
        table.add_row(
            row["job_id"],
            row["project"],
            row["shot"] or "",
            f"[{style}]{row['state']}[/]" if style else row["state"],
            f"{row['progress']:.0f}%",
            str(row["attempt"]),
            _ago(row["created_at"]),
        )
    console.print(table)
    for row in rows:
        lines = failure_lines(row["reason"], row["problems"], row["details"])
        if lines:
            console.print(f"[bold]{row['job_id']}[/] {row['state']}", highlight=False)
            print_wrapped(console, lines)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job's id, or a unique prefix of it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One job: request, state, character versions, its ledger and archived files.

    Exit 1 if there is no such job. Example: anime jobs show 3f2a9c1e-… --json
    """
    settings = get_settings()

    async def find() -> dict[str, Any] | None:
        return await show_job(settings, await resolve_job_id(settings, job_id))

    document = run_async(find())
    if document is None:
        fail(f"no job {job_id}")
    if as_json:
        print_json(document)
        return
    style = STATE_STYLE.get(document["state"], "")
    console.print(f"[bold]job {document['job_id']}[/]  [{style or 'white'}]{document['state']}[/]")
    for key in (
        "request_id",
        "project",
        "episode",
        "scene",
        "shot",
        "template",
        "attempt",
        "backend",
        *(() if document.get("failure") else ("reason",)),
        "created_at",
        "finished_at",
    ):
        if document.get(key) not in (None, ""):
            console.print(f"  {key:<12} {document[key]}", highlight=False)
    failure = document.get("failure")
    if failure:
        console.print("  failure", highlight=False)
        print_wrapped(
            console,
            failure_lines(failure["reason"], failure["problems"], failure["details"]),
            indent="    ",
        )
    for version in document["character_versions"]:
        console.print(f"  character    {version.get('name')} v{version.get('version')}")
    for event in document["events"]:
        console.print(f"  {event['seq']:>3} {event['event_type']:<22} {event['state']}")
    for asset in document["assets"]:
        console.print(f"  archived: [green]{asset['path']}[/]", highlight=False, soft_wrap=True)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id, or a unique prefix of it.")],
    reason: Annotated[
        str, typer.Option(help="Why (kept in the ledger).")
    ] = "requested by operator",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ask the pipeline to cancel a job (publishes job.cancel_requested).

    Exit 1 if there is no such job or it has already ended. Example: anime jobs cancel 3f2a…
    """
    settings = get_settings()

    async def cancel() -> dict[str, Any]:
        return await request_cancel(settings, await resolve_job_id(settings, job_id), reason)

    result = run_async(cancel())
    if as_json:
        print_json(result)
    else:
        console.print(f"cancel requested for job {result['job_id']} (was {result['state']})")


def projects(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The projects, with how many jobs each has by outcome (active + completed + failed +
    rejected + cancelled = jobs).

    Example: anime projects --json
    """
    rows = run_async(list_projects(get_settings()))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} project(s)", title_justify="left")
    for column in (
        "project",
        "name",
        "jobs",
        "active",
        "completed",
        "failed",
        "rejected",
        "cancelled",
        "last job",
    ):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(
            row["slug"],
            row["name"],
            str(row["jobs"]),
            str(row["active"]),
            str(row["completed"]),
            f"[red]{row['failed']}[/]" if row["failed"] else "0",
            f"[red]{row['rejected']}[/]" if row["rejected"] else "0",
            str(row["cancelled"]),
            _ago(row["last_job_at"]) + " ago" if row["last_job_at"] else "—",
        )
    console.print(table)


__all__ = ["jobs_app", "projects"]
