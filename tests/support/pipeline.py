"""Isolated pipelines on a shared broker: unique exchange and queue prefix per test."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aio_pika
from faststream import FastStream, TestApp

from shared.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def isolated_settings(
    *,
    amqp_url: str,
    database_url: str,
    tmp: Path,
    comfyui_urls: list[str] | None = None,
    **overrides: object,
) -> Settings:
    run = uuid.uuid4().hex[:8]
    ingest_port = free_port()
    values: dict[str, object] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "exchange": f"test.{run}.events",
        "queue_prefix": f"test.{run}.",
        "comfyui_urls": comfyui_urls or ["http://127.0.0.1:9"],
        "asset_root": tmp / "assets",
        "reference_root": tmp / "references",
        "ingest_port": ingest_port,
        "renderer_port": free_port(),
        "archiver_port": free_port(),
        "notifier_port": free_port(),
        "public_ingest_url": f"http://127.0.0.1:{ingest_port}",
        "startup_timeout_seconds": 20.0,
        "retry_delays": [0.2, 0.4, 0.8],
        "log_level": "WARNING",
        "require_api_keys": False,
        "backend_unreachable_grace": 3.0,
        **overrides,
    }
    return Settings.model_validate(values)


@asynccontextmanager
async def running(app: FastStream) -> AsyncIterator[FastStream]:
    """Run a service app in this process against the real broker (lifespan included)."""
    async with TestApp(app):
        yield app


async def delete_topology(amqp_url: str, settings: Settings) -> None:
    """Remove every queue and the exchange a test pipeline declared."""
    connection = await aio_pika.connect(amqp_url)
    try:
        from shared.topology import Topology

        topology = Topology.from_settings(settings)
        names: list[str] = []
        for spec in topology.pipeline_specs(settings).values():
            names += [spec.name, spec.dlq]
            names += [topology.retry_name(spec.name, d) for d in spec.retry_delays]
        for name in names:
            channel = await connection.channel()
            with suppress(Exception):
                await channel.queue_delete(name)
        from shared.broker_access import intake_exchange_name

        for exchange in (intake_exchange_name(settings.exchange), settings.exchange):
            channel = await connection.channel()
            with suppress(Exception):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()
