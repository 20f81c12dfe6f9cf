"""The pipeline as separate OS processes, for end-to-end tests.

Each service runs as its own least-privileged broker user, provisioned for the run (the
run's queue prefix is in the user names) and deleted at the end, so these tests exercise
the real permissions (shared/broker_access.py). Where the broker account cannot
provision (no management API), the services fall back to that account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cli.processes import Supervisor, service_argv, simulator_argv
from shared.broker_access import provision_services, revoke, service_env
from shared.settings import Settings
from tests.support.pipeline import free_port

START_ORDER = ("archiver", "notifier", "renderer", "ingest")


@dataclass
class Pipeline:
    settings: Settings
    supervisor: Supervisor
    log_dir: Path
    #: ``{role: amqp_url}`` of the run's broker users; ``None``: all run as the settings' user.
    broker_urls: dict[str, str] | None = field(default=None)

    def env(self, service: str) -> dict[str, str]:
        if self.broker_urls is None:
            return self.settings.as_env()
        return service_env(self.settings, self.broker_urls, service)

    def ready_url(self, service: str) -> str:
        port = getattr(self.settings, f"{service}_port")
        return f"http://127.0.0.1:{port}/readyz"

    async def start(self, service: str) -> None:
        await self.supervisor.start(
            service,
            service_argv(service),
            env=self.env(service),
            ready_url=self.ready_url(service),
            timeout=60,
        )

    async def stop(self, service: str) -> None:
        await self.supervisor.stop(service)

    async def kill(self, service: str) -> None:
        await self.supervisor.kill(service)

    def logs(self, service: str) -> str:
        path = self.log_dir / f"{service}.log"
        return path.read_text() if path.exists() else ""


@asynccontextmanager
async def pipeline_processes(
    settings: Settings,
    tmp: Path,
    *,
    render_seconds: float = 0.3,
    simulators: int = 1,
    sim_args: list[str] | None = None,
) -> AsyncIterator[Pipeline]:
    """Simulator(s) plus the four services, each its own process; all stopped at exit."""
    supervisor = Supervisor(log_dir=tmp / "logs")
    urls = []
    broker_urls = await provision_services(settings)
    try:
        for index in range(simulators):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            urls.append(url)
            await supervisor.start(
                f"comfyui-{index}",
                simulator_argv(
                    port=port,
                    root=tmp / f"comfyui-{index}",
                    render_seconds=render_seconds,
                    extra=sim_args,
                ),
                ready_url=f"{url}/system_stats",
            )
        pipeline = Pipeline(
            settings.model_copy(update={"comfyui_urls": urls}),
            supervisor,
            tmp / "logs",
            broker_urls=broker_urls,
        )
        for service in START_ORDER:
            await pipeline.start(service)
        yield pipeline
    finally:
        await supervisor.stop_all()
        if broker_urls is not None:
            await revoke(settings, [run_user(url) for url in broker_urls.values()])


def run_user(amqp_url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(amqp_url).username or "")
