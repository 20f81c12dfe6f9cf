"""Notifier service wiring. Run: ``python -m services.notifier`` or ``anime run notifier``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

import aio_pika
from faststream import FastStream
from faststream.rabbit import RabbitQueue

from services.notifier import SERVICE
from services.notifier.assets_api import AssetsApi
from services.notifier.config import NotifierOptions
from services.notifier.dashboard import register_dashboard
from services.notifier.handlers import LIVE_BINDING, build_router, live_queue
from services.notifier.history import LedgerReader
from services.notifier.hub import Hub
from services.notifier.live import LiveFeed
from services.notifier.sse import SseApi
from services.notifier.websocket import WebSocketApi
from shared.logging import get_logger
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings
from shared.storage import LocalStorage

log = get_logger(__name__)


@dataclasses.dataclass
class Notifier:
    """The parts of one notifier process (tests reach into ``hub``)."""

    runtime: ServiceRuntime
    hub: Hub
    options: NotifierOptions
    app: FastStream


def build(settings: Settings | None = None, options: NotifierOptions | None = None) -> Notifier:
    settings = settings or get_settings()
    options = options or NotifierOptions()
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.notifier_port)
    reader = LedgerReader(lambda: runtime.sessions())
    hub = Hub(reader, project_poll=options.project_poll_seconds)
    queue = live_queue(runtime)
    hub.live = LiveFeed(
        _queue_getter(runtime, queue.name),
        exchange=settings.exchange,
        binding_key=LIVE_BINDING,
        linger=options.live_linger_seconds,
    )
    runtime.broker.include_router(build_router(runtime, hub, queue))
    WebSocketApi(hub=hub, reader=reader, options=options).register(runtime.http)
    SseApi(hub=hub, reader=reader, options=options).register(runtime.http)
    AssetsApi(
        sessions=lambda: runtime.sessions(),
        storage=LocalStorage(settings.asset_root, read_only=True),
    ).register(runtime.http)
    # The ops dashboard at / and the admin routes (queues, dead-letter replay).
    register_dashboard(runtime)
    _keep_in_sync(runtime, hub, options.job_resync_seconds)
    app = runtime.app(
        description="Relays recorded job events to WebSocket/SSE watchers, resumable without "
        "gaps; serves the archive's read API."
    )
    return Notifier(runtime=runtime, hub=hub, options=options, app=app)


def _queue_getter(
    runtime: ServiceRuntime, name: str
) -> Callable[[], Awaitable[aio_pika.abc.AbstractQueue]]:
    """The live queue on the broker's own connection (it is exclusive to it), cached."""
    found: list[aio_pika.abc.AbstractQueue] = []

    async def get() -> aio_pika.abc.AbstractQueue:
        if not found:
            found.append(await runtime.broker.declare_queue(RabbitQueue(name, declare=False)))
        return found[0]

    return get


def create_app(settings: Settings | None = None) -> FastStream:
    return build(settings).app


def _keep_in_sync(runtime: ServiceRuntime, hub: Hub, interval: float) -> None:
    tasks: list[asyncio.Task[None]] = []

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                relayed = await hub.resync()
                if hub.live is not None:
                    await hub.live.tick(watched=hub.watching())
            except Exception:
                log.exception("notifier.resync_failed")
                continue
            if relayed:
                log.info("notifier.resynced", entries=relayed)

    async def start() -> None:
        tasks.append(asyncio.create_task(loop(), name="notifier-resync"))

    async def stop() -> None:
        await hub.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    runtime.on_ready.append(start)
    runtime.on_stop.append(stop)
