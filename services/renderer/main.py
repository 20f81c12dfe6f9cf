"""Renderer service wiring. Run: ``python -m services.renderer`` or ``anime run renderer``."""

from __future__ import annotations

from faststream import FastStream

from services.renderer import SERVICE
from services.renderer.cancellation import CancelRegistry
from services.renderer.handlers import build_router
from services.renderer.pool import BackendPool
from services.renderer.rendering import RenderService
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings
from shared.workflows import TemplateRegistry


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.renderer_port)
    pool = BackendPool(
        settings.comfyui_urls,
        session=lambda: runtime.client,
        slots=settings.backend_slots,
        probe_interval=settings.backend_probe_interval,
        unreachable_grace=settings.backend_unreachable_grace,
        transient_exception_types=settings.transient_exception_types,
    )
    cancels = CancelRegistry()
    renderer = RenderService(
        pool=pool,
        cancels=cancels,
        templates=TemplateRegistry.load(settings.templates_dir),
        bus=runtime.bus,
        http=lambda: runtime.client,
        ingest_url=settings.public_ingest_url,
    )

    async def some_backend() -> str | None:
        return None if pool.healthy() else "no ComfyUI backend answers"

    runtime.on_ready.append(pool.start)
    runtime.on_stop.append(pool.close)
    runtime.readiness_checks["backends"] = some_backend
    # Per band: enough deliveries waiting locally that a freed backend slot is refilled
    # at once by the most urgent job, few enough that little sits unacked.
    prefetch = len(settings.comfyui_urls) * settings.backend_slots + 2
    runtime.broker.include_router(build_router(runtime, renderer, cancels, prefetch=prefetch))
    return runtime.app(
        description="Renders accepted jobs on ComfyUI backends with retry, backoff and "
        "dead-lettering; publishes job.started/progress/rendered/retrying/failed/cancelled."
    )
