"""Ingest's HTTP door for jobs: ``POST /v1/jobs`` and the read side of a job."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest import MAX_BODY_BYTES
from services.ingest.http_errors import error_response
from services.ingest.submission import SubmissionDesk
from shared.auth import requires
from shared.db.models import Asset, Job, JobEvent, JobState
from shared.db.session import SessionFactory


def job_document(
    job: Job, state: JobState | None, events: list[JobEvent], assets: list[Asset]
) -> dict[str, Any]:
    """A job as clients see it: request, verdict, lifecycle, ledger and assets."""
    return {
        "job_id": str(job.id),
        "request_id": job.request_id,
        "project": job.project_slug,
        "episode": job.episode,
        "scene": job.scene,
        "shot": job.shot,
        "template": job.template,
        "priority": job.priority,
        "verdict": job.verdict,
        "state": state.state
        if state
        else ("submitted" if job.verdict == "accepted" else "rejected"),
        "progress": state.progress if state else 0.0,
        "attempt": state.attempt if state else 0,
        "reason": state.reason if state else None,
        "problems": job.problems or [],
        "character_versions": job.character_versions,
        "created_at": job.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat() if state else job.created_at.isoformat(),
        "events": [
            {
                "seq": e.seq,
                "event_type": e.event_type,
                "state": e.state,
                "occurred_at": e.occurred_at.isoformat(),
            }
            for e in events
        ],
        "assets": [
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
    }


async def load_job_document(session: AsyncSession, job_id: uuid.UUID) -> dict[str, Any] | None:
    job = await session.get(Job, job_id)
    if job is None:
        return None
    state = await session.get(JobState, job_id)
    events = list(
        (
            await session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
            )
        ).all()
    )
    assets = list(
        (
            await session.scalars(select(Asset).where(Asset.job_id == job_id).order_by(Asset.index))
        ).all()
    )
    return job_document(job, state, events, assets)


class JobsApi:
    def __init__(self, *, desk: SubmissionDesk, sessions: SessionFactory) -> None:
        self.desk = desk
        self.sessions = sessions

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/jobs", self.submit)
        app.router.add_get("/v1/jobs/{job_id}", self.get)

    @requires("submit")
    async def submit(self, request: web.Request) -> web.Response:
        """Submit a shot. 202 new job, 200 same request again, 409 conflict, 422 invalid."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return error_response(413, f"body larger than {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return error_response(413, f"body larger than {MAX_BODY_BYTES} bytes")
        if request.content_type not in ("application/json", ""):
            return error_response(415, "send the request as application/json")
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_refuse)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return error_response(400, f"body is not valid UTF-8 JSON: {str(exc)[:200]}")
        correlation_id = request.headers.get("X-Correlation-ID", "")[:200] or uuid.uuid4().hex
        verdict = await self.desk.submit(body, via="http", correlation_id=correlation_id)
        headers = {"Location": f"/v1/jobs/{verdict.job_id}", "X-Correlation-ID": correlation_id}
        if verdict.status == "created":
            return web.json_response(
                {
                    "job_id": str(verdict.job_id),
                    "state": "accepted",
                    "correlation_id": correlation_id,
                },
                status=202,
                headers=headers,
            )
        if verdict.status == "existing" and verdict.accepted:
            async with self.sessions() as session:
                document = await load_job_document(session, verdict.job_id)
            return web.json_response(document, status=200, headers=headers)
        status = 409 if verdict.status == "conflict" else 422
        return error_response(status, verdict.problems, job_id=str(verdict.job_id))

    @requires("read")
    async def get(self, request: web.Request) -> web.Response:
        """A job: state, timestamps, character versions, events, assets once archived."""
        try:
            job_id = uuid.UUID(request.match_info["job_id"])
        except ValueError:
            return error_response(400, "job id must be a UUID", field="job_id")
        async with self.sessions() as session:
            document = await load_job_document(session, job_id)
        if document is None:
            return error_response(404, f"no job {job_id}", field="job_id")
        return web.json_response(document)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
