"""This replica's live feed of ledger relays: bound only while somebody watches.

Live copies are hints (the ledger is what gets relayed, see ``ledger_check.py``), and a
replica with no watcher throws every one of them away. Receiving them anyway costs the
broker a routed copy and this process a delivery per job event, for nothing. So the
replica's exclusive queue is bound to ``ledger.#`` while any stream is open, and unbound
once none has been for ``linger`` seconds.

A stream that starts binds first (and waits for the broker's answer) before it reads
its history, so the seam between history and live entries stays exactly as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika

from shared.logging import get_logger

log = get_logger(__name__)

QueueGetter = Callable[[], Awaitable[aio_pika.abc.AbstractQueue]]


class LiveFeed:
    def __init__(
        self,
        queue: QueueGetter,
        *,
        exchange: str,
        binding_key: str,
        linger: float = 30.0,
    ) -> None:
        self._queue = queue
        self.exchange = exchange
        self.binding_key = binding_key
        self.linger = linger
        self.bound = False
        self._lock = asyncio.Lock()
        self._idle_since: float | None = time.monotonic()
        #: Binds and unbinds done (for tests and the curious).
        self.changes = 0

    async def want(self) -> None:
        """Make sure live copies arrive; returns once the broker bound the queue."""
        self._idle_since = None
        if self.bound:
            return
        async with self._lock:
            if not self.bound:
                queue = await self._queue()
                await queue.bind(self.exchange, routing_key=self.binding_key)
                self.bound = True
                self.changes += 1
                log.info("notifier.live_feed_bound", key=self.binding_key)

    def want_soon(self) -> None:
        """:meth:`want` from code that cannot wait (live-only pattern streams)."""
        self._idle_since = None
        if not self.bound:
            task = asyncio.get_running_loop().create_task(self.want())
            task.add_done_callback(_log_failure)

    async def tick(self, *, watched: bool) -> None:
        """Called periodically: unbind once nothing has been watched for ``linger`` s."""
        now = time.monotonic()
        if watched:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        if not self.bound or now - self._idle_since < self.linger:
            return
        async with self._lock:
            if self.bound:
                queue = await self._queue()
                await queue.unbind(self.exchange, routing_key=self.binding_key)
                self.bound = False
                self.changes += 1
                log.info("notifier.live_feed_unbound", key=self.binding_key)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("notifier.live_feed_failed", error=repr(task.exception())[:300])
