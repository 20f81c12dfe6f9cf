"""Ingest service wiring. Run: ``python -m services.ingest`` or ``anime run ingest``."""

from __future__ import annotations

from faststream import FastStream

from services.ingest import SERVICE
from services.ingest.characters_api import CharactersApi
from services.ingest.handlers import build_router
from services.ingest.http_errors import json_errors
from services.ingest.jobs_api import JobsApi
from services.ingest.openapi import OpenApi
from services.ingest.projects_api import ProjectsApi
from services.ingest.references import ReferencesApi, ReferenceStore
from services.ingest.submission import SubmissionDesk
from shared.runtime import ServiceRuntime
from shared.settings import Settings, get_settings
from shared.workflows import TemplateRegistry


def create_app(settings: Settings | None = None) -> FastStream:
    return build_runtime(settings or get_settings()).app(
        description="Validates shot requests, attaches characters from PostgreSQL, "
        "publishes job.accepted or job.rejected; manages projects and characters."
    )


def build_runtime(settings: Settings) -> ServiceRuntime:
    """The runtime with ingest's AMQP handler and HTTP routes; nothing connects yet."""
    runtime = ServiceRuntime(SERVICE, settings, http_port=settings.ingest_port)
    templates = TemplateRegistry.load(settings.templates_dir)
    store = ReferenceStore(settings.reference_root)

    def reference_url(sha: str) -> str:
        return f"{settings.public_ingest_url}/v1/references/{sha}"

    # The registry is loaded once per process: its names never change while it runs.
    template_names = frozenset(templates.names())
    desk = SubmissionDesk(
        sessions=lambda: runtime.sessions(),
        bus=runtime.bus,
        template_names=lambda: template_names,
        reference_url=reference_url,
    )
    runtime.broker.include_router(build_router(runtime, desk))
    # Inside the runtime's auth middleware: 401/403 come first, then JSON errors.
    runtime.http.middlewares.append(json_errors)
    sessions = lambda: runtime.sessions()  # noqa: E731 - late-bound: the engine starts later
    ProjectsApi(sessions=sessions).register(runtime.http)
    CharactersApi(sessions=sessions, store=store, reference_url=reference_url).register(
        runtime.http
    )
    JobsApi(desk=desk, sessions=sessions, bus=runtime.bus).register(runtime.http)
    ReferencesApi(store).register(runtime.http)
    OpenApi().register(runtime.http)
    return runtime
