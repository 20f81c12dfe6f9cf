"""Jobs and their events for archiver and notifier tests, on the real database and broker.

Jobs are inserted as ingest would have recorded them (the ``jobs`` row every event's
foreign key needs); events are published to the pipeline's exchange as the renderer
would publish them, so the archiver's ledger records them for real.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika

from shared.db.models import Job
from shared.db.session import SessionFactory
from shared.events import (
    CharacterDefinition,
    CharacterSnapshot,
    Event,
    JobAccepted,
    JobArchived,
    JobProgress,
    JobRendered,
    JobSpec,
    JobStarted,
    OutputImage,
    Producer,
    RenderParams,
    ShotLocation,
)
from shared.settings import Settings
from shared.workflows import derive_prompt_id

WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1207, "steps": 20}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "anime/job"}},
}


def kai(version: int = 3) -> CharacterSnapshot:
    return CharacterSnapshot(
        character_id=uuid.uuid5(uuid.NAMESPACE_URL, "kai"),
        name="Kai Nakamura",
        version=version,
        version_id=uuid.uuid5(uuid.NAMESPACE_URL, f"kai/{version}"),
        definition=CharacterDefinition(appearance="silver hair", trigger_words=["kainakamura"]),
    )


def spec_for(
    *,
    project: str = "neon-skies",
    episode: str | None = "ep01",
    scene: str | None = "rooftop-dusk",
    shot: str | None = "shot-012",
    characters: list[CharacterSnapshot] | None = None,
    batch_size: int = 1,
    seed: int = 1207,
) -> JobSpec:
    return JobSpec(
        request_id=f"req-{uuid.uuid4().hex[:12]}",
        location=ShotLocation(project=project, episode=episode, scene=scene, shot=shot),
        template="txt2img",
        prompt="rooftop at dusk",
        negative_prompt="blurry",
        composed_prompt="kainakamura, silver hair, rooftop at dusk",
        composed_negative="blurry",
        params=RenderParams(seed=seed, batch_size=batch_size),
        priority=5,
        characters=characters if characters is not None else [kai()],
    )


async def insert_job(sessions: SessionFactory, spec: JobSpec) -> uuid.UUID:
    """The ``jobs`` row ingest writes when it accepts ``spec``; returns the job id."""
    job_id = uuid.uuid4()
    location = spec.location
    async with sessions() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                # Unique per row, so one spec can back several jobs of a test.
                request_id=f"{spec.request_id}/{job_id.hex[:8]}",
                request_hash=hashlib.sha256(job_id.bytes).hexdigest(),
                correlation_id=f"corr-{job_id.hex[:8]}",
                project_slug=location.project,
                episode=location.episode,
                scene=location.scene,
                shot=location.shot,
                template=spec.template,
                priority=spec.priority,
                verdict="accepted",
                request={"request_id": spec.request_id, "project": location.project},
                spec=spec.model_dump(mode="json"),
                character_versions=[
                    {
                        "character_id": str(c.character_id),
                        "name": c.name,
                        "version": c.version,
                        "version_id": str(c.version_id),
                    }
                    for c in spec.characters
                ],
                character_version_ids=[c.version_id for c in spec.characters],
                submitted_via="amqp",
            )
        )
    return job_id


def envelope(job_id: uuid.UUID, project: str, producer: Producer) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "correlation_id": f"corr-{job_id.hex[:8]}",
        "producer": producer,
        "project": project,
    }


def accepted(job_id: uuid.UUID, spec: JobSpec) -> JobAccepted:
    return JobAccepted(**envelope(job_id, spec.location.project, Producer.INGEST), spec=spec)


def started(job_id: uuid.UUID, project: str, attempt: int = 1) -> JobStarted:
    return JobStarted(
        **envelope(job_id, project, Producer.RENDERER),
        backend="http://127.0.0.1:9",
        prompt_id=derive_prompt_id(job_id, attempt),
        attempt=attempt,
    )


def progress(job_id: uuid.UUID, project: str, seq: int, attempt: int = 1) -> JobProgress:
    return JobProgress(
        **envelope(job_id, project, Producer.RENDERER),
        attempt=attempt,
        seq=seq,
        percent=min(100.0, float(seq)),
    )


def archived(job_id: uuid.UUID, project: str) -> JobArchived:
    from shared.events import ArchivedAsset

    asset = ArchivedAsset(
        path=f"{project}/x/y/z/{job_id}/01.png",
        sha256="0" * 64,
        width=64,
        height=64,
        bytes=1,
        index=0,
    )
    return JobArchived(**envelope(job_id, project, Producer.ARCHIVER), assets=[asset])


def rendered(
    job_id: uuid.UUID,
    spec: JobSpec,
    backend: str,
    filenames: list[str],
    *,
    attempt: int = 1,
) -> JobRendered:
    return JobRendered(
        **envelope(job_id, spec.location.project, Producer.RENDERER),
        spec=spec,
        backend=backend,
        prompt_id=derive_prompt_id(job_id, attempt),
        attempt=attempt,
        outputs=[
            OutputImage(filename=f, subfolder="", type="output", node_id="9") for f in filenames
        ],
        workflow=WORKFLOW,
        render_seconds=1.5,
    )


class Publisher:
    """Publishes contract events to a test pipeline's exchange over one connection."""

    def __init__(self, exchange: aio_pika.abc.AbstractExchange) -> None:
        self.exchange = exchange

    async def publish(self, event: Event) -> None:
        await self.exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                headers=dict(event.headers()),
                message_id=str(event.event_id),
                correlation_id=event.correlation_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event.routing_key(),
        )

    async def publish_all(self, events: list[Event]) -> None:
        for event in events:
            await self.publish(event)


@asynccontextmanager
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        yield Publisher(exchange)


@asynccontextmanager
async def listening(settings: Settings, binding_key: str) -> AsyncIterator[asyncio.Queue[bytes]]:
    """Bodies of every message published under ``binding_key`` while inside."""
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.exchange)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=binding_key)

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                inbox.put_nowait(message.body)

        await queue.consume(take)
        yield inbox
