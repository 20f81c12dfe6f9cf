"""Archiver service wiring. Run: ``python -m services.archiver`` or ``anime run archiver``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from faststream import FastStream

from services.archiver import SERVICE
from services.archiver.archive import Archivist
from services.archiver.handlers import build_router
from services.archiver.recorder import BatchRecorder
from shared.events import LedgerEntry
from shared.logging import get_logger
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings
from shared.storage import LocalStorage

log = get_logger(__name__)


def _relay(runtime: ServiceRuntime) -> Callable[[LedgerEntry, str], Awaitable[None]]:
    async def relay(entry: LedgerEntry, correlation_id: str) -> None:
        await runtime.bus.publish_ledger(entry, correlation_id=correlation_id)

    return relay


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.archiver_port)
    storage = LocalStorage(settings.asset_root)
    archivist = Archivist(
        sessions=lambda: runtime.sessions(),
        bus=runtime.bus,
        storage=storage,
        http=lambda: runtime.client,
        allowed_backends=lambda: [u.rstrip("/") for u in settings.comfyui_urls],
        sweep=storage.sweep_partials,
    )

    sweeper: list[asyncio.Task[None]] = []

    async def sweep_leftovers() -> None:
        # Housekeeping of the whole root in the background (it may be large); the folder
        # of each job is swept again right before that job is archived.
        removed = await storage.sweep_partials()
        if removed:
            log.warning("archiver.partials_removed", count=removed)

    async def start_sweep() -> None:
        sweeper.append(asyncio.create_task(sweep_leftovers()))

    async def stop_sweep() -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    recorder = BatchRecorder(engine=lambda: runtime.engine, relay=_relay(runtime))
    roles = frozenset(settings.archiver_roles)
    unknown = roles - {"ledger", "archive"}
    if unknown or not roles:
        raise ValueError(
            f"ANIME_ARCHIVER_ROLES: expected ledger and/or archive, got {sorted(roles)}"
        )

    runtime.on_ready.append(start_sweep)
    runtime.on_stop.append(stop_sweep)
    runtime.on_stop.append(recorder.stop)
    runtime.broker.include_router(build_router(runtime, archivist, recorder, roles=roles))
    return runtime.app(
        description="Keeps the job ledger and state machine; archives rendered images with "
        "their metadata per project; publishes job.archived."
    )
