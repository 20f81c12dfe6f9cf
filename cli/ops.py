"""Operations the CLI runs (kept apart from the typer wiring so tests can call them)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from sqlalchemy import select
from sqlalchemy.engine import make_url

from services.ingest.references import ReferenceStore
from services.ingest.seed import seed
from shared.broker_access import intake_exchange_name
from shared.db.migrate import upgrade_async
from shared.db.models import Asset, Job, JobState
from shared.db.session import make_engine, make_sessionmaker
from shared.events import JobSubmitted
from shared.settings import Settings

FINAL_STATES = frozenset({"completed", "failed", "cancelled", "rejected"})


async def ensure_database(settings: Settings) -> bool:
    """Create the configured database if it does not exist; True if it was created."""
    url = make_url(settings.database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", url.database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{url.database}"')
        return not exists
    finally:
        await conn.close()


async def migrate(settings: Settings) -> None:
    await ensure_database(settings)
    await upgrade_async(settings.database_url)


async def load_seed(settings: Settings) -> dict[str, Any]:
    engine = make_engine(settings.database_url, pool_size=2)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await seed(session, ReferenceStore(settings.reference_root))
    finally:
        await engine.dispose()


async def publish_submission(settings: Settings, request: dict[str, Any]) -> JobSubmitted:
    """Publish a ``job.submitted`` event the way another system would."""
    event = JobSubmitted.model_validate(
        {"job_id": uuid.uuid4(), "correlation_id": uuid.uuid4().hex, **request}
    )
    # The outside door (shared/broker_access.py): only job.submitted.# crosses from it
    # into the events exchange. Passive: a missing door is an error, not a new exchange.
    intake = RabbitExchange(
        intake_exchange_name(settings.exchange),
        type=ExchangeType.TOPIC,
        durable=True,
        declare=False,
    )
    broker = RabbitBroker(settings.amqp_url, logger=None)
    async with broker:
        await broker.connect()
        await broker.publish(
            event.model_dump_json().encode(),
            exchange=intake,
            routing_key=event.routing_key(),
            persist=True,
            correlation_id=event.correlation_id,
            message_id=str(event.event_id),
            headers=dict(event.headers()),
            content_type="application/json",
        )
    return event


async def watch_job(
    settings: Settings,
    job_id: uuid.UUID,
    on_event: Callable[[dict[str, Any]], Awaitable[None] | None],
    *,
    timeout: float = 300.0,
) -> str:
    """Follow a job on the notifier's WebSocket until it reaches a final state."""
    url = f"http://{settings.http_host}:{settings.notifier_port}/v1/ws"
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    async with (
        aiohttp.ClientSession() as client,
        client.ws_connect(url, heartbeat=20, headers=headers) as ws,
    ):
        await ws.send_json({"action": "subscribe", "job_id": str(job_id), "since": 0})
        async with asyncio.timeout(timeout):
            async for message in ws:
                frame = json.loads(message.data)
                if frame.get("type") != "event":
                    continue
                result = on_event(frame)
                if asyncio.iscoroutine(result):
                    await result
                if frame["state"] in FINAL_STATES:
                    return str(frame["state"])
    raise RuntimeError("the notifier closed the connection before the job finished")


async def job_row(settings: Settings, job_id: uuid.UUID) -> dict[str, Any]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            row = (
                await session.execute(
                    select(Job, JobState)
                    .join(JobState, JobState.job_id == Job.id, isouter=True)
                    .where(Job.id == job_id)
                )
            ).first()
            if row is None:
                return {}
            job, state = row
            return {
                "id": str(job.id),
                "request_id": job.request_id,
                "project": job.project_slug,
                "episode": job.episode,
                "scene": job.scene,
                "shot": job.shot,
                "template": job.template,
                "verdict": job.verdict,
                "state": state.state if state else None,
                "attempt": state.attempt if state else None,
                "backend": state.backend if state else None,
                "character_versions": job.character_versions,
                "created_at": job.created_at.isoformat(),
                "finished_at": state.finished_at.isoformat()
                if state and state.finished_at
                else None,
            }
    finally:
        await engine.dispose()


async def job_assets(settings: Settings, job_id: uuid.UUID) -> list[Asset]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            query = select(Asset).where(Asset.job_id == job_id).order_by(Asset.index)
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()
