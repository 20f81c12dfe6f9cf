"""Following one project's ledger in commit order, for every project stream of this replica.

Ledger rows carry a ``position`` ordered by the transaction that recorded them, and the
reader only returns rows of transactions older than every transaction still running
(see ``LedgerReader.project_after``), so "every row of the project after position n"
is gap-free: reading it again later never turns up an older row that was missed, with
no lock on the writers' side. The tailer reads that once for all of the project's
watchers whenever a live copy of one of its entries arrives (or every
``poll_interval`` if none does) and hands each row, with its position as ``cursor``,
to every project stream. A live copy can arrive while an older transaction (of any
writer) is still running, so its row is not readable yet: the tailer then looks again
soon, backing off to ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.notifier.history import PAGE, LedgerReader
from services.notifier.streams import ProjectStream
from shared.logging import get_logger

if TYPE_CHECKING:
    from services.notifier.hub import Watcher

log = get_logger(__name__)


class ProjectTailer:
    def __init__(
        self,
        project: str,
        reader: LedgerReader,
        *,
        poll_interval: float = 2.0,
        on_idle: Callable[[ProjectTailer], None] | None = None,
    ) -> None:
        self.project = project
        self.reader = reader
        self.poll_interval = poll_interval
        self.on_idle = on_idle
        #: Ledger position of the last row handed out.
        self.position = 0
        self._subscribers: dict[tuple[Watcher, str], ProjectStream] = {}
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Start following (if not yet) and wait until ``position`` is known."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"tailer:{self.project}")
        if self._ready.is_set():
            return
        waiter = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            waiter.cancel()
            raise RuntimeError(f"the tailer of {self.project!r} stopped")

    def add(self, watcher: Watcher, stream: ProjectStream) -> None:
        self._subscribers[(watcher, stream.sub)] = stream

    def remove(self, watcher: Watcher, stream: ProjectStream) -> int:
        self._subscribers.pop((watcher, stream.sub), None)
        return len(self._subscribers)

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while not self._ready.is_set():
            try:
                self.position = await self.reader.project_head(self.project)
                self._ready.set()
            except Exception:
                log.exception("notifier.tailer_failed", project=self.project)
                await asyncio.sleep(self.poll_interval)
        wait = self.poll_interval
        while True:
            poked = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
                    poked = True
            self._wake.clear()
            if not self._subscribers:
                if self.on_idle is not None:
                    self.on_idle(self)
                return
            try:
                found = await self._catch_up()
            except Exception:
                log.exception("notifier.tailer_failed", project=self.project)
                found = 0
            if found or not (poked or wait < self.poll_interval):
                wait = self.poll_interval
            else:
                # A live copy announced a row we could not read yet: look again soon.
                wait = min(self.poll_interval, 0.02 if poked else wait * 2)

    async def _catch_up(self) -> int:
        found = 0
        while True:
            notes = await self.reader.project_after(self.project, self.position)
            # From here to the position update nothing awaits: a stream added meanwhile
            # starts either before these notes (and gets them) or after them.
            for note in notes:
                for (watcher, _), stream in tuple(self._subscribers.items()):
                    watcher.offer(stream, note)
            if notes:
                assert notes[-1].cursor is not None
                self.position = notes[-1].cursor
                found += len(notes)
            if len(notes) < PAGE:
                return found
