"""Renderer's subscription: ``job.accepted`` → render → ``job.rendered`` (or retry / fail).

Routing of an attempt's outcome:

* rendered → publish ``job.rendered``, confirmed, *then* ack;
* transient failure with attempts left → ``job.retrying``, and the message goes to the
  delay queue of its tier (no consumer sleeps, nothing blocks the queue's head), carrying
  ``x-attempt`` and the backend to avoid; then ack;
* transient failure with no attempts left, or a permanent failure → ``job.failed`` and
  the message is parked in the renderer's dead-letter queue with the reason; then ack;
* cancelled → ``job.cancelled``.

Nothing is acked before the event that records its outcome is confirmed by the broker.
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitMessage, RabbitRouter
from pydantic import ValidationError
from sqlalchemy import select

from services.renderer import SERVICE
from services.renderer.rendering import Failed, Interrupted, Rendered, RenderService
from shared.db.models import JobState
from shared.events import (
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobRendered,
    JobRetrying,
    Producer,
    derived_id,
)
from shared.logging import get_logger
from shared.messaging import park_message, requeue_after_pause
from shared.runtime import ServiceRuntime

log = get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"
AVOID_HEADER = "x-avoid-backends"
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "rejected"})


def attempt_of(headers: dict[str, Any]) -> int:
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def build_router(
    runtime: ServiceRuntime, renderer: RenderService, *, prefetch: int
) -> RabbitRouter:
    router = RabbitRouter()
    settings = runtime.settings
    spec = runtime.topology.pipeline_specs(settings)["renderer.accepted"]
    retry_queues = [runtime.topology.retry_name(spec.name, d) for d in spec.retry_delays]

    async def job_is_final(accepted: JobAccepted) -> bool:
        # A duplicate job.accepted (ingest replays it after a crash) for a job that has
        # already ended must not render again.
        async with runtime.sessions() as session:
            state = await session.scalar(
                select(JobState.state).where(JobState.job_id == accepted.job_id)
            )
        return state in FINAL_STATES

    async def fail(
        accepted: JobAccepted, msg: RabbitMessage, attempt: int, outcome: Failed
    ) -> None:
        await runtime.bus.publish(
            JobFailed(
                event_id=derived_id(accepted.job_id, "failed"),
                job_id=accepted.job_id,
                correlation_id=accepted.correlation_id,
                producer=Producer.RENDERER,
                project=accepted.project,
                reason=outcome.reason,
                error_kind=outcome.kind,
                attempt=attempt,
                details=outcome.details,
            )
        )
        await park_message(
            runtime.broker,
            runtime.topology,
            spec,
            body=msg.body,
            headers={
                **dict(msg.headers or {}),
                ATTEMPT_HEADER: attempt,
                "x-error-kind": outcome.kind,
            },
            correlation_id=accepted.correlation_id,
            reason=f"{outcome.kind}: {outcome.reason}"
            + (f" | {'; '.join(outcome.details)[:600]}" if outcome.details else ""),
            service=SERVICE,
        )

    async def retry(
        accepted: JobAccepted, msg: RabbitMessage, attempt: int, outcome: Failed
    ) -> None:
        tier = min(attempt - 1, len(spec.retry_delays) - 1)
        delay = spec.retry_delays[tier]
        await runtime.bus.publish(
            JobRetrying(
                event_id=derived_id(accepted.job_id, "retrying", attempt),
                job_id=accepted.job_id,
                correlation_id=accepted.correlation_id,
                producer=Producer.RENDERER,
                project=accepted.project,
                attempt=attempt,
                next_attempt=attempt + 1,
                delay_seconds=delay,
                reason=outcome.reason,
                backend=outcome.backend,
            )
        )
        headers = dict(msg.headers or {})
        avoid = [b for b in str(headers.get(AVOID_HEADER, "")).split(",") if b]
        if outcome.backend:
            avoid = [*avoid, outcome.backend][-3:]
        await runtime.broker.publish(
            msg.body,
            queue=retry_queues[tier],
            exchange="",
            persist=True,
            mandatory=True,
            correlation_id=accepted.correlation_id,
            message_id=str(derived_id(accepted.job_id, "retry", attempt)),
            content_type="application/json",
            headers={**headers, ATTEMPT_HEADER: attempt + 1, AVOID_HEADER: ",".join(avoid)},
        )

    # MANUAL: the ack follows the confirmed publish of the outcome; an error of our own
    # (broker or database briefly away) requeues the job after a pause.
    @router.subscriber(
        runtime.topology.work_queue(spec),
        runtime.topology.exchange,
        channel=Channel(prefetch_count=prefetch),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_job_accepted(msg: RabbitMessage) -> None:
        """Render an accepted job on a ComfyUI backend and publish its outcome."""
        try:
            accepted = JobAccepted.model_validate_json(msg.body)
        except ValidationError as exc:
            await park_message(
                runtime.broker,
                runtime.topology,
                spec,
                body=msg.body,
                headers=dict(msg.headers or {}),
                correlation_id=msg.correlation_id,
                reason=f"invalid job.accepted: {str(exc)[:500]}",
                service=SERVICE,
            )
            await msg.ack()
            return
        headers = dict(msg.headers or {})
        attempt = attempt_of(headers)
        try:
            if await job_is_final(accepted):
                log.info("renderer.skip_final_job", attempt=attempt)
                await msg.ack()
                return
            avoid = [b for b in str(headers.get(AVOID_HEADER, "")).split(",") if b]
            outcome = await renderer.render(accepted, attempt, avoid)
            if isinstance(outcome, Rendered) and not outcome.result.outputs:
                outcome = Failed(
                    reason="the workflow produced no images",
                    kind="no_output",
                    transient=False,
                    backend=outcome.backend,
                )
            if isinstance(outcome, Rendered):
                await runtime.bus.publish(
                    JobRendered(
                        event_id=derived_id(accepted.job_id, "rendered", attempt),
                        job_id=accepted.job_id,
                        correlation_id=accepted.correlation_id,
                        producer=Producer.RENDERER,
                        project=accepted.project,
                        spec=accepted.spec,
                        backend=outcome.backend,
                        prompt_id=outcome.prompt_id,
                        attempt=attempt,
                        outputs=outcome.result.outputs,
                        workflow=outcome.workflow,
                        render_seconds=outcome.seconds,
                    )
                )
            elif isinstance(outcome, Interrupted):
                await runtime.bus.publish(
                    JobCancelled(
                        event_id=derived_id(accepted.job_id, "cancelled"),
                        job_id=accepted.job_id,
                        correlation_id=accepted.correlation_id,
                        producer=Producer.RENDERER,
                        project=accepted.project,
                        stage="running",
                        reason="interrupted on request",
                    )
                )
            elif outcome.transient and attempt < settings.max_attempts:
                log.warning(
                    "renderer.retry",
                    attempt=attempt,
                    reason=outcome.reason,
                    backend=outcome.backend,
                )
                await retry(accepted, msg, attempt, outcome)
            else:
                if outcome.transient:
                    outcome = Failed(
                        reason=f"gave up after {attempt} attempts: {outcome.reason}",
                        kind=outcome.kind,
                        transient=True,
                        backend=outcome.backend,
                        details=outcome.details,
                    )
                log.error(
                    "renderer.failed",
                    attempt=attempt,
                    reason=outcome.reason,
                    details=outcome.details,
                )
                await fail(accepted, msg, attempt, outcome)
        except Exception as exc:
            log.exception("renderer.crashed")
            await requeue_after_pause(msg, error=exc)
            return
        await msg.ack()

    return router
