"""Ingest's AMQP door: ``job.submitted`` events from other systems."""

from __future__ import annotations

import uuid
from typing import Any

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitMessage, RabbitRouter

from services.ingest import MAX_BODY_BYTES, SERVICE
from services.ingest.bodies import Undecodable, decode_json
from services.ingest.hygiene import header_token
from services.ingest.submission import SubmissionDesk
from shared.logging import get_logger
from shared.messaging import park_delivery, requeue_after_pause, undecoded, with_message
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


def _job_id_hint(value: Any) -> uuid.UUID | None:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _job_id_refusal(value: Any) -> str:
    """The park reason of a ``job.submitted`` object without a usable ``job_id``."""
    why = (
        "missing_job_id: the event has no job_id"
        if value is None
        else f"invalid_job_id: job_id {str(value)[:80]!r} is not a UUID"
    )
    return (
        f"{why}; a job.submitted needs a job_id (UUID) chosen by the submitter, "
        "the id every answer (job.accepted, job.rejected, ...) is published under"
    )


def build_router(
    runtime: ServiceRuntime, desk: SubmissionDesk, *, prefetch: int = 32
) -> RabbitRouter:
    router = RabbitRouter()
    spec = runtime.topology.pipeline_specs(runtime.settings)["ingest.submitted"]

    # MANUAL: a message is acked only after its verdict is recorded and its event
    # confirmed, and a failure (database down) is requeued after a pause rather than
    # dead-lettered: the request itself may be perfectly valid.
    @router.subscriber(
        runtime.topology.work_queue(spec),
        runtime.topology.exchange,
        channel=Channel(prefetch_count=prefetch),
        ack_policy=AckPolicy.MANUAL,
        decoder=undecoded,
    )
    @with_message
    async def on_job_submitted(msg: RabbitMessage) -> None:
        """Validate a submitted shot request and publish job.accepted or job.rejected."""
        correlation_id = (
            header_token(msg.correlation_id) or header_token(msg.message_id) or uuid.uuid4().hex
        )
        try:
            body = decode_json(msg.body, max_bytes=MAX_BODY_BYTES)
            if isinstance(body, Undecodable):
                await park_delivery(
                    runtime.broker,
                    spec,
                    msg,
                    reason=body.reason,
                    service=SERVICE,
                    correlation_id=correlation_id,
                )
            elif isinstance(body, dict) and _job_id_hint(body.get("job_id")) is None:
                # No id to answer on: every verdict is published under the submitter's
                # job_id (required by the schema), so the message is refused, parked.
                await park_delivery(
                    runtime.broker,
                    spec,
                    msg,
                    reason=_job_id_refusal(body.get("job_id")),
                    service=SERVICE,
                    correlation_id=header_token(body.get("correlation_id")) or correlation_id,
                )
            else:
                hint = body.get("job_id") if isinstance(body, dict) else None
                if isinstance(body, dict):
                    correlation_id = header_token(body.get("correlation_id")) or correlation_id
                await desk.submit(
                    body, via="amqp", correlation_id=correlation_id, job_id=_job_id_hint(hint)
                )
        except Exception as exc:
            log.exception("ingest.submission_failed")
            await requeue_after_pause(msg, error=exc)
            return
        await msg.ack()

    return router
