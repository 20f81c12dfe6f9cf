"""Notifier service wiring. Run: ``python -m services.notifier`` or ``anime run notifier``."""

from __future__ import annotations

from faststream import FastStream

from services.notifier import SERVICE
from services.notifier.handlers import build_router
from services.notifier.hub import Hub
from services.notifier.websocket import WebSocketApi
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.notifier_port)
    hub = Hub()
    runtime.broker.include_router(build_router(runtime, hub))
    WebSocketApi(hub=hub, sessions=lambda: runtime.sessions()).register(runtime.http)
    return runtime.app(
        description="Relays recorded job events to WebSocket/SSE watchers, resumable without "
        "gaps; serves the ops view of the queues."
    )
