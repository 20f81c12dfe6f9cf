"""RabbitMQ plumbing every service shares: broker factory, log context, event publishing.

Publishing rules (see docs/architecture.md): every event is persistent, published with
publisher confirms, ``mandatory`` (an unroutable event raises instead of vanishing),
with ``job_id``/``event_type`` headers and the job's ``correlation_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import aio_pika
import aiormq
import structlog
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue

from shared.events import Event, LedgerEntry
from shared.logging import get_logger
from shared.publishers import broker_user
from shared.readiness import wait_until_ready
from shared.settings import Settings
from shared.topology import Topology, WorkQueueSpec

log = get_logger(__name__)


#: The message being handled, for handlers wrapped by :func:`with_message`.
_MESSAGE: ContextVar[RabbitMessage] = ContextVar("anime_message")


class BindLogContext(BaseMiddleware):
    """Bind ``job_id``, ``correlation_id`` and ``event_type`` to every log line of a message.

    Also makes the message itself available to :func:`with_message` handlers.
    """

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        headers = msg.headers or {}
        token = _MESSAGE.set(msg)  # type: ignore[arg-type]
        try:
            with structlog.contextvars.bound_contextvars(
                correlation_id=msg.correlation_id,
                message_id=msg.message_id,
                job_id=headers.get("job_id"),
                event_type=headers.get("event_type"),
            ):
                return await call_next(msg)
        finally:
            _MESSAGE.reset(token)


def with_message(
    handler: Callable[[RabbitMessage], Awaitable[None]],
) -> Callable[[], Awaitable[None]]:
    """``handler(msg)`` as a subscriber FastStream calls without arguments.

    A ``msg: RabbitMessage`` parameter is injected by FastStream through a custom field,
    which costs an anyio task group and a worker-thread call (fast_depends runs the
    field's synchronous resolver in a thread pool) for every message. Taking the message
    from the middleware's context variable costs a lookup.
    """

    async def subscriber() -> None:
        await handler(_MESSAGE.get())

    # Not functools.wraps: its __wrapped__ would make FastStream see ``msg`` again.
    subscriber.__name__ = handler.__name__
    subscriber.__qualname__ = handler.__qualname__
    subscriber.__doc__ = handler.__doc__
    return subscriber


def make_broker(settings: Settings, *, service: str) -> RabbitBroker:
    """A broker whose publishes are confirmed and whose unroutable publishes raise."""
    return RabbitBroker(
        settings.amqp_url,
        default_channel=Channel(on_return_raises=True),
        middlewares=[BindLogContext],
        logger=get_logger(f"faststream.{service}"),
        graceful_timeout=30.0,
    )


class EventBus:
    """Publishes contract events to the topic exchange, durably.

    Ledger relays go out on a channel of their own without publisher confirms when
    ``amqp_url`` is given: a relay is a live copy whose loss costs nothing (watchers read
    the ledger), so waiting for the broker to confirm each one would only spend time on
    both sides.
    """

    def __init__(
        self, broker: RabbitBroker, topology: Topology, *, amqp_url: str | None = None
    ) -> None:
        self.broker = broker
        self.topology = topology
        #: Set as every message's ``user_id``: RabbitMQ checks it is the connection's
        #: user, so consumers know who published (shared/publishers.py).
        self.user_id = broker_user(amqp_url) if amqp_url else None
        self._relay_url = amqp_url
        self._relay_connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._relay_exchange: aio_pika.abc.AbstractExchange | None = None
        self._relay_lock = asyncio.Lock()

    async def publish(self, event: Event, *, headers: dict[str, Any] | None = None) -> None:
        """Publish ``event``; returns once the broker confirmed it (raises if unroutable)."""
        from shared.metrics import record_publish_error, record_published

        try:
            await self.broker.publish(
                event.model_dump_json().encode(),
                exchange=self.topology.exchange,
                routing_key=event.routing_key(),
                persist=True,
                mandatory=True,
                correlation_id=event.correlation_id,
                message_id=str(event.event_id),
                content_type="application/json",
                headers={**event.headers(), **(headers or {})},
                user_id=self.user_id,
            )
        except Exception:
            record_publish_error(event.event_type.value, event.producer.value)
            raise
        record_published(event.event_type.value, event.producer.value)

    async def publish_ledger(self, entry: LedgerEntry, *, correlation_id: str) -> None:
        """Relay a recorded event to live watchers.

        Not mandatory, not persistent, not confirmed: when no notifier runs nobody needs
        it, and watchers catch up from the ledger table, so a missing live copy is never
        a loss. It raises when the relay connection is down (the caller requeues, and the
        redelivered event is relayed again).
        """
        body = entry.model_dump_json().encode()
        headers: dict[str, Any] = {
            "job_id": str(entry.job_id),
            "event_type": entry.event_type.value,
            "seq": entry.seq,
        }
        if self._relay_url is None:
            await self.broker.publish(
                body,
                exchange=self.topology.exchange,
                routing_key=entry.routing_key(),
                persist=False,
                mandatory=False,
                correlation_id=correlation_id,
                content_type="application/json",
                headers=headers,
            )
            return
        exchange = await self._relays()
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                correlation_id=correlation_id,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                user_id=self.user_id,
            ),
            routing_key=entry.routing_key(),
            mandatory=False,
        )

    async def _relays(self) -> aio_pika.abc.AbstractExchange:
        if self._relay_exchange is not None:
            return self._relay_exchange
        async with self._relay_lock:
            if self._relay_exchange is None:
                assert self._relay_url is not None
                self._relay_connection = await aio_pika.connect_robust(self._relay_url)
                channel = await self._relay_connection.channel(publisher_confirms=False)
                self._relay_exchange = await channel.get_exchange(
                    self.topology.exchange_name, ensure=False
                )
        return self._relay_exchange

    async def close(self) -> None:
        """Close the relay connection (the broker's own connection is the broker's)."""
        connection, self._relay_connection = self._relay_connection, None
        self._relay_exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


async def declare_pipeline(
    amqp_url: str,
    topology: Topology,
    specs: Iterable[WorkQueueSpec],
    *,
    exchanges: bool = True,
) -> None:
    """Declare durable queues with their bindings; idempotent.

    With ``exchanges`` (an account that may configure them: provisioning, local
    development as guest) the events exchange, the outside door's intake exchange and
    the binding between them are declared too. Without (a service running as its own
    least-privileged user) the events exchange is only checked, passively: a passive
    declare needs no permission (verified on 3.10.8), an active one of an existing
    exchange needs ``configure``.

    Services run this at start-up, so an event is never published before the queues
    that must receive it exist.

    It uses a short-lived connection of its own on purpose: declaring through the
    broker would cache each queue on the broker's default channel, and a subscriber
    then consumes through that cached queue without its own prefetch limit.
    """
    from shared.broker_access import INTAKE_BINDING_KEY, intake_exchange_name

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        name = topology.exchange.name
        if exchanges:
            exchange = await channel.declare_exchange(
                name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            intake = await channel.declare_exchange(
                intake_exchange_name(name), aio_pika.ExchangeType.TOPIC, durable=True
            )
            await exchange.bind(intake, routing_key=INTAKE_BINDING_KEY)
        else:
            try:
                exchange = await channel.declare_exchange(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise RuntimeError(
                    f"exchange {name!r} does not exist: provision the broker first "
                    "(`anime broker provision`, see docs/deploy.md)"
                ) from None
        for spec in specs:
            for queue in (topology.dead_letter_queue(spec), *topology.retry_queues(spec)):
                await _declare(channel, queue)
            work = await _declare(channel, topology.work_queue(spec))
            for key in spec.binding_keys:
                await work.bind(exchange, routing_key=key)


async def _declare(
    channel: aio_pika.abc.AbstractChannel, queue: RabbitQueue
) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(
        queue.name,
        durable=queue.durable,
        exclusive=queue.exclusive,
        auto_delete=queue.auto_delete,
        arguments=dict(queue.arguments or {}),
    )


async def wait_for_broker(broker: RabbitBroker, *, timeout: float, service: str) -> None:
    """Connect, retrying until RabbitMQ answers, up to ``timeout`` seconds."""
    await wait_until_ready(broker.connect, what="broker", service=service, timeout=timeout)


async def undecoded(msg: StreamMessage[Any]) -> Any:
    """A FastStream decoder that leaves the body as bytes; handlers parse it themselves.

    FastStream's own decoding runs before the handler and raises on some bodies
    (``application/json`` that is not JSON, integers over 4300 digits, deep nesting),
    leaving the message unacknowledged for ever. Every subscriber of ours takes the raw
    message and judges the body itself, parking what cannot be parsed.
    """
    return msg.body


def parse_json_body(body: bytes, *, max_bytes: int) -> tuple[Any, str | None]:
    """Decode a message body as strict JSON: returns ``(value, None)`` or ``(None, reason)``.

    Strict means UTF-8 only, no ``NaN``/``Infinity`` (PostgreSQL's jsonb refuses them),
    and a size cap checked before any parsing.
    """
    if len(body) > max_bytes:
        return None, f"body too large: {len(body)} bytes > {max_bytes}"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"body is not UTF-8: {exc.reason} at byte {exc.start}"
    try:
        return json.loads(text, parse_constant=_refuse_constant), None
    except (ValueError, RecursionError) as exc:
        return None, f"body is not JSON: {str(exc)[:200]}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def park_message(
    broker: RabbitBroker,
    spec: WorkQueueSpec,
    *,
    body: bytes,
    headers: dict[str, Any] | None,
    correlation_id: str | None,
    reason: str,
    service: str,
) -> None:
    """Put a message in ``spec``'s dead-letter queue with the reason in its headers.

    Used for messages no retry can fix (an unparseable body). The caller acks the
    original only after this publish is confirmed, so the message is never lost.
    """
    from shared.metrics import DEAD_LETTERED

    await broker.publish(
        body,
        queue=spec.dlq,
        exchange="",
        persist=True,
        mandatory=True,
        correlation_id=correlation_id,
        headers={
            **(headers or {}),
            "x-park-reason": reason[:1000],
            "x-parked-by": service,
            "x-original-queue": spec.name,
        },
    )
    DEAD_LETTERED.labels(service, reason.split(":", 1)[0]).inc()
    log.warning("message.parked", queue=spec.name, reason=reason)


async def park_delivery(
    broker: RabbitBroker,
    spec: WorkQueueSpec,
    msg: RabbitMessage,
    *,
    reason: str,
    service: str,
    correlation_id: str | None = None,
    extra_headers: dict[str, Any] | None = None,
) -> None:
    """:func:`park_message` for a delivery: its body and headers, plus ``extra_headers``."""
    await park_message(
        broker,
        spec,
        body=msg.body,
        headers={**dict(msg.headers or {}), **(extra_headers or {})},
        correlation_id=correlation_id or msg.correlation_id,
        reason=reason,
        service=service,
    )


async def requeue_after_pause(msg: RabbitMessage, *, error: BaseException | None = None) -> None:
    """Give a message back for a later try, after a pause that grows with each delivery.

    For failures of *our* infrastructure (database or backend briefly down): the message
    itself is fine. The pause keeps an outage from becoming a hot loop, and the work
    queue's delivery limit parks the message if it never succeeds.
    """
    deliveries = int((msg.headers or {}).get("x-delivery-count", 0) or 0)
    pause = min(0.5 * 2.0**deliveries, 30.0)
    log.warning(
        "message.requeue",
        deliveries=deliveries,
        retry_in=pause,
        error=repr(error) if error else None,
    )
    await asyncio.sleep(pause)
    await msg.nack(requeue=True)
