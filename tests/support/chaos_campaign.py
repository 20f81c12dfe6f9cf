"""The fault campaign's moving parts: the running pipeline on a broker and database of
its own, the load, the watchers, fault helpers, and one phase = load + fault + audit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from shared.settings import Settings
from tests.support.chaos_checks import CAMPAIGN, PhaseReport, audit, disk_leftovers
from tests.support.chaos_load import Load, Submitted
from tests.support.chaos_watch import JobsWatcher, ProjectWatcher
from tests.support.own_services import OwnPostgres, OwnRabbit
from tests.support.procs import Pipeline, pipeline_processes

SERVICES = ("ingest", "renderer", "archiver", "notifier")


@asynccontextmanager
async def robust_pipeline(
    settings: Settings, tmp: Path, *, render_seconds: float, simulators: int
) -> AsyncIterator[Pipeline]:
    """The services as OS processes on the production :class:`Supervisor`.

    This is :func:`tests.support.procs.pipeline_processes` (the same supervisor ``anime
    up`` uses, each service as its own broker user where the broker can provision).
    It used to run a test-only ``SafeSupervisor`` whose output pump survived lines over
    64 KiB; ``cli/processes.py`` now reads such lines itself.
    """
    async with pipeline_processes(
        settings, tmp, render_seconds=render_seconds, simulators=simulators
    ) as pipeline:
        yield pipeline


Fault = Callable[["Campaign", list[str]], Awaitable[None]]


@dataclasses.dataclass
class Campaign:
    rabbit: OwnRabbit
    postgres: OwnPostgres
    settings: Settings
    pipeline: Pipeline
    db: asyncpg.Pool
    load: Load
    project_watcher: ProjectWatcher
    seen_assets: dict[str, Any] = dataclasses.field(default_factory=dict)
    seen_shas: dict[str, Any] = dataclasses.field(default_factory=dict)
    jobs_watcher: JobsWatcher | None = None
    #: Permanent failures injected in the running phase (backend validation errors).
    permanent_faults: int = 0

    @property
    def sims(self) -> list[str]:
        return list(self.pipeline.settings.comfyui_urls)

    @property
    def sim_roots(self) -> list[Path]:
        """Each simulator's root folder (``simulator_argv(root=<tmp>/comfyui-<i>)``)."""
        tmp = self.pipeline.log_dir.parent
        return [tmp / f"comfyui-{index}" for index in range(len(self.sims))]

    # ------------------------------------------------------------------ faults

    async def count(self, sql: str) -> int:
        return int(await self.db.fetchval(sql))

    async def until(self, sql: str, *, timeout: float = 10.0) -> bool:
        """Wait until ``sql`` counts something (a moment worth breaking)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await self.count(sql) > 0:
                    return True
            await asyncio.sleep(0.05)
        return False

    async def kill(
        self, service: str, faults: list[str], *, pause: float = 1.0, when: str | None = None
    ) -> None:
        caught = await self.until(when) if when else True
        await self.pipeline.kill(service)
        faults.append(f"SIGKILL {service}" + ("" if caught else " (moment not caught)"))
        await asyncio.sleep(pause)
        await self.pipeline.start(service)

    async def sim(self, index: int, path: str, body: Any, faults: list[str], label: str) -> None:
        async with (
            aiohttp.ClientSession() as client,
            client.post(f"{self.sims[index]}{path}", json=body) as reply,
        ):
            assert reply.status == 200, await reply.text()
        if isinstance(body, dict) and body.get("type") == "validation_error":
            self.permanent_faults += int(body.get("count", 1))
        faults.append(f"{label} on backend {index}")

    async def services_alive(self) -> list[str]:
        dead = []
        for name in SERVICES:
            process = self.pipeline.supervisor.processes[name].process
            if process is None or process.returncode is not None:
                dead.append(f"{name} exited with {process.returncode if process else None}")
        return dead

    # ------------------------------------------------------------------ one phase

    async def phase(
        self,
        name: str,
        fault: Fault,
        *,
        rate: float = 7.0,
        seconds: float = 7.0,
        batch: int = 0,
    ) -> PhaseReport:
        started = time.monotonic()
        faults: list[str] = []
        self.permanent_faults = 0
        jobs_watcher = JobsWatcher(self.settings)
        self.jobs_watcher = jobs_watcher
        jobs_watcher.start()
        await asyncio.wait_for(jobs_watcher.connected.wait(), 30)
        load_jobs: list[Submitted] = []

        async def produce() -> None:
            if batch:
                jobs = await self.load.batch(name, batch)
                load_jobs.extend(jobs)
            else:
                # Watch the first jobs of the phase one by one, by job id.
                async def watched() -> None:
                    for job in list(self.load.jobs.values()):
                        if job.phase == name and job.job_id not in jobs_watcher.jobs:
                            await jobs_watcher.watch(job.job_id)

                task = asyncio.create_task(self.load.run(name, rate=rate, seconds=seconds))
                while not task.done():
                    await watched()
                    await asyncio.sleep(0.1)
                load_jobs.extend(await task)
                await watched()

        async with asyncio.timeout(120):
            await asyncio.gather(produce(), fault(self, faults))
        await self.load.settle_cancels()
        for service in SERVICES:  # a fault script may leave a service down on failure
            process = self.pipeline.supervisor.processes[service].process
            if process is None or process.returncode is not None:
                await self.pipeline.start(service)
        report = PhaseReport(name, faults)
        await audit(
            report,
            jobs=load_jobs,
            db=self.db,
            settings=self.settings,
            watchers=[self.project_watcher, jobs_watcher],
            seen_assets=self.seen_assets,
            seen_shas=self.seen_shas,
            sim_roots=self.sim_roots,
            permanent_faults=self.permanent_faults,
        )
        await jobs_watcher.close()
        report.problems += await self.services_alive()
        report.seconds = time.monotonic() - started
        CAMPAIGN.append(report)
        return report

    async def leftovers(self) -> list[str]:
        paths = {r["path"] for r in await self.db.fetch("SELECT path FROM assets")}
        return disk_leftovers(self.settings, paths)
