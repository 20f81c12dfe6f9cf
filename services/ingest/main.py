"""Ingest service wiring. Run: ``python -m services.ingest`` or ``anime run ingest``."""

from __future__ import annotations

from faststream import FastStream
from shared.workflows import TemplateRegistry

from services.ingest import SERVICE
from services.ingest.handlers import build_router
from services.ingest.jobs_api import JobsApi
from services.ingest.references import ReferencesApi, ReferenceStore
from services.ingest.submission import SubmissionDesk
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.ingest_port)
    templates = TemplateRegistry.load(settings.templates_dir)
    desk = SubmissionDesk(
        sessions=lambda: runtime.sessions(),
        bus=runtime.bus,
        template_names=lambda: set(templates.names()),
        reference_url=lambda sha: f"{settings.public_ingest_url}/v1/references/{sha}",
    )
    runtime.broker.include_router(build_router(runtime, desk))
    JobsApi(desk=desk, sessions=lambda: runtime.sessions()).register(runtime.http)
    ReferencesApi(ReferenceStore(settings.reference_root)).register(runtime.http)
    return runtime.app(
        description="Validates shot requests, attaches characters from PostgreSQL, "
        "publishes job.accepted or job.rejected."
    )
