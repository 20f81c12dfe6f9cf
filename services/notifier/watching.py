"""Opening a stream for a watcher: access check, history from the ledger, then live.

The seam between history and live is where gaps and repeats usually hide. Each stream
is registered for live entries *before* its history is read, and live entries wait
(``Watcher.holding``) until the history is queued; the stream's ``admit`` then drops
whatever the history already covered. Nothing is lost between the two and nothing is
sent twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from services.notifier.history import PAGE, LedgerReader
from services.notifier.hub import Hub, Watcher
from services.notifier.streams import (
    EventFilter,
    JobStream,
    PatternStream,
    ProjectStream,
)

#: Called once a stream is registered, before any entry of it is sent, with its start.
Announce = Callable[[int], Awaitable[None]]


async def _silent(_: int) -> None:
    return None


class SubscriptionError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Watching:
    def __init__(self, hub: Hub, reader: LedgerReader) -> None:
        self.hub = hub
        self.reader = reader

    async def job(
        self,
        watcher: Watcher,
        sub: str,
        job_id: uuid.UUID,
        *,
        since: int = 0,
        events: EventFilter | None = None,
        announce: Announce = _silent,
    ) -> JobStream:
        """Every entry of a job after sequence number ``since``, then live."""
        project = await self.reader.job_project(job_id)
        if project is not None and not watcher.may_see(project):
            # Same answer as for a job that does not exist: no peeking at other projects.
            raise SubscriptionError("job_id", f"no job {job_id} for this key")
        stream = JobStream(sub, job_id, since, events)
        await self._live()
        with watcher.holding(stream):
            self.hub.add_stream(watcher, stream)
            await announce(since)
            async for page in self.reader.job_pages(job_id, since):
                if not await watcher.replay(stream, page):
                    break
        return stream

    async def project(
        self,
        watcher: Watcher,
        sub: str,
        project: str,
        *,
        since: int | None = None,
        events: EventFilter | None = None,
        announce: Announce = _silent,
    ) -> ProjectStream:
        """A project's entries after ledger id ``since`` (None: from now on), then live."""
        if not watcher.may_see(project):
            raise SubscriptionError("project", "this key may not watch that project")
        stream = ProjectStream(sub, project, events)
        await self._live()
        tailer = self.hub.tailer(project)
        await tailer.ready()
        while self.hub.tailers.get(project) is not tailer:  # it went idle meanwhile
            tailer = self.hub.tailer(project)
            await tailer.ready()
        with watcher.holding(stream):
            # No await between reading the position and registering (see ProjectTailer).
            stream.start_at(tailer.position if since is None else since)
            self.hub.add_stream(watcher, stream)
            await announce(stream.sent)
            after = since
            while after is not None:
                page = await self.reader.project_after(project, after)
                if not await watcher.replay(stream, page) or len(page) < PAGE:
                    break
                after = page[-1].cursor
        return stream

    def pattern(self, watcher: Watcher, sub: str, events: EventFilter) -> PatternStream:
        """Live entries of every visible project whose routing key matches ``events``."""
        stream = PatternStream(sub, events)
        if self.hub.live is not None:
            self.hub.live.want_soon()  # live only: nothing to replay, nothing to wait for
        self.hub.add_stream(watcher, stream)
        return stream

    async def _live(self) -> None:
        """Live copies flow before any history is read (see live.py)."""
        if self.hub.live is not None:
            await self.hub.live.want()
