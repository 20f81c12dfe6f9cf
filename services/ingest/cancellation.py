"""Asking for a job to be cancelled: ``job.cancel_requested``, unless it is too late.

Ingest does not cancel anything itself: it checks that the job exists and is not in a
final state, and publishes the request. The renderer stops the job if it still can
and publishes ``job.cancelled``; the ledger records both.
"""

from __future__ import annotations

import uuid

from services.ingest.api_models import FINAL_STATUSES
from services.ingest.errors import Conflict, NotFound
from services.ingest.jobs_query import load_job, state_without_ledger
from shared.db.session import SessionFactory
from shared.events import JobCancelRequested, Producer
from shared.logging import get_logger
from shared.messaging import EventBus

log = get_logger(__name__)


async def request_cancel(
    sessions: SessionFactory,
    bus: EventBus,
    job_id: uuid.UUID,
    *,
    reason: str,
    visible: frozenset[str] | None,
) -> JobCancelRequested:
    """Publish ``job.cancel_requested`` for a job that may still be stopped.

    404 if the job does not exist (or the caller's key may not see its project),
    409 if it is already final (completed, failed, cancelled, rejected).
    """
    async with sessions() as session:
        found = await load_job(session, job_id)
    if found is None or (visible is not None and found[0].project_slug not in visible):
        raise NotFound(f"no job {job_id}", field="job_id")
    job, state = found
    current = state.state if state else state_without_ledger(job)
    if current in FINAL_STATUSES:
        raise Conflict(
            f"job {job_id} is already {current}; only a job that has not ended can be cancelled",
            field="job_id",
            code="job_final",
        )
    event = JobCancelRequested(
        job_id=job.id,
        correlation_id=job.correlation_id,
        producer=Producer.INGEST,
        project=job.project_slug,
        reason=reason,
    )
    await bus.publish(event)
    log.info("ingest.cancel_requested", job_id=str(job_id), state=current, reason=reason)
    return event
