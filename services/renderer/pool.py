"""A pool of ComfyUI backends: health, bounded slots per backend, least-loaded choice.

Each backend is kept fed with at most ``slots`` prompts at once: enough that its GPU
never idles between two jobs, few enough that a backend dying strands little work.
A backend that fails is marked down and probed (``/system_stats``) until it answers.
An idle backend (none of our prompts on it) is probed too, every ``probe_interval``
seconds with a short timeout, so a backend that goes away while nothing runs on it is
marked down within seconds rather than when the next job fails on it. A busy backend is
not probed: its prompts in flight already tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable, Iterable

import aiohttp

from services.renderer.comfyui import ComfyError, ComfyUIClient, PromptLocation, PromptState
from shared.logging import get_logger
from shared.metrics import BACKEND_BUSY, BACKEND_UP

log = get_logger(__name__)


class Backend:
    def __init__(self, url: str, client: ComfyUIClient, slots: int) -> None:
        self.url = url
        self.client = client
        self.slots = slots
        self.in_flight = 0
        self.healthy = False
        self.last_error: str | None = None

    @property
    def free(self) -> int:
        return self.slots - self.in_flight


class NoBackend(RuntimeError):
    pass


class BackendPool:
    def __init__(
        self,
        urls: Iterable[str],
        *,
        session: Callable[[], aiohttp.ClientSession],
        slots: int = 2,
        probe_interval: float = 2.0,
        probe_timeout: float | None = None,
        unreachable_grace: float = 60.0,
        transient_exception_types: Iterable[str] = (),
    ) -> None:
        self._session = session
        self._transient_types = tuple(transient_exception_types)
        self._unreachable_grace = unreachable_grace
        self._urls = [url.rstrip("/") for url in urls]
        self._slots = slots
        self.backends: list[Backend] = []
        self.probe_interval = probe_interval
        #: How long an idle backend's ``/system_stats`` may take before it counts as down.
        self.probe_timeout = probe_timeout or max(0.5, min(2.0, probe_interval))
        self._changed = asyncio.Condition()
        self._waiters: list[tuple[int, int]] = []
        self._tickets = itertools.count()
        self._probe: asyncio.Task[None] | None = None

    def _new_client(self, url: str) -> ComfyUIClient:
        return ComfyUIClient(
            url,
            session=self._session(),
            transient_exception_types=self._transient_types,
            unreachable_grace=self._unreachable_grace,
        )

    async def start(self) -> None:
        """Connect to every backend that answers; the rest are probed in the background."""
        self.backends = [Backend(url, self._new_client(url), self._slots) for url in self._urls]
        await asyncio.gather(*(self._try_up(b) for b in self.backends))
        self._probe = asyncio.create_task(self._probe_loop())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await asyncio.gather(*(b.client.close() for b in self.backends), return_exceptions=True)

    def healthy(self) -> list[Backend]:
        return [b for b in self.backends if b.healthy]

    async def acquire(
        self, avoid: Iterable[str] = (), *, priority: int = 5, timeout: float | None = None
    ) -> Backend:
        """Take a slot on the least-loaded healthy backend, waiting for one if needed.

        Waiters are served by priority (then arrival): a freed slot always goes to the
        most urgent job waiting, which is how high priorities overtake a backlog.
        Backends in ``avoid`` (that just failed this job) are used only when no other
        healthy backend exists: a retry goes elsewhere when it can.
        """
        avoided = {a.rstrip("/") for a in avoid}
        ticket = (-priority, next(self._tickets))
        async with asyncio.timeout(timeout), self._changed:
            heapq.heappush(self._waiters, ticket)
            try:
                while True:
                    if self._waiters[0] == ticket:
                        backend = self._pick(avoided)
                        if backend is not None:
                            heapq.heappop(self._waiters)
                            self.claim(backend)
                            # The next waiter may fit in another free slot.
                            self._changed.notify_all()
                            return backend
                    await self._changed.wait()
            except BaseException:
                if ticket in self._waiters:
                    self._waiters.remove(ticket)
                    heapq.heapify(self._waiters)
                    self._changed.notify_all()
                raise

    def _pick(self, avoided: set[str]) -> Backend | None:
        healthy = self.healthy()
        preferred = [b for b in healthy if b.url not in avoided] or healthy
        candidates = [b for b in preferred if b.free > 0]
        if not candidates:
            return None
        return max(candidates, key=lambda b: (b.free, -b.in_flight))

    def claim(self, backend: Backend) -> None:
        """Count one more prompt on ``backend`` (also for re-attaching to one already there)."""
        backend.in_flight += 1
        BACKEND_BUSY.labels(backend.url).set(1)

    async def release(
        self, backend: Backend, *, failed: bool = False, error: str | None = None
    ) -> None:
        async with self._changed:
            backend.in_flight -= 1
            if backend.in_flight == 0:
                BACKEND_BUSY.labels(backend.url).set(0)
            if failed and backend.healthy:
                backend.healthy = False
                BACKEND_UP.labels(backend.url).set(0)
                backend.last_error = error
                log.warning("renderer.backend_down", backend=backend.url, error=error)
            self._changed.notify_all()

    async def find(self, prompt_id: str) -> tuple[Backend, PromptLocation] | None:
        """The backend that already has ``prompt_id`` queued, running or finished."""
        for backend in self.healthy():
            try:
                where = await backend.client.locate(prompt_id)
            except ComfyError:
                continue
            if where.state is not PromptState.UNKNOWN:
                return backend, where
        return None

    async def _try_up(self, backend: Backend) -> None:
        try:
            async with asyncio.timeout(max(self.probe_timeout, 5.0)):
                await backend.client.start()
                await backend.client.system_stats()
        except (ComfyError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            backend.last_error = str(exc) or type(exc).__name__
            BACKEND_UP.labels(backend.url).set(0)
            log.warning("renderer.backend_unreachable", backend=backend.url, error=str(exc))
            return
        async with self._changed:
            backend.healthy = True
            backend.last_error = None
            BACKEND_UP.labels(backend.url).set(1)
            self._changed.notify_all()
        log.info("renderer.backend_up", backend=backend.url)

    async def _check_idle(self, backend: Backend) -> None:
        """Probe a healthy backend none of our prompts is on; mark it down if it is gone."""
        try:
            async with asyncio.timeout(self.probe_timeout):
                await backend.client.system_stats()
        except (ComfyError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = f"health probe failed: {str(exc) or type(exc).__name__}"
            async with self._changed:
                # A render that took a slot meanwhile finds out for itself.
                if backend.healthy and backend.in_flight == 0:
                    backend.healthy = False
                    backend.last_error = error
                    BACKEND_UP.labels(backend.url).set(0)
                    log.warning("renderer.backend_down", backend=backend.url, error=error)
                self._changed.notify_all()

    async def _probe_one(self, backend: Backend) -> None:
        if not backend.healthy:
            # A fresh client: new websocket, new clientId, no stale waiters.
            await backend.client.close()
            backend.client = self._new_client(backend.url)
            await self._try_up(backend)
        elif backend.in_flight == 0:
            await self._check_idle(backend)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            # Side by side: a backend that hangs does not delay the others' verdicts.
            results = await asyncio.gather(
                *(self._probe_one(b) for b in self.backends), return_exceptions=True
            )
            for backend, result in zip(self.backends, results, strict=True):
                if isinstance(result, Exception):
                    log.warning(
                        "renderer.backend_probe_error", backend=backend.url, error=repr(result)
                    )
