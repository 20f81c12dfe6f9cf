"""Archiver service wiring. Run: ``python -m services.archiver`` or ``anime run archiver``."""

from __future__ import annotations

from faststream import FastStream

from services.archiver import SERVICE
from services.archiver.archive import Archivist
from services.archiver.handlers import build_router
from services.archiver.storage import LocalStorage
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.archiver_port)
    archivist = Archivist(
        sessions=lambda: runtime.sessions(),
        bus=runtime.bus,
        storage=LocalStorage(settings.asset_root),
        http=lambda: runtime.client,
        allowed_backends=lambda: [u.rstrip("/") for u in settings.comfyui_urls],
    )
    runtime.broker.include_router(build_router(runtime, archivist))
    return runtime.app(
        description="Keeps the job ledger and state machine; archives rendered images with "
        "their metadata per project; publishes job.archived."
    )
