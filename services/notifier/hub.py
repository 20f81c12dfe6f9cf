"""Fan-out of ledger entries to watchers, each with a bounded buffer.

Routing is synchronous and never waits: an entry is offered to the streams that want
it (looked up by job id; project streams through their tailer; pattern streams
scanned), each offer is a ``put_nowait`` into that watcher's bounded queue. A watcher
that stops reading never slows the others: its queue fills, it is *overflowed* (queue
dropped, an ``overflow`` notice queued in its place with the exact resume point of
every stream), and if it cannot even take the notice within the grace period its
connection is cut. See docs/progress.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator

from services.notifier.history import LedgerReader
from services.notifier.ledger_check import LedgerCheck
from services.notifier.live import LiveFeed
from services.notifier.metrics import OVERFLOWS
from services.notifier.notes import Note
from services.notifier.streams import JobStream, PatternStream, ProjectStream, Stream
from services.notifier.tailer import ProjectTailer
from shared.events import LedgerEntry
from shared.logging import get_logger

log = get_logger(__name__)

DEFAULT_BUFFER = 1000


class Overflow:
    """The marker queued in place of a full watcher's entries."""


class Stop:
    """The marker that ends a watcher's send loop (the notifier is shutting down)."""


OVERFLOW = Overflow()
STOP = Stop()
Item = tuple[Stream, Note] | Overflow | Stop


class Watcher:
    """One connected client: its streams, its bounded queue, its overflow state."""

    def __init__(
        self,
        *,
        buffer: int = DEFAULT_BUFFER,
        projects: frozenset[str] | None = None,
        transport: str = "ws",
        grace: float = 5.0,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=buffer)
        self.buffer = buffer
        #: Projects this watcher's key may see (None: all).
        self.allowed_projects = projects
        self.transport = transport
        self.streams: dict[str, Stream] = {}
        self.overflowed = asyncio.Event()
        #: Set on overflow or stop: nothing more is queued.
        self.sealed = False
        self.grace = grace
        self.abort = abort
        self.finished = False
        self._watchdog: asyncio.TimerHandle | None = None

    def may_see(self, project: str) -> bool:
        return self.allowed_projects is None or project in self.allowed_projects

    def offer(self, stream: Stream, note: Note) -> None:
        """Queue ``note`` for ``stream`` without ever waiting; overflow if full."""
        if self.sealed or not self.may_see(note.project):
            return
        if stream.holding:
            stream.held.append(note)
            if len(stream.held) > self.buffer:
                self.overflow()
            return
        if not stream.admit(note):
            return
        try:
            self.queue.put_nowait((stream, note))
        except asyncio.QueueFull:
            self.overflow()

    async def replay(self, stream: Stream, notes: list[Note]) -> bool:
        """Queue history for ``stream``, waiting for room; False once overflowed."""
        for note in notes:
            if self.sealed:
                return False
            if self.may_see(note.project) and stream.admit(note):
                await self.queue.put((stream, note))
        return not self.sealed

    @contextlib.contextmanager
    def holding(self, stream: Stream) -> Iterator[None]:
        """Hold live entries of ``stream`` while its history is replayed, then let them in."""
        stream.holding = True
        try:
            yield
        finally:
            held, stream.held, stream.holding = stream.held, [], False
            for note in held:
                self.offer(stream, note)

    def overflow(self) -> None:
        if self.sealed:
            return
        self.overflowed.set()
        OVERFLOWS.labels(self.transport).inc()
        self._seal(OVERFLOW)
        log.warning("notifier.watcher_overflow", transport=self.transport, buffer=self.buffer)
        if self.abort is not None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self.grace, self._cut_off)

    def stop(self) -> None:
        """End the send loop now, whatever is queued."""
        if not self.sealed:
            self._seal(STOP)

    def _seal(self, marker: Overflow | Stop) -> None:
        self.sealed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(marker)

    def _cut_off(self) -> None:
        if not self.finished and self.abort is not None:
            log.warning("notifier.watcher_cut_off", transport=self.transport)
            self.abort()

    def close(self) -> None:
        """The send loop ended: seal (unblocking any replay still waiting for room)."""
        self.finished = True
        self.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()


class Hub:
    """Every watcher of this notifier replica, indexed by what they watch."""

    def __init__(self, reader: LedgerReader, *, project_poll: float = 2.0) -> None:
        self.reader = reader
        self.project_poll = project_poll
        self.watchers: set[Watcher] = set()
        self._by_job: dict[uuid.UUID, dict[tuple[Watcher, str], JobStream]] = {}
        self._patterns: dict[tuple[Watcher, str], PatternStream] = {}
        self.tailers: dict[str, ProjectTailer] = {}
        #: Highest sequence number relayed per watched job (for resync).
        self.relayed: dict[uuid.UUID, int] = {}
        #: Live copies are checked against the ledger before anything is relayed.
        self.check = LedgerCheck(reader, self.publish)
        #: The replica's live feed, bound while any stream is open (None: always bound).
        self.live: LiveFeed | None = None

    def __len__(self) -> int:
        return len(self.watchers)

    # ------------------------------------------------------------------ live entries

    def receive(self, entry: LedgerEntry) -> None:
        """A live copy from the broker: only a hint that the ledger grew. Never waits.

        Project tailers are poked (they read the ledger themselves). If some job or
        pattern stream could receive the entry, it goes to :class:`LedgerCheck`, which
        relays the ledger's row at that position, or drops and counts a copy the ledger
        does not hold. Nobody watching: nothing to check, nothing to relay.
        """
        tailer = self.tailers.get(entry.project)
        if tailer is not None:
            tailer.poke()
        if self._wanted(entry):
            self.check.submit(entry)

    def _wanted(self, entry: LedgerEntry) -> bool:
        if entry.job_id in self._by_job:
            return True
        if not self._patterns:
            return False
        note = Note(entry)
        return any(
            not watcher.sealed and watcher.may_see(note.project) and pattern.wants(note)
            for (watcher, _), pattern in self._patterns.items()
        )

    def publish(self, entry: LedgerEntry | Note) -> None:
        """Offer an entry *read from the ledger* to every stream that wants it. Never waits.

        Live copies go through :meth:`receive`; only rows of ``job_events`` come here, so
        no stream position moves past what the ledger holds.
        """
        note = entry if isinstance(entry, Note) else Note(entry)
        streams = self._by_job.get(note.job_id)
        if streams:
            self.relayed[note.job_id] = max(self.relayed.get(note.job_id, 0), note.seq)
            for (watcher, _), stream in tuple(streams.items()):
                watcher.offer(stream, note)
        for (watcher, _), pattern in tuple(self._patterns.items()):
            watcher.offer(pattern, note)
        tailer = self.tailers.get(note.project)
        if tailer is not None:
            tailer.poke()

    # ------------------------------------------------------------------ subscriptions

    def add(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def add_stream(self, watcher: Watcher, stream: Stream) -> None:
        """Route live entries to ``stream`` (project streams: see :meth:`tailer`)."""
        watcher.streams[stream.sub] = stream
        if isinstance(stream, JobStream):
            self._by_job.setdefault(stream.job_id, {})[(watcher, stream.sub)] = stream
        elif isinstance(stream, PatternStream):
            self._patterns[(watcher, stream.sub)] = stream
        elif isinstance(stream, ProjectStream):
            self.tailer(stream.project).add(watcher, stream)

    def remove_stream(self, watcher: Watcher, sub: str) -> None:
        stream = watcher.streams.pop(sub, None)
        if isinstance(stream, JobStream):
            streams = self._by_job.get(stream.job_id, {})
            streams.pop((watcher, sub), None)
            if not streams:
                self._by_job.pop(stream.job_id, None)
                self.relayed.pop(stream.job_id, None)
        elif isinstance(stream, PatternStream):
            self._patterns.pop((watcher, sub), None)
        elif isinstance(stream, ProjectStream):
            tailer = self.tailers.get(stream.project)
            if tailer is not None and tailer.remove(watcher, stream) == 0:
                self.tailers.pop(stream.project, None)
                tailer.stop()

    def remove(self, watcher: Watcher) -> None:
        for sub in list(watcher.streams):
            self.remove_stream(watcher, sub)
        self.watchers.discard(watcher)
        watcher.close()

    def tailer(self, project: str) -> ProjectTailer:
        tailer = self.tailers.get(project)
        if tailer is None:
            tailer = ProjectTailer(
                project, self.reader, poll_interval=self.project_poll, on_idle=self._forget
            )
            self.tailers[project] = tailer
        return tailer

    def _forget(self, tailer: ProjectTailer) -> None:
        if self.tailers.get(tailer.project) is tailer:
            del self.tailers[tailer.project]

    def watching(self) -> bool:
        """True while any stream (job, pattern or project) is open on this replica."""
        return bool(self._by_job or self._patterns or self.tailers)

    def watched_jobs(self) -> list[uuid.UUID]:
        return list(self._by_job)

    async def resync(self) -> int:
        """Relay entries of watched jobs whose live copies never came; returns how many.

        A lost live copy in the middle of a job shows up as a gap at the next entry;
        this catches the ones at the end (say, ``job.archived`` lost while this replica
        was reconnecting to the broker).
        """
        heads = await self.reader.job_heads(self.watched_jobs())
        relayed = 0
        for job_id, head in heads.items():
            after = self.relayed.get(job_id, 0)
            if head <= after or job_id not in self._by_job:
                continue
            async for page in self.reader.job_pages(job_id, after):
                for note in page:
                    self.publish(note)
                    relayed += 1
        return relayed

    async def stop(self) -> None:
        """Shutting down: cut every watcher off (they resume on another replica by id)."""
        await self.check.stop()
        for tailer in list(self.tailers.values()):
            tailer.stop()
        self.tailers.clear()
        for watcher in list(self.watchers):
            watcher.stop()
            if watcher.abort is not None:
                watcher.abort()
