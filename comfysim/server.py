"""The :class:`Simulator` (one ComfyUI-compatible instance) and :func:`run_simulator`.

Routes live in :mod:`comfysim.routes` (ComfyUI API) and :mod:`comfysim.control`
(``/_sim/*``); the worker in :mod:`comfysim.engine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from comfysim.config import PREVIEW_METHODS, SimConfig, SimStats
from comfysim.engine import Engine
from comfysim.events import Hub
from comfysim.faults import IMMEDIATE_FAULTS, FaultBook, FaultSpec
from comfysim.nodes import Dirs
from comfysim.objectinfo import ObjectInfo
from comfysim.routes import create_app

__all__ = ["Simulator", "run_simulator"]

log = logging.getLogger("comfysim.server")


class Simulator:
    """One ComfyUI-compatible server instance (start with :meth:`start`)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        root = Path(os.path.normpath(Path(config.root).absolute()))
        self.root = root
        self.dirs = Dirs(root / "input", root / "output", root / "temp")
        self.object_info = ObjectInfo(self.dirs.input_dir, config.models, config.loras)
        self.hub = Hub()
        self.hub.global_delay = config.ws_delay_seconds
        self._startup_refuse = max(
            (f.seconds or 1.0 for f in config.faults if f.type in IMMEDIATE_FAULTS), default=0.0
        )
        self.faults = FaultBook(
            [f for f in config.faults if f.type not in IMMEDIATE_FAULTS], seed=config.fault_seed
        )
        self.stats = SimStats()
        self.engine = Engine(self)
        self.port: int = config.port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._down_until = 0.0
        self._relisten: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_lock = asyncio.Lock()

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. ``http://127.0.0.1:8190``."""
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Websocket URL without query, e.g. ``ws://127.0.0.1:8190/ws``."""
        return self.url.replace("http://", "ws://", 1) + "/ws"

    # ------------------------------------------------------------------ lifecycle

    def _prepare_dirs(self) -> None:
        for path in (self.dirs.input_dir, self.dirs.output_dir):
            path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.dirs.temp_dir, ignore_errors=True)
        self.dirs.temp_dir.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        """Create the folders, bind the port and start the worker."""
        self._prepare_dirs()
        app = create_app(self)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen(self.config.port)
        self.hub.start()
        self.engine.start()
        log.info("comfysim listening on %s (root %s)", self.url, self.root)
        if self._startup_refuse > 0:
            await self.refuse_connections(self._startup_refuse)

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.config.host, port, reuse_address=True)
        await site.start()
        self._site = site
        server = site._server
        sockets = getattr(server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop everything and release the port."""
        for task in [*self._tasks, *([self._relisten] if self._relisten else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._relisten] if self._relisten else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.engine.stop()
        await self.hub.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._site = None

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def wrapper() -> None:
            await coro

        task = asyncio.create_task(wrapper())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request_restart(self, down_seconds: float) -> None:
        """Schedule a restart (used by the ``restart`` fault from inside a run)."""
        self._spawn(self.restart(down_seconds))

    def _cut_connections(self, keep: web.BaseRequest | None) -> None:
        self.hub.cut_all()
        if self._runner is None or self._runner.server is None:
            return
        keep_protocol = keep.protocol if keep is not None else None
        for conn in self._runner.server.connections:
            if conn is not keep_protocol:
                conn.force_close()

    async def restart(self, down_seconds: float = 0.0, keep: web.BaseRequest | None = None) -> None:
        """Simulated restart: queue, history, cache and counter are lost; files persist.

        Every connection is cut (``keep``, the control request, is answered first).
        With ``down_seconds`` the port refuses connections for that long.
        """
        async with self._restart_lock:
            log.warning("simulated restart (down %.2fs)", down_seconds)
            lost = len(self.engine.queue.queue)
            await self.engine.stop()
            self.stats.prompts_lost += lost
            self.stats.restarts += 1
            self.hub.reset()
            self._cut_connections(keep)
            self.engine = Engine(self)
            shutil.rmtree(self.dirs.temp_dir, ignore_errors=True)
            self.dirs.temp_dir.mkdir(parents=True, exist_ok=True)
            self.engine.start()
            if down_seconds > 0:
                await self.refuse_connections(down_seconds, keep=keep)

    def is_down(self) -> bool:
        """True while refusing connections."""
        return asyncio.get_running_loop().time() < self._down_until

    async def refuse_connections(self, seconds: float, keep: web.BaseRequest | None = None) -> None:
        """Stop listening for ``seconds`` and cut open connections (except ``keep``)."""
        loop = asyncio.get_running_loop()
        self._down_until = max(self._down_until, loop.time() + seconds)
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self._cut_connections(keep)
        if self._relisten is None or self._relisten.done():
            self._relisten = asyncio.create_task(self._relisten_later())

    async def _relisten_later(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(10_000):  # the outage may be extended while we wait
            remaining = self._down_until - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(remaining)
        for attempt in range(50):
            try:
                await self._listen(self.port)
                log.warning("listening again on %s", self.url)
                return
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        log.error("could not listen again on port %s", self.port)


@contextlib.asynccontextmanager
async def run_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    root: str | os.PathLike[str] | None = None,
    render_seconds: float = 0.0,
    models: Iterable[str] = (),
    loras: Iterable[str] = (),
    preview_method: str = "none",
    cache: bool = True,
    ws_delay_seconds: float = 0.0,
    faults: Iterable[FaultSpec | str | dict[str, Any]] = (),
    fault_seed: int | None = None,
) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of an ``async with`` block.

    ``port=0`` binds a free port (read it from ``sim.port`` / ``sim.url``).
    Without ``root`` a temporary directory is used and removed afterwards.

    >>> async with run_simulator(root=tmp_path, render_seconds=0.05) as sim:  # doctest: +SKIP
    ...     print(sim.url)
    """
    if preview_method not in PREVIEW_METHODS:
        raise ValueError(f"preview_method must be one of {PREVIEW_METHODS}")
    specs = [f if isinstance(f, FaultSpec) else FaultSpec.from_json(f) for f in faults]
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="comfysim-")
        root = tmp.name
    config = SimConfig(
        root=Path(root),
        host=host,
        port=port,
        render_seconds=render_seconds,
        models=list(models),
        loras=list(loras),
        preview_method=preview_method,
        cache=cache,
        ws_delay_seconds=ws_delay_seconds,
        faults=specs,
        fault_seed=fault_seed,
    )
    sim = Simulator(config)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
        if tmp is not None:
            tmp.cleanup()
