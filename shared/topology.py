"""The broker layout, named once.

One durable topic exchange carries every event. Each (service, event) pair a service
consumes gets a durable quorum *work queue* named ``<service>.<event type>``, with:

* a dead-letter queue ``<work queue>.dlq`` reached through the default exchange
  (``x-dead-letter-exchange: ""``), so a dead letter goes back to this service only;
* a delivery limit, so a message that crashes its consumer again and again (a poison
  message) is parked instead of looping forever;
* at-least-once dead-lettering (RabbitMQ >= 3.10), so dead letters are never lost;
* optional delay queues ``<work queue>.retry.<n>s`` with a message TTL that dead-letter
  back into the work queue: the broker does the waiting, no consumer sleeps.

Fan-out consumers (each notifier replica) get an exclusive, auto-delete queue of their
own. No service writes an ``x-`` argument itself: everything goes through this module.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from shared.events import EventType
from shared.settings import Settings

#: Routing-key prefix of events republished by the archiver once recorded in the ledger.
LEDGER_PREFIX = "ledger"

DLQ_SUFFIX = ".dlq"
RETRY_INFIX = ".retry."


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkQueueSpec:
    """A service's durable subscription to some events."""

    service: str
    name: str
    binding_keys: tuple[str, ...]
    delivery_limit: int
    retry_delays: tuple[float, ...] = ()
    #: Where dead letters go; by default the queue's own ``.dlq``.
    dead_letter_queue: str | None = None

    @property
    def dlq(self) -> str:
        return self.dead_letter_queue or Topology.dlq_name(self.name)


#: Renderer priority bands: (name, lowest priority, highest priority). RabbitMQ 3.10
#: quorum queues have no message priorities, so the renderer moves each accepted job
#: into the durable quorum queue of its band and always serves higher bands first.
PRIORITY_BANDS: tuple[tuple[str, int, int], ...] = (("high", 7, 9), ("normal", 3, 6), ("low", 0, 2))


def priority_band(priority: int) -> str:
    for name, low, high in PRIORITY_BANDS:
        if low <= priority <= high:
            return name
    raise ValueError(f"priority {priority} outside 0-9")


def _retry_suffix(delay_seconds: float) -> str:
    ms = round(delay_seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class Topology:
    """Names and declarations of every exchange and queue, for one pipeline instance.

    ``prefix`` and ``exchange`` come from settings so isolated pipelines (tests) can
    share one broker without seeing each other's messages.
    """

    def __init__(self, *, exchange: str = "anime.events", prefix: str = "") -> None:
        self.exchange_name = exchange
        self.prefix = prefix
        self.exchange = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(exchange=settings.exchange, prefix=settings.queue_prefix)

    # ------------------------------------------------------------------ names

    def queue_name(self, service: str, what: str) -> str:
        return f"{self.prefix}{service}.{what}"

    @staticmethod
    def dlq_name(work_queue: str) -> str:
        # Idempotent like dramatiq's xq_name: the DLQ of a DLQ is itself.
        return work_queue if work_queue.endswith(DLQ_SUFFIX) else work_queue + DLQ_SUFFIX

    @staticmethod
    def retry_name(work_queue: str, delay_seconds: float) -> str:
        return f"{work_queue}{RETRY_INFIX}{_retry_suffix(delay_seconds)}"

    # ------------------------------------------------------------------ queues

    def work(
        self,
        service: str,
        event_types: EventType | Iterable[EventType],
        *,
        name: str | None = None,
        delivery_limit: int = 5,
        retry_delays: Iterable[float] = (),
    ) -> WorkQueueSpec:
        """Describe a durable work queue bound to ``<event type>.#`` for each type."""
        types = (event_types,) if isinstance(event_types, EventType) else tuple(event_types)
        if not types:
            raise ValueError("a work queue needs at least one event type")
        queue = self.queue_name(service, name or types[0].value)
        return WorkQueueSpec(
            service=service,
            name=queue,
            binding_keys=tuple(f"{t.value}.#" for t in types),
            delivery_limit=delivery_limit,
            retry_delays=tuple(retry_delays),
        )

    def internal(
        self,
        service: str,
        name: str,
        *,
        delivery_limit: int = 5,
        dead_letter_queue: str | None = None,
    ) -> WorkQueueSpec:
        """A durable work queue a service feeds itself (no binding to the exchange)."""
        return WorkQueueSpec(
            service=service,
            name=self.queue_name(service, name),
            binding_keys=(),
            delivery_limit=delivery_limit,
            dead_letter_queue=dead_letter_queue,
        )

    def work_queue(self, spec: WorkQueueSpec) -> RabbitQueue:
        """The quorum work queue itself, bound with its first key (others: `bindings`)."""
        return RabbitQueue(
            spec.name,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=spec.binding_keys[0] if spec.binding_keys else "",
            arguments=self._dead_letter_args(spec.dlq, delivery_limit=spec.delivery_limit),
        )

    def dead_letter_queue(self, spec: WorkQueueSpec) -> RabbitQueue:
        return RabbitQueue(spec.dlq, queue_type=QueueType.QUORUM, durable=True)

    def retry_queues(self, spec: WorkQueueSpec) -> list[RabbitQueue]:
        """One delay queue per tier: no consumer; expired messages return to the work queue."""
        queues = []
        for delay in spec.retry_delays:
            args = self._dead_letter_args(spec.name)
            args["x-message-ttl"] = round(delay * 1000)
            queues.append(
                RabbitQueue(
                    self.retry_name(spec.name, delay),
                    queue_type=QueueType.QUORUM,
                    durable=True,
                    arguments=args,
                )
            )
        return queues

    def fanout_queue(
        self, service: str, binding_key: str, *, replica: str | None = None
    ) -> RabbitQueue:
        """A per-replica queue that lives as long as its connection (exclusive, auto-delete).

        Only replicas that are running need these events (they catch up from the ledger
        on reconnect), so the queue is deliberately transient; exclusive transient queues
        remain supported by RabbitMQ 4.x, unlike shared transient ones.
        """
        replica = replica or uuid.uuid4().hex[:12]
        return RabbitQueue(
            self.queue_name(service, f"fanout.{replica}"),
            queue_type=QueueType.CLASSIC,
            durable=False,
            exclusive=True,
            auto_delete=True,
            routing_key=binding_key,
        )

    @staticmethod
    def _dead_letter_args(
        target_queue: str, *, delivery_limit: int | None = None
    ) -> QuorumQueueArgs:
        args = QuorumQueueArgs(
            {
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": target_queue,
                # at-least-once needs reject-publish; without it dead letters can be lost.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
        if delivery_limit is not None:
            args["x-delivery-limit"] = delivery_limit
        return args

    # ------------------------------------------------------------------ all of it

    def pipeline_specs(self, settings: Settings) -> dict[str, WorkQueueSpec]:
        """Every durable work queue of the pipeline, by role."""
        return {
            "ingest.submitted": self.work(
                "ingest", EventType.SUBMITTED, delivery_limit=settings.delivery_limit
            ),
            "renderer.accepted": (
                intake := self.work(
                    "renderer",
                    EventType.ACCEPTED,
                    delivery_limit=settings.delivery_limit,
                    retry_delays=settings.retry_delays,
                )
            ),
            **{
                f"renderer.band.{band}": self.internal(
                    "renderer",
                    f"band.{band}",
                    delivery_limit=settings.delivery_limit,
                    dead_letter_queue=intake.dlq,
                )
                for band, _, _ in PRIORITY_BANDS
            },
            "archiver.ledger": self.work(
                "archiver",
                [t for t in EventType if t is not EventType.SUBMITTED],
                name="ledger",
                delivery_limit=settings.delivery_limit,
            ),
            "archiver.rendered": self.work(
                "archiver", EventType.RENDERED, delivery_limit=settings.delivery_limit
            ),
        }
