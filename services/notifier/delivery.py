"""The send loop of one watcher, the same for WebSocket and SSE.

It takes queued entries one at a time, lets the stream fill a gap or drop a repeat,
and writes frames through an :class:`Outlet`. When the watcher overflowed it writes
the overflow notice (within the grace period, else the connection is cut) and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from services.notifier.history import LedgerReader
from services.notifier.hub import Overflow, Stop, Watcher
from services.notifier.metrics import FRAMES_SENT
from services.notifier.notes import Note
from services.notifier.streams import Stream
from shared.logging import get_logger

log = get_logger(__name__)


class Outlet(Protocol):
    """How frames reach one client."""

    transport: str

    async def send(self, stream: Stream, note: Note) -> None: ...
    async def heartbeat(self) -> None: ...
    async def overflow(self, resume: list[dict[str, Any]]) -> None: ...
    def done_after(self, note: Note) -> bool: ...
    def abort(self) -> None: ...


async def deliver(
    watcher: Watcher, outlet: Outlet, reader: LedgerReader, *, heartbeat: float | None = None
) -> str:
    """Send until overflow (``"overflow"``), the outlet is done (``"done"``) or the
    watcher is stopped (``"stopped"``)."""
    try:
        while True:
            try:
                async with asyncio.timeout(heartbeat):
                    item = await watcher.queue.get()
            except TimeoutError:
                await outlet.heartbeat()
                continue
            if isinstance(item, Overflow):
                await _overflow(watcher, outlet)
                return "overflow"
            if isinstance(item, Stop):
                return "stopped"
            stream, note = item
            for ready in await stream.release(note, reader):
                await outlet.send(stream, ready)
                FRAMES_SENT.labels(outlet.transport).inc()
                if outlet.done_after(ready):
                    return "done"
    finally:
        watcher.close()


async def _overflow(watcher: Watcher, outlet: Outlet) -> None:
    resume = [stream.resume() for stream in watcher.streams.values()]
    try:
        async with asyncio.timeout(watcher.grace):
            await outlet.overflow(resume)
    except (TimeoutError, ConnectionError) as exc:
        log.warning("notifier.overflow_notice_lost", error=repr(exc))
        with contextlib.suppress(Exception):
            outlet.abort()
