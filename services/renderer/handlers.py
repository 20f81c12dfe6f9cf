"""Renderer's subscriptions.

* ``renderer.job.accepted`` (intake): each accepted job is moved, durably, into the quorum
  queue of its priority band (``renderer.band.high|normal|low``), then acked. RabbitMQ
  3.10 quorum queues have no priorities; bands plus priority-ordered backend slots give
  high priorities a way past a backlog without giving up durability.
* ``renderer.band.*``: check the message against the job's row in ``jobs`` (the truth;
  a message is only a claim: one that disagrees is parked as forged, and nothing is
  published about the job), then render the row's spec and route the outcome:

  - rendered → publish ``job.rendered``, confirmed, *then* ack;
  - transient failure with attempts left → ``job.retrying``; the message goes to the
    delay queue of its tier (no consumer sleeps, nothing blocks a queue's head) with
    ``x-attempt`` and the backend to avoid, and comes back through the intake;
  - transient failure with no attempts left, or a permanent failure → ``job.failed`` and
    the message is parked in ``renderer.job.accepted.dlq`` with the reason;
  - cancelled → ``job.cancelled``.

* ``renderer.fanout.<replica>``: this replica's copy of every ``job.cancel_requested``.

Nothing is acked before the event that records its outcome is confirmed by the broker.
"""

from __future__ import annotations

import uuid
from typing import Any

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitMessage, RabbitRouter
from pydantic import ValidationError

from services.renderer import SERVICE
from services.renderer.cancellation import CancelRegistry
from services.renderer.rendering import Failed, Interrupted, Rendered, RenderService
from shared.events import (
    EventType,
    JobAccepted,
    JobCancelled,
    JobCancelRequested,
    JobFailed,
    JobRendered,
    JobRetrying,
    Producer,
    derived_id,
)
from shared.job_facts import JobFactsReader
from shared.logging import get_logger
from shared.messaging import park_delivery, requeue_after_pause, undecoded, with_message
from shared.metrics import RETRIES
from shared.publishers import Publishers
from shared.queues import REPLAYED_FROM_HEADER
from shared.runtime import ServiceRuntime
from shared.topology import PRIORITY_BANDS, WorkQueueSpec, priority_band

log = get_logger(__name__)

#: The attempt number of this delivery (absolute: it keeps counting across redrives).
ATTEMPT_HEADER = "x-attempt"
#: Set by a redrive: attempts before this one belong to a run that failed.
ATTEMPT_BASE_HEADER = "x-attempt-base"
AVOID_HEADER = "x-avoid-backends"
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "rejected"})


def _int_header(headers: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(headers.get(name, default))
    except (TypeError, ValueError):
        return default


def redelivered(msg: RabbitMessage) -> bool:
    """True when the broker delivered this message before (to a consumer that died)."""
    headers = msg.headers or {}
    return bool(msg.raw_message.redelivered) or bool(headers.get("x-delivery-count"))


def attempt_of(headers: dict[str, Any]) -> tuple[int, int]:
    """(this attempt's number, the number of attempts before this run began)."""
    base = max(0, _int_header(headers, ATTEMPT_BASE_HEADER, 0))
    return max(base + 1, _int_header(headers, ATTEMPT_HEADER, 1)), base


def build_router(
    runtime: ServiceRuntime,
    renderer: RenderService,
    cancels: CancelRegistry,
    *,
    prefetch: int,
) -> RabbitRouter:
    router = RabbitRouter()
    settings = runtime.settings
    specs = runtime.topology.pipeline_specs(settings)
    intake = specs["renderer.accepted"]
    bands = {band: specs[f"renderer.band.{band}"] for band, _, _ in PRIORITY_BANDS}
    retry_queues = [runtime.topology.retry_name(intake.name, d) for d in intake.retry_delays]
    #: (job, attempt) pairs this process is rendering: a duplicate job.accepted arriving
    #: meanwhile must not start a second render of the same prompt.
    in_progress: set[tuple[uuid.UUID, int]] = set()

    async def park(msg: RabbitMessage, spec: WorkQueueSpec, reason: str, **extra: Any) -> None:
        await park_delivery(
            runtime.broker, spec, msg, reason=reason, service=SERVICE, extra_headers=extra
        )

    #: The jobs rows are the truth; a job.accepted is only a claim about one of them.
    facts = JobFactsReader(lambda: runtime.sessions())
    publishers = Publishers(settings)

    async def publish_cancelled(accepted: JobAccepted, stage: str) -> None:
        await runtime.bus.publish(
            JobCancelled(
                event_id=derived_id(accepted.job_id, "cancelled"),
                **accepted.envelope(Producer.RENDERER),
                stage=stage,  # type: ignore[arg-type]
                reason=cancels.requested.get(accepted.job_id, "requested"),
            )
        )

    async def fail(
        accepted: JobAccepted, msg: RabbitMessage, attempt: int, outcome: Failed
    ) -> None:
        await runtime.bus.publish(
            JobFailed(
                event_id=derived_id(accepted.job_id, "failed", attempt),
                **accepted.envelope(Producer.RENDERER),
                reason=outcome.reason,
                error_kind=outcome.kind,
                attempt=attempt,
                details=outcome.details,
                problems=outcome.problems,
            )
        )
        await park(
            msg,
            intake,
            park_reason(outcome, accepted.job_id),
            **{ATTEMPT_HEADER: attempt, "x-error-kind": outcome.kind},
        )

    async def retry(
        accepted: JobAccepted, msg: RabbitMessage, attempt: int, outcome: Failed
    ) -> None:
        tier = min(attempt - 1, len(intake.retry_delays) - 1)
        delay = intake.retry_delays[tier]
        await runtime.bus.publish(
            JobRetrying(
                event_id=derived_id(accepted.job_id, "retrying", attempt),
                **accepted.envelope(Producer.RENDERER),
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
            user_id=runtime.bus.user_id,
        )

    # MANUAL acks throughout: the ack follows the confirmed publish of the outcome; an
    # error of our own (broker or database briefly away) requeues after a pause.
    @router.subscriber(
        runtime.topology.work_queue(intake),
        runtime.topology.exchange,
        channel=Channel(prefetch_count=64),
        decoder=undecoded,
        ack_policy=AckPolicy.MANUAL,
    )
    @with_message
    async def on_job_accepted(msg: RabbitMessage) -> None:
        """Move an accepted job into the durable queue of its priority band."""
        # Ingest publishes job.accepted; this renderer's retries and the dead-letter
        # replayers send it back here. Anyone else is refused before anything is read.
        refusal = publishers.refusal(
            msg.raw_message.user_id,
            EventType.ACCEPTED,
            also=(SERVICE,),
            replayed=REPLAYED_FROM_HEADER in (msg.headers or {}),
        )
        if refusal:
            await park(msg, intake, refusal)
            await msg.ack()
            return
        try:
            accepted = JobAccepted.model_validate_json(msg.body)
        except ValidationError as exc:
            await park(msg, intake, f"invalid job.accepted: {str(exc)[:500]}")
            await msg.ack()
            return
        # The band is the message's claim (no database round trip here): a wrong one
        # only changes which queue it waits in. The band consumer checks the message
        # against the jobs row before anything else and parks a forgery.
        try:
            await runtime.broker.publish(
                msg.body,
                queue=bands[priority_band(accepted.spec.priority)].name,
                exchange="",
                persist=True,
                mandatory=True,
                correlation_id=accepted.correlation_id,
                message_id=msg.message_id,
                content_type="application/json",
                headers=dict(msg.headers or {}),
                user_id=runtime.bus.user_id,
            )
        except Exception as exc:
            await requeue_after_pause(msg, error=exc)
            return
        await msg.ack()

    async def render_one(msg: RabbitMessage) -> None:
        # Only this service fills its band queues (any internal principal may write to
        # the default exchange, so the queue itself proves nothing).
        refusal = publishers.refusal(msg.raw_message.user_id, EventType.ACCEPTED, also=(SERVICE,))
        if refusal:
            await park(msg, intake, refusal)
            await msg.ack()
            return
        try:
            accepted = JobAccepted.model_validate_json(msg.body)
        except ValidationError as exc:
            await park(msg, intake, f"invalid job.accepted: {str(exc)[:500]}")
            await msg.ack()
            return
        headers = dict(msg.headers or {})
        attempt, base = attempt_of(headers)
        key = (accepted.job_id, attempt)
        mine = False
        try:
            # One query: the row's immutable facts (cached after the first look), the
            # job's state and whether a cancel was requested.
            view = await facts.view(accepted.job_id)
            if view.facts is None:
                # Only ingest accepts jobs: anything else is forged or foreign.
                await park(msg, intake, "no job accepted by ingest has this id")
                await msg.ack()
                return
            wrong = view.facts.disagreements(accepted)
            if wrong:
                # The message is a claim; the row is the truth. Publish nothing about
                # the job: a forged copy must not move the genuine job.
                log.warning("renderer.forged_job_accepted", attempt=attempt, differs=wrong)
                await park(
                    msg,
                    intake,
                    f"forged: job.accepted disagrees with the job row on {', '.join(wrong)}",
                )
                await msg.ack()
                return
            # From here on only the row speaks (same values, as the message agreed).
            accepted = view.facts.accepted()
            state, cancel_requested = view.state, view.cancel_requested
            # A redriven job is "failed" in the ledger until job.redriven is recorded.
            if state in FINAL_STATES and not (state == "failed" and base > 0):
                # A duplicate of a job that already ended (ingest replays after a crash).
                log.info("renderer.skip_ended_job", attempt=attempt)
                await msg.ack()
                return
            if cancel_requested or cancels.is_requested(accepted.job_id):
                await publish_cancelled(accepted, "pending")
                await msg.ack()
                return
            if key in in_progress:
                # The render in flight publishes the outcome; if it dies the broker
                # redelivers *its* message (the cleanup below runs on cancellation too).
                log.info("renderer.duplicate_delivery", attempt=attempt)
                await msg.ack()
                return
            in_progress.add(key)
            mine = True
            avoid = [b for b in str(headers.get(AVOID_HEADER, "")).split(",") if b]
            # Only a redelivered message can have a prompt on a backend already: a new
            # attempt has a new prompt id. Asking every backend costs two calls each.
            outcome = await renderer.render(accepted, attempt, avoid, redelivered=redelivered(msg))
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
                        **accepted.envelope(Producer.RENDERER),
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
                await publish_cancelled(accepted, outcome.stage)
            elif outcome.transient and attempt - base < settings.max_attempts:
                log.warning(
                    "renderer.retry",
                    attempt=attempt,
                    reason=outcome.reason,
                    backend=outcome.backend,
                )
                await retry(accepted, msg, attempt, outcome)
                RETRIES.labels(SERVICE).inc()
            else:
                if outcome.transient:
                    outcome = Failed(
                        reason=f"gave up after {attempt - base} attempts: {outcome.reason}",
                        kind=outcome.kind,
                        transient=True,
                        backend=outcome.backend,
                        details=outcome.details,
                        problems=outcome.problems,
                    )
                log.error(
                    "renderer.failed",
                    attempt=attempt,
                    reason=outcome.reason,
                    details=outcome.details,
                )
                await fail(accepted, msg, attempt, outcome)
            await msg.ack()
        except Exception as exc:
            log.exception("renderer.crashed")
            await requeue_after_pause(msg, error=exc)
        finally:
            # Also on cancellation (a broker connection lost mid-render): otherwise the
            # redelivered job would be taken for a duplicate and dropped.
            if mine:
                in_progress.discard(key)

    for band, spec in bands.items():
        router.subscriber(
            runtime.topology.work_queue(spec),
            channel=Channel(prefetch_count=prefetch),
            decoder=undecoded,
            ack_policy=AckPolicy.MANUAL,
            title=f"renderer: {spec.name}",
            description=f"Render jobs of the {band} priority band.",
        )(with_message(render_one))

    @router.subscriber(
        runtime.topology.fanout_queue(SERVICE, f"{EventType.CANCEL_REQUESTED.value}.#"),
        runtime.topology.exchange,
        channel=Channel(prefetch_count=64),
        decoder=undecoded,
        ack_policy=AckPolicy.ACK,
    )
    @with_message
    async def on_cancel_requested(msg: RabbitMessage) -> None:
        """Remember a cancel request; stop the job at once if this replica renders it."""
        refusal = publishers.refusal(msg.raw_message.user_id, EventType.CANCEL_REQUESTED)
        if refusal:
            log.warning("renderer.forged_cancel_request", reason=refusal)
            return
        try:
            event = JobCancelRequested.model_validate_json(msg.body)
        except ValidationError as exc:
            log.warning("renderer.bad_cancel_request", error=str(exc)[:300])
            return
        # The request names a job and its project: both must be what ingest recorded.
        view = await facts.view(event.job_id)
        if view.facts is None or view.facts.project != event.project:
            log.warning("renderer.forged_cancel_request", reason="not the job's project")
            return
        await cancels.request(event.job_id, event.reason)

    return router


#: The park reason header is cut at 1000 characters (shared.messaging): stay below.
PARK_REASON_LIMIT = 950


def park_reason(outcome: Failed, job_id: object) -> str:
    """``kind: reason``, then one ``- detail`` line per problem, whole lines only: what
    does not fit is counted and pointed at (``anime jobs show``), never cut mid-word."""
    text = f"{outcome.kind}: {outcome.reason}"
    for index, line in enumerate(outcome.details):
        rest = len(outcome.details) - index
        more = f"\n- ({rest} more: anime jobs show {job_id})"
        if len(text) + len(line) + 3 + len(more) > PARK_REASON_LIMIT:
            return text + more
        text += f"\n- {line}"
    return text
