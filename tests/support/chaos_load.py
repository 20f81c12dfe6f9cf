"""Continuous load for the fault campaign: submissions that survive a broker outage.

Every job is published as ``job.submitted`` with a job id and request id of its own,
and republished until the broker confirms it (ingest is idempotent by request id, so
a publish whose confirm was lost in an outage costs nothing). Most jobs are valid;
some are invalid on purpose (→ ``rejected``) and some are cancelled through ingest's
HTTP API shortly after they are accepted (→ ``cancelled``, or ``completed`` when the
render won the race).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from typing import Any, Literal

import aio_pika
import aiohttp

from shared.events import JobSubmitted
from shared.settings import Settings

Kind = Literal["valid", "invalid", "cancel"]
PROJECT = "neon-skies"


@dataclasses.dataclass
class Submitted:
    job_id: uuid.UUID
    request_id: str
    kind: Kind
    phase: str
    attempts: int = 0


def shot(request_id: str, kind: Kind, n: int) -> dict[str, Any]:
    character = "Kai Nakamura" if kind != "invalid" else f"Nobody {request_id[-6:]}"
    return {
        "request_id": request_id,
        "project": PROJECT,
        "episode": "ep01",
        "scene": "chaos",
        "shot": f"shot-{n % 100:03d}",
        "characters": [{"name": character}],
        "prompt": f"chaos frame {request_id}",
        "template": "model-free",
        "params": {"width": 64, "height": 64, "batch_size": 1},
    }


class Load:
    """Publishes jobs at a steady rate; remembers every job it ever confirmed."""

    def __init__(self, settings: Settings, *, invalid_every: int = 29, cancel_every: int = 23):
        self.settings = settings
        self.invalid_every = invalid_every
        self.cancel_every = cancel_every
        self.jobs: dict[uuid.UUID, Submitted] = {}
        self.publish_retries = 0
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._counter = 0
        self._cancels: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Load:
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._cancels:
            task.cancel()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        if self._http is not None:
            await self._http.close()

    async def _ensure(self) -> aio_pika.abc.AbstractExchange:
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(
                self.settings.amqp_url, reconnect_interval=0.5, timeout=5
            )
            self._exchange = None
        if self._exchange is None:
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await channel.get_exchange(self.settings.exchange)
        return self._exchange

    async def publish(self, event: JobSubmitted, *, timeout: float = 90.0) -> None:
        """Publish until confirmed (a broker outage only delays it)."""
        deadline = time.monotonic() + timeout
        body = event.model_dump_json().encode()
        while True:
            try:
                exchange = await self._ensure()
                await asyncio.wait_for(
                    exchange.publish(
                        aio_pika.Message(
                            body,
                            headers=event.headers(),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            correlation_id=event.correlation_id,
                            message_id=str(event.event_id),
                            content_type="application/json",
                        ),
                        routing_key=event.routing_key(),
                    ),
                    5,
                )
                return
            except Exception:
                self.publish_retries += 1
                self._exchange = None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    def _next(self, phase: str) -> tuple[JobSubmitted, Submitted]:
        self._counter += 1
        n = self._counter
        kind: Kind = "valid"
        if n % self.invalid_every == 0:
            kind = "invalid"
        elif n % self.cancel_every == 0:
            kind = "cancel"
        request_id = f"chaos-{phase}-{n}-{uuid.uuid4().hex[:6]}"
        event = JobSubmitted.model_validate(
            {
                "job_id": uuid.uuid4(),
                "correlation_id": uuid.uuid4().hex,
                **shot(request_id, kind, n),
            }
        )
        return event, Submitted(event.job_id, request_id, kind, phase)

    async def submit(self, phase: str) -> Submitted:
        event, job = self._next(phase)
        await self.publish(event)
        self.jobs[job.job_id] = job
        if job.kind == "cancel":
            self._cancels.append(asyncio.create_task(self._cancel_soon(job)))
        return job

    async def batch(self, phase: str, count: int) -> list[Submitted]:
        """``count`` jobs published at once (many in flight)."""
        return list(await asyncio.gather(*(self.submit(phase) for _ in range(count))))

    async def run(self, phase: str, *, rate: float, seconds: float) -> list[Submitted]:
        """Open loop: a job every ``1/rate`` s for ``seconds``, whatever the faults do."""
        tasks: list[asyncio.Task[Submitted]] = []
        start = time.monotonic()
        index = 0
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.create_task(self.submit(phase)))
            index += 1
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        return list(await asyncio.gather(*tasks))

    async def _cancel_soon(self, job: Submitted) -> None:
        """Cancel through ingest once it knows the job (404 until then; 409 if too late)."""
        assert self._http is not None
        url = f"http://127.0.0.1:{self.settings.ingest_port}/v1/jobs/{job.job_id}/cancel"
        deadline = time.monotonic() + 30
        await asyncio.sleep(0.2)
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._http.post(
                    url, json={"reason": "chaos campaign"}, timeout=aiohttp.ClientTimeout(total=5)
                ) as reply:
                    job.attempts += 1
                    if reply.status in (202, 409):
                        return
            await asyncio.sleep(0.3)

    async def settle_cancels(self) -> None:
        pending = [t for t in self._cancels if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._cancels = [t for t in self._cancels if not t.done()]
