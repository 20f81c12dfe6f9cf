"""Running the services as separate OS processes: start, wait until ready, stop cleanly.

Used by ``anime up``, ``anime demo`` and the end-to-end tests, so all three start the
pipeline the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from faststream import FastStream

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


def port_taken(host: str, port: int) -> str | None:
    """None if ``host:port`` can be bound (as the services bind it), else what holds it.

    The holder is named (pid and command) when /proc shows it, i.e. when it runs as the
    same user; otherwise the answer is just "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"cannot be bound ({exc.strerror})"
        else:
            return None
    holder = _listener(port)
    return f"in use by {holder}" if holder else "in use"


def _listener(port: int) -> str | None:
    """The process listening on TCP ``port``, from /proc (same-user processes only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                # local address "0100007F:20D1", state 0A = LISTEN, inode in column 10
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(fd.readlink()) in targets:
                        argv = (entry / "cmdline").read_bytes().split(b"\0")
                        command = " ".join(a.decode(errors="replace") for a in argv if a)
                        return f"pid {entry.name} ({command[:120]})"
    return None


async def healthz_pid(url: str) -> int | None:
    """The process id a service's ``/healthz`` reports (None if it answers none)."""
    async with (
        aiohttp.ClientSession() as client,
        client.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        body = await response.json(content_type=None)
    pid = body.get("pid") if isinstance(body, dict) else None
    return pid if isinstance(pid, int) else None


async def serve_app(app: FastStream) -> int:
    """Run a service's FastStream app in this process until SIGINT or SIGTERM; return 0.

    Instead of ``FastStream.run``: the signal handlers go in before anything else, and
    a signal that arrives while the broker is still starting waits for the start to
    finish before stopping it, rather than stopping a broker halfway through starting
    (which, under load, could fail the shutdown and exit 1). A signal while the
    service still waits for its dependencies abandons the start at once.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stop = asyncio.Event()
    entering = True

    def on_signal() -> None:
        if entering and not stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with app.lifespan_context():
            entering = False
            await app.start()
            await stop.wait()
            await app.stop()
    except asyncio.CancelledError:
        if not stop.is_set() or main is None:
            raise
        main.uncancel()  # the cancel was ours: a stop requested during start-up
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


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

    async def first_exit(self) -> tuple[str, int]:
        """Wait until one of the started processes exits; its name and exit code."""
        waits = {
            asyncio.ensure_future(m.process.wait()): name
            for name, m in self.processes.items()
            if m.process is not None
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        first = next(iter(done))
        return waits[first], first.result()

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
