"""Watching the events ingest publishes: a temporary queue bound to some routing keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aio_pika

from shared.settings import Settings
from tests.support.wait import eventually

Message = dict[str, Any]


class Captured:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def of_type(self, event_type: str) -> list[Message]:
        return [m for m in self.messages if m.get("event_type") == event_type]

    def for_job(self, job_id: object) -> list[Message]:
        return [m for m in self.messages if m.get("job_id") == str(job_id)]

    async def wait_for(
        self, predicate: Callable[[Message], bool], *, what: str = "event", timeout: float = 30.0
    ) -> Message:
        async def probe() -> Message | None:
            return next((m for m in self.messages if predicate(m)), None)

        return await eventually(probe, what=what, timeout=timeout)

    async def event_for(self, job_id: object, event_type: str) -> Message:
        return await self.wait_for(
            lambda m: m.get("job_id") == str(job_id) and m.get("event_type") == event_type,
            what=f"{event_type} for {job_id}",
        )

    async def settle(self, pause: float = 0.3) -> None:
        """Let in-flight deliveries arrive (for asserting that something did *not* happen)."""
        await asyncio.sleep(pause)


@asynccontextmanager
async def capture(settings: Settings, *binding_keys: str) -> AsyncIterator[Captured]:
    """Collect every event published under ``binding_keys`` while the block runs.

    Start it after the service declared the exchange (inside ``running(...)``).
    """
    captured = Captured()
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.exchange)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in binding_keys or ("job.#",):
            await queue.bind(exchange, routing_key=key)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                captured.messages.append(json.loads(message.body))

        await queue.consume(on_message)
        yield captured
    finally:
        await connection.close()
