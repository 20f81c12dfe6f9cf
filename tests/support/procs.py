"""The pipeline as separate OS processes, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.cli.processes import Supervisor, service_argv, simulator_argv
from shared.settings import Settings
from tests.support.pipeline import free_port

START_ORDER = ("archiver", "notifier", "renderer", "ingest")


@dataclass
class Pipeline:
    settings: Settings
    supervisor: Supervisor
    log_dir: Path

    def ready_url(self, service: str) -> str:
        port = getattr(self.settings, f"{service}_port")
        return f"http://127.0.0.1:{port}/readyz"

    async def start(self, service: str) -> None:
        await self.supervisor.start(
            service,
            service_argv(service),
            env=self.settings.as_env(),
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
            settings.model_copy(update={"comfyui_urls": urls}), supervisor, tmp / "logs"
        )
        for service in START_ORDER:
            await pipeline.start(service)
        yield pipeline
    finally:
        await supervisor.stop_all()
