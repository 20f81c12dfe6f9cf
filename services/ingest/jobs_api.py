"""Ingest's HTTP door for jobs: ``POST /v1/jobs`` and the read side of jobs.

Submission goes through the same :class:`SubmissionDesk` as the AMQP door; answers:
202 new job, 200 the same request again (the existing job), 409 the request id names
another body, 422 every problem of an invalid request, 400/413/415 for a body that
cannot be read at all.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web

from services.ingest.api_models import (
    CancelAccepted,
    CancelIn,
    JobCreated,
    JobDocument,
    JobList,
    JobListQuery,
    SubmitRequest,
)
from services.ingest.cancellation import request_cancel
from services.ingest.cursors import decode_cursor, encode_cursor
from services.ingest.errors import BadRequest, Forbidden, NotFound
from services.ingest.http_auth import require_project, visible_projects
from services.ingest.http_errors import error_response
from services.ingest.http_io import parse_model, path_uuid, query_model, read_json
from services.ingest.http_routes import UUID_SCHEMA, PathParam, Reply, Route, register
from services.ingest.hygiene import header_token
from services.ingest.jobs_query import JobFilter, job_summary, list_jobs, load_job_document
from services.ingest.submission import SubmissionDesk
from shared.db.session import SessionFactory
from shared.messaging import EventBus


class JobsApi:
    def __init__(self, *, desk: SubmissionDesk, sessions: SessionFactory, bus: EventBus) -> None:
        self.desk = desk
        self.sessions = sessions
        self.bus = bus

    def register(self, app: web.Application) -> None:
        register(app, JOB_ROUTES, self)

    async def submit(self, request: web.Request) -> web.Response:
        """Submit a shot. 202 new job, 200 same request again, 409 conflict, 422 invalid."""
        body = await read_json(request)
        projects = visible_projects(request)
        if projects is not None:
            project = body.get("project") if isinstance(body, dict) else None
            if not isinstance(project, str):
                raise Forbidden(
                    "this key is limited to projects; name one of them in 'project'",
                    field="project",
                )
            require_project(request, project)
        correlation_id = header_token(request.headers.get("X-Correlation-ID")) or uuid.uuid4().hex
        verdict = await self.desk.submit(body, via="http", correlation_id=correlation_id)
        headers = {"Location": f"/v1/jobs/{verdict.job_id}", "X-Correlation-ID": correlation_id}
        if verdict.status == "created":
            created = JobCreated(job_id=verdict.job_id, correlation_id=correlation_id)
            return web.json_response(created.model_dump(mode="json"), status=202, headers=headers)
        if verdict.status == "existing" and verdict.accepted:
            async with self.sessions() as session:
                document = await load_job_document(session, verdict.job_id)
            assert document is not None
            return web.json_response(document.model_dump(mode="json"), status=200, headers=headers)
        status = 409 if verdict.status == "conflict" else 422
        return error_response(status, verdict.problems, job_id=str(verdict.job_id))

    async def get(self, request: web.Request) -> web.Response:
        """A job: state, timestamps, character versions, events, assets once archived."""
        job_id = path_uuid(request, "job_id")
        async with self.sessions() as session:
            document = await load_job_document(session, job_id)
        projects = visible_projects(request)
        if document is None or (projects is not None and document.project not in projects):
            raise NotFound(f"no job {job_id}", field="job_id")
        return web.json_response(document.model_dump(mode="json"))

    async def list_all(self, request: web.Request) -> web.Response:
        query = query_model(request, JobListQuery)
        if query.project is not None:
            require_project(request, query.project)
        after = _after(query.cursor) if query.cursor else None
        where = JobFilter(
            project=query.project,
            status=query.status,
            character=query.character,
            visible=visible_projects(request),
            after=after,
            order=query.order,
            limit=query.limit + 1,
        )
        async with self.sessions() as session:
            rows = await list_jobs(session, where)
        page = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit:
            last = page[-1][0]
            next_cursor = encode_cursor("jobs", last.created_at.isoformat(), str(last.id))
        body = JobList(
            items=[job_summary(job, state) for job, state in page], next_cursor=next_cursor
        )
        return web.json_response(body.model_dump(mode="json"))

    async def cancel(self, request: web.Request) -> web.Response:
        job_id = path_uuid(request, "job_id")
        body = await read_json(request, limit=16 * 1024, empty_ok=True)
        request_body = CancelIn() if body is None else parse_model(CancelIn, body)
        event = await request_cancel(
            self.sessions,
            self.bus,
            job_id,
            reason=request_body.reason,
            visible=visible_projects(request),
        )
        accepted = CancelAccepted(job_id=job_id, event_id=event.event_id)
        return web.json_response(accepted.model_dump(mode="json"), status=202)


def _after(cursor: str) -> tuple[datetime, uuid.UUID]:
    created, raw_id = decode_cursor(cursor, "jobs", 2)
    try:
        return datetime.fromisoformat(created), uuid.UUID(raw_id)
    except ValueError:
        raise BadRequest(
            "cursor is not valid here; pass next_cursor unchanged",
            field="cursor",
            code="bad_cursor",
        ) from None


_JOB_ID = PathParam("job_id", "The job's id (also every event's job_id).", UUID_SCHEMA)

JOB_ROUTES = (
    Route(
        "POST",
        "/v1/jobs",
        JobsApi.submit,
        operation_id="submitJob",
        summary="Submit a shot request",
        tag="jobs",
        scope="submit",
        body=SubmitRequest,
        replies=(
            Reply(202, "Accepted as a new job; job.accepted is published.", JobCreated),
            Reply(
                200, "The same request_id and body were submitted before: that job.", JobDocument
            ),
        ),
        errors=(400, 409, 413, 415, 422),
        description="The same validation as a job.submitted event. Idempotent by request_id: "
        "the same body again answers 200 with the existing job; a different body under a "
        "request_id that already has an accepted job is a 409 naming that job. A 422 lists "
        "every problem (and is recorded as a rejected job, published as job.rejected). "
        "Send X-Correlation-ID to choose the id carried by every event of the job.",
    ),
    Route(
        "GET",
        "/v1/jobs",
        JobsApi.list_all,
        operation_id="listJobs",
        summary="List jobs, filtered and cursor-paged",
        tag="jobs",
        scope="read",
        query=JobListQuery,
        replies=(Reply(200, "A page of jobs; follow next_cursor for more.", JobList),),
        errors=(400, 422),
    ),
    Route(
        "GET",
        "/v1/jobs/{job_id}",
        JobsApi.get,
        operation_id="getJob",
        summary="Get a job: state, character versions, ledger events, assets",
        tag="jobs",
        scope="read",
        path_params=(_JOB_ID,),
        replies=(Reply(200, "The job.", JobDocument),),
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/v1/jobs/{job_id}/cancel",
        JobsApi.cancel,
        operation_id="cancelJob",
        summary="Ask for a job to be cancelled (publishes job.cancel_requested)",
        tag="jobs",
        scope="submit",
        path_params=(_JOB_ID,),
        body=CancelIn,
        body_required=False,
        replies=(
            Reply(202, "The request was published; watch for job.cancelled.", CancelAccepted),
        ),
        errors=(400, 404, 409, 413, 422),
    ),
)
