"""Talking to the real broker directly from tests (publishing raw bodies, reading DLQs)."""

from __future__ import annotations

import json
from typing import Any

import aio_pika

from shared.events import JobSubmitted
from shared.publishers import broker_user
from shared.settings import Settings


async def publish_raw(
    settings: Settings,
    body: bytes,
    *,
    routing_key: str = "job.submitted.x",
    headers: dict[str, Any] | None = None,
) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        await exchange.publish(
            aio_pika.Message(
                body,
                headers=headers or {},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                # Who publishes (RabbitMQ checks it): services refuse event types this
                # account may not publish once they run as their own users.
                user_id=broker_user(settings.amqp_url),
            ),
            routing_key=routing_key,
        )


async def publish_submission(
    settings: Settings, request: dict[str, Any], **envelope: Any
) -> JobSubmitted:
    import uuid

    event = JobSubmitted.model_validate(
        {"job_id": uuid.uuid4(), "correlation_id": uuid.uuid4().hex, **envelope, **request}
    )
    await publish_raw(
        settings,
        event.model_dump_json().encode(),
        routing_key=event.routing_key(),
        headers=event.headers(),
    )
    return event


async def queue_depth(settings: Settings, name: str) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)


async def drain(settings: Settings, name: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Take every ready message out of a queue (acking them): body and headers."""
    connection = await aio_pika.connect(settings.amqp_url)
    taken: list[tuple[bytes, dict[str, Any]]] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(fail=False)) is not None:
            taken.append((message.body, dict(message.headers)))
            await message.ack()
    return taken


def body_json(raw: bytes) -> Any:
    return json.loads(raw)
