"""Forged events about real jobs: builders, an attacker's web server, broker probes.

A forgery here copies a genuine job (its id, its accepted spec) and changes what an
attacker would: the project, the spec, a reference URL or backend pointing at the
attacker's server, a prompt id that is not the job's, a ``seq`` far ahead. Every forged
event carries a ``correlation_id`` starting with ``forged-`` and the header
``x-forged-id``, so its traces (ledger rows, dead letters) can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq.exceptions
from aiohttp import web

from shared.events import (
    ArchivedAsset,
    Event,
    EventType,
    JobAccepted,
    JobArchived,
    JobCancelled,
    JobCancelRequested,
    JobFailed,
    JobProgress,
    JobRedriven,
    JobRejected,
    JobRendered,
    JobRetrying,
    JobSpec,
    JobStarted,
    LedgerEntry,
    OutputImage,
    Problem,
    Producer,
    ReferenceImage,
)
from shared.workflows import derive_prompt_id
from tests.support.pipeline import free_port

#: Every event type a service publishes (job.submitted is the outside door).
DOWNSTREAM = tuple(t for t in EventType if t is not EventType.SUBMITTED)
FORGED_HEADER = "x-forged-id"
ELSEWHERE = "forged-elsewhere"


class Attacker:
    """A web server on loopback that records every request: it must never see one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")

    async def __aenter__(self) -> Attacker:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclasses.dataclass
class Forged:
    """One forged message: where it goes, what it is, what should refuse it."""

    fid: str
    routing_key: str
    body: bytes
    event_type: str
    job_id: uuid.UUID
    angle: str
    #: Dead-letter queues (keys of ``dead_letter_queues``) that must park it as ``forged:``.
    parked_by: tuple[str, ...] = ()
    #: A ``ledger.*`` relay: the notifier must drop it (and count it).
    relay: bool = False

    def headers(self) -> dict[str, Any]:
        return {
            FORGED_HEADER: self.fid,
            "job_id": str(self.job_id),
            "event_type": self.event_type,
            "project": self.routing_key.rsplit(".", 1)[-1],
        }


class Forger:
    """Builds forged events of every type about one genuine job."""

    def __init__(self, genuine: JobAccepted, attacker_url: str) -> None:
        self.genuine = genuine
        self.attacker = attacker_url
        self._n = 0

    def _fid(self) -> str:
        self._n += 1
        return f"forged-{str(self.genuine.job_id)[:8]}-{self._n}"

    def spec(self, *, project: str | None = None) -> JobSpec:
        """The genuine spec, with another prompt and a reference on the attacker's server."""
        data = self.genuine.spec.model_dump(mode="json")
        data["prompt"] = data["composed_prompt"] = "forged: render this instead"
        if project is not None:
            data["location"]["project"] = project
        for character in data["characters"]:
            character["references"] = [
                ReferenceImage.model_validate(
                    {
                        "kind": "face",
                        "sha256": "0" * 64,
                        "url": f"{self.attacker}/steal/{self.genuine.job_id}.png",
                    }
                ).model_dump(mode="json")
            ]
        return JobSpec.model_validate(data)

    def event(
        self,
        event_type: EventType,
        *,
        project: str,
        backend: str | None = None,
        attempt: int = 1,
        event_id: uuid.UUID | None = None,
        **extra: Any,
    ) -> tuple[str, Event]:
        """A forged ``event_type`` about the genuine job, claiming ``project``."""
        fid = self._fid()
        job = self.genuine.job_id
        envelope: dict[str, Any] = {
            "job_id": job,
            "correlation_id": fid,
            "project": project,
            **({"event_id": event_id} if event_id else {}),
        }
        backend = backend or self.attacker
        spec = extra.pop("spec", None) or self.spec(
            project=project if project != self.genuine.project else None
        )
        builders: dict[EventType, Any] = {
            EventType.ACCEPTED: lambda: JobAccepted(
                **envelope, producer=Producer.INGEST, spec=spec
            ),
            EventType.REJECTED: lambda: JobRejected(
                **envelope,
                producer=Producer.INGEST,
                request_id=self.genuine.spec.request_id,
                problems=[Problem(field="prompt", message="forged rejection")],
            ),
            EventType.STARTED: lambda: JobStarted(
                **envelope,
                producer=Producer.RENDERER,
                backend=backend,
                prompt_id=derive_prompt_id(job, attempt),
                attempt=attempt,
            ),
            EventType.PROGRESS: lambda: JobProgress(
                **envelope, producer=Producer.RENDERER, attempt=attempt, seq=1, percent=99.0
            ),
            EventType.RENDERED: lambda: JobRendered(
                **envelope,
                producer=Producer.RENDERER,
                spec=spec,
                backend=backend,
                prompt_id=extra.pop("prompt_id", derive_prompt_id(job, attempt)),
                attempt=attempt,
                outputs=extra.pop(
                    "outputs",
                    [OutputImage(filename="img_00001_.png", subfolder=f"jobs/{job}/a{attempt}")],
                ),
                workflow={"forged": {"class_type": "SaveImage", "inputs": {}}},
                render_seconds=1.0,
            ),
            EventType.RETRYING: lambda: JobRetrying(
                **envelope,
                producer=Producer.RENDERER,
                attempt=attempt,
                next_attempt=attempt + 1,
                delay_seconds=0.0,
                reason="forged retry",
                backend=backend,
            ),
            EventType.FAILED: lambda: JobFailed(
                **envelope,
                producer=Producer.RENDERER,
                reason="forged failure",
                error_kind="validation",
                attempt=attempt,
            ),
            EventType.ARCHIVED: lambda: JobArchived(
                **envelope,
                producer=Producer.ARCHIVER,
                assets=[
                    ArchivedAsset(
                        path=f"{project}/forged/{job}/01.png",
                        sha256="f" * 64,
                        width=64,
                        height=64,
                        bytes=8,
                        index=0,
                    )
                ],
            ),
            EventType.CANCEL_REQUESTED: lambda: JobCancelRequested(
                **envelope, producer=Producer.INGEST, reason="forged cancel"
            ),
            EventType.CANCELLED: lambda: JobCancelled(
                **envelope, producer=Producer.RENDERER, reason="forged cancel"
            ),
            EventType.REDRIVEN: lambda: JobRedriven(
                **envelope, producer=Producer.CLI, first_attempt=attempt + 4
            ),
        }
        return fid, builders[event_type]()

    def relay(
        self, event: Event, *, seq: int, state: str, project: str | None = None
    ) -> LedgerEntry:
        """A ``ledger.*`` copy of ``event`` as if the archiver had recorded it at ``seq``."""
        return LedgerEntry(
            seq=seq,
            job_id=event.job_id,
            project=project or event.project,
            event_type=event.event_type,
            recorded_at=datetime.now(UTC),
            state=state,
            event=event.model_dump(mode="json"),
        )


async def publish_all(amqp_url: str, exchange: str, messages: Iterable[Forged]) -> None:
    """Publish with confirms as ``amqp_url``'s user (the tests' administrator)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        await asyncio.gather(
            *(
                target.publish(
                    aio_pika.Message(
                        m.body,
                        headers=m.headers(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                        correlation_id=m.fid,
                    ),
                    routing_key=m.routing_key,
                )
                for m in messages
            )
        )


async def refused(amqp_url: str, exchange: str, routing_key: str, body: bytes) -> str | None:
    """Publish once on a fresh channel; the broker's refusal (None: it was accepted).

    A publish the user has no right to is answered with ``channel.close`` 403
    ACCESS_REFUSED: the publish (or its confirm) fails and the channel is closed.
    """
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            target = (
                channel.default_exchange
                if exchange == ""
                else await channel.get_exchange(exchange, ensure=False)
            )
            await asyncio.wait_for(
                target.publish(aio_pika.Message(body), routing_key=routing_key), 10
            )
        except aiormq.exceptions.ChannelAccessRefused as exc:
            assert channel.is_closed, "ACCESS_REFUSED left the channel open"
            return f"ACCESS_REFUSED: {exc}"
        with contextlib.suppress(Exception):
            await channel.close()
        return None


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples matching ``labels`` in ``/metrics`` text."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        match = re.match(rf"{re.escape(name)}(?:_total)?(\{{[^}}]*\}})?\s+(\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total
