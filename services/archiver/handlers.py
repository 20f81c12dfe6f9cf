"""Archiver's subscriptions: the ledger (every event) and the archive (``job.rendered``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitMessage, RabbitRouter
from pydantic import ValidationError

from services.archiver import SERVICE
from services.archiver.archive import ArchiveError, Archivist
from services.archiver.fetch import ForeignJob
from services.archiver.ledger import ForgedEvent, UnknownJob
from services.archiver.recorder import BatchRecorder
from shared.events import EventType, JobFailed, JobRendered, Producer, derived_id, parse_event
from shared.logging import get_logger
from shared.messaging import park_delivery, requeue_after_pause, undecoded, with_message
from shared.publishers import Publishers
from shared.queues import REPLAYED_FROM_HEADER
from shared.runtime import ServiceRuntime
from shared.topology import WorkQueueSpec

log = get_logger(__name__)

MAX_EVENT_BYTES = 8 * 1024 * 1024


def build_router(
    runtime: ServiceRuntime,
    archivist: Archivist,
    recorder: BatchRecorder,
    *,
    roles: frozenset[str] = frozenset({"ledger", "archive"}),
    ledger_prefetch: int = 256,
    archive_prefetch: int = 8,
) -> RabbitRouter:
    """The archiver's subscriptions; ``roles`` picks the ledger, the archive or both."""
    router = RabbitRouter()
    publishers = Publishers(runtime.settings)
    specs = runtime.topology.pipeline_specs(runtime.settings)
    ledger_spec, rendered_spec = specs["archiver.ledger"], specs["archiver.rendered"]

    async def park(msg: RabbitMessage, spec: WorkQueueSpec, reason: str) -> None:
        await park_delivery(runtime.broker, spec, msg, reason=reason, service=SERVICE)

    async def parked_as_forged(
        msg: RabbitMessage, spec: WorkQueueSpec, event_type: EventType
    ) -> bool:
        """Park (and ack) a message whose publisher may not publish ``event_type``."""
        refusal = publishers.refusal(
            msg.raw_message.user_id,
            event_type,
            replayed=REPLAYED_FROM_HEADER in (msg.headers or {}),
        )
        if refusal is None:
            return False
        log.warning("archiver.forged_event", reason=refusal)
        await park(msg, spec, refusal)
        await msg.ack()
        return True

    # MANUAL acks throughout: an event is acked only once its row is committed (and, for
    # job.rendered, its files are on disk and job.archived is confirmed).
    async def on_any_job_event(msg: RabbitMessage) -> None:
        """Record an event in the job ledger, move the job's state, relay it to watchers.

        The recording itself is batched with whatever other deliveries are waiting
        (services/archiver/recorder.py); this delivery is acked once its batch is
        committed and its relay published.
        """
        try:
            if len(msg.body) > MAX_EVENT_BYTES:
                raise ValueError(f"event larger than {MAX_EVENT_BYTES} bytes")
            event = parse_event(msg.body)
        except (ValidationError, ValueError) as exc:
            await park(msg, ledger_spec, f"invalid event: {str(exc)[:500]}")
            await msg.ack()
            return
        # Who published it (RabbitMQ-validated user_id) must be allowed to publish its
        # type: no other principal can end, cancel or complete somebody's job.
        if await parked_as_forged(msg, ledger_spec, event.event_type):
            return
        try:
            outcome = await recorder.record(event)
        except Exception as exc:
            log.warning("archiver.ledger_failed", error=repr(exc)[:300])
            await requeue_after_pause(msg, error=exc)
            return
        if isinstance(outcome, UnknownJob):
            await park(msg, ledger_spec, f"unknown job: {outcome}")
        elif isinstance(outcome, ForgedEvent):
            log.warning("archiver.forged_event", reason=str(outcome))
            await park(msg, ledger_spec, f"forged: {outcome}")
        else:
            log.debug("archiver.recorded", seq=outcome.entry.seq, state=outcome.entry.state)
        await msg.ack()

    async def on_job_rendered(msg: RabbitMessage) -> None:
        """Fetch a render's images, archive them with metadata, publish job.archived."""
        if await parked_as_forged(msg, rendered_spec, EventType.RENDERED):
            return
        try:
            event = JobRendered.model_validate_json(msg.body)
        except ValidationError as exc:
            await park(msg, rendered_spec, f"invalid job.rendered: {str(exc)[:500]}")
            await msg.ack()
            return
        try:
            await archivist.archive(event)
        except ForeignJob as exc:
            log.warning("archiver.foreign_render", reason=str(exc))
            await park(msg, rendered_spec, str(exc))
        except ArchiveError as exc:
            if exc.transient:
                await requeue_after_pause(msg, error=exc)
                return
            log.error("archiver.failed", reason=str(exc))
            await runtime.bus.publish(
                JobFailed(
                    event_id=derived_id(event.job_id, "failed", "archive"),
                    job_id=event.job_id,
                    correlation_id=event.correlation_id,
                    producer=Producer.ARCHIVER,
                    project=event.project,
                    reason=f"archiving failed: {exc}",
                    error_kind="archive",
                    attempt=event.attempt,
                )
            )
        except Exception as exc:
            log.exception("archiver.archive_crashed")
            await requeue_after_pause(msg, error=exc)
            return
        await msg.ack()

    def subscribe(
        spec: WorkQueueSpec,
        prefetch: int,
        handler: Callable[[RabbitMessage], Awaitable[None]],
        description: str,
    ) -> None:
        router.subscriber(
            runtime.topology.work_queue(spec),
            runtime.topology.exchange,
            channel=Channel(prefetch_count=prefetch),
            decoder=undecoded,
            ack_policy=AckPolicy.MANUAL,
            title=f"archiver: {spec.name}",
            description=description,
        )(with_message(handler))

    if "ledger" in roles:
        subscribe(
            ledger_spec,
            ledger_prefetch,
            on_any_job_event,
            "Record every job event in the ledger (in batches) and relay it.",
        )
    if "archive" in roles:
        subscribe(
            rendered_spec,
            archive_prefetch,
            on_job_rendered,
            "Fetch a render's images, archive them, publish job.archived.",
        )
    return router
