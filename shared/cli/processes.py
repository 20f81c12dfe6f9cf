"""Running the services as separate OS processes: start, wait until ready, stop cleanly.

Used by ``anime up``, ``anime demo`` and the end-to-end tests, so all three start the
pipeline the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

SERVICES = ("ingest", "renderer", "archiver", "notifier")

LineSink = Callable[[str, str], None]
#: Longest output line read in one piece (a JSON traceback can be tens of KB).
PUMP_LIMIT = 1024 * 1024


@dataclasses.dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None


def service_argv(service: str) -> list[str]:
    return [sys.executable, "-m", f"services.{service}"]


def simulator_argv(
    *, port: int, root: Path, render_seconds: float, extra: list[str] | None = None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "comfysim",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--root",
        str(root),
        "--render-seconds",
        str(render_seconds),
        *(extra or []),
    ]


class Supervisor:
    """Starts processes, forwards their output line by line, and stops them for sure."""

    def __init__(self, *, sink: LineSink | None = None, log_dir: Path | None = None) -> None:
        self.sink = sink
        self.log_dir = log_dir
        self.processes: dict[str, ManagedProcess] = {}

    async def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
        timeout: float = 60.0,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        managed = self.processes.get(name) or ManagedProcess(name, argv, full_env, ready_url)
        managed.argv, managed.env, managed.ready_url = argv, full_env, ready_url
        managed.process = await asyncio.create_subprocess_exec(
            *argv,
            env=full_env,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=PUMP_LIMIT,
            start_new_session=True,  # our Ctrl-C goes to us; we stop children in order
        )
        managed.pump = asyncio.create_task(self._pump(managed))
        self.processes[name] = managed
        if ready_url:
            await self.wait_ready(name, timeout=timeout)
        return managed

    async def restart(self, name: str, *, timeout: float = 60.0) -> ManagedProcess:
        managed = self.processes[name]
        return await self.start(
            name, managed.argv, env=managed.env, ready_url=managed.ready_url, timeout=timeout
        )

    async def wait_ready(self, name: str, *, timeout: float = 60.0) -> None:
        managed = self.processes[name]
        assert managed.ready_url is not None and managed.process is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as client:
            while True:
                if managed.process.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited with {managed.process.returncode} while starting"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with client.get(
                        managed.ready_url, timeout=aiohttp.ClientTimeout(total=2)
                    ) as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready at {managed.ready_url} after {timeout}s")
                await asyncio.sleep(0.2)

    async def signal(self, name: str, sig: signal.Signals) -> None:
        managed = self.processes[name]
        if managed.process is not None and managed.process.returncode is None:
            managed.process.send_signal(sig)

    async def kill(self, name: str) -> None:
        """SIGKILL: the process gets no chance to clean up (crash tests use this)."""
        await self.signal(name, signal.SIGKILL)
        await self._reap(name)

    async def stop(self, name: str, *, timeout: float = 30.0) -> int | None:
        managed = self.processes.get(name)
        if managed is None or managed.process is None:
            return None
        if managed.process.returncode is None:
            managed.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(managed.process.wait(), timeout)
            except TimeoutError:
                managed.process.kill()
        await self._reap(name)
        return managed.process.returncode

    async def stop_all(self, *, timeout: float = 30.0) -> None:
        # Reverse start order: producers of work stop before the ones that finish it.
        for name in reversed(list(self.processes)):
            await self.stop(name, timeout=timeout)

    async def _reap(self, name: str) -> None:
        managed = self.processes[name]
        if managed.process is not None:
            await managed.process.wait()
        if managed.pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await managed.pump

    async def _pump(self, managed: ManagedProcess) -> None:
        assert managed.process is not None and managed.process.stdout is not None
        log_file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_file = (self.log_dir / f"{managed.name}.log").open("a", encoding="utf-8")
        try:
            while True:
                try:
                    raw = await managed.process.stdout.readline()
                except ValueError:
                    # A line longer than the reader's limit: take what is buffered as
                    # one (truncated) line rather than let the pump die and the child
                    # block on a full pipe.
                    raw = await managed.process.stdout.read(PUMP_LIMIT)
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if log_file is not None:
                    log_file.write(line + "\n")
                    log_file.flush()
                if self.sink is not None:
                    self.sink(managed.name, line)
        finally:
            if log_file is not None:
                log_file.close()
