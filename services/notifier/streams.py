"""What a watcher subscribed to, and where each of its streams stands.

Three kinds of stream, each with its own resume point:

* :class:`JobStream`: every entry of one job, in sequence order, from ``since``
  (a sequence number). A live entry that jumps past the last one sent makes the
  stream read the missing ones from the ledger first, so a lost live copy never
  becomes a gap.
* :class:`ProjectStream`: every entry of one project in ledger-id order, fed by the
  project's tailer (see ``tailer.py``); resumes from a ledger id (``cursor``).
* :class:`PatternStream`: live entries of any project whose routing key matches a
  topic pattern; not resumable (combine a pattern with a project for that).

Each stream deduplicates twice: when an entry is queued (``admit``: the seam between
replay and live) and when it is sent (``release``: late live copies after a fill).
"""

from __future__ import annotations

import abc
import re
import uuid
from collections import OrderedDict
from typing import Any, Protocol

from services.notifier.notes import Note


class GapReader(Protocol):
    async def job_gap(self, job_id: uuid.UUID, after: int, before: int) -> list[Note]: ...


def topic_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a topic-style pattern (``*`` one word, ``#`` zero or more words)."""
    words = pattern.split(".")
    regex = ""
    for index, word in enumerate(words):
        sep = r"\." if index else ""
        if word == "#":
            regex += rf"(?:{sep}[^.]+)*" if index else r"(?:[^.]+(?:\.[^.]+)*)?"
        elif word == "*":
            regex += rf"{sep}[^.]+"
        else:
            regex += sep + re.escape(word)
    return re.compile(rf"^{regex}$")


class EventFilter:
    """A topic pattern over ``<event type>.<project>``, the events' own routing keys.

    ``job.progress.*`` is every progress event, ``job.*.neon-skies`` everything of one
    project, ``job.#`` everything. A two-word pattern without ``#`` names event types
    only, so ``job.progress`` and ``job.*`` mean ``job.progress.*`` and ``job.*.*``.
    """

    def __init__(self, pattern: str) -> None:
        words = pattern.split(".")
        self.pattern = pattern
        full = f"{pattern}.*" if len(words) == 2 and "#" not in words else pattern
        self._regex = topic_pattern(full)

    def matches(self, note: Note) -> bool:
        return bool(self._regex.match(f"{note.entry.event_type.value}.{note.project}"))


class Stream(abc.ABC):
    """One subscription of one watcher."""

    kind: str = ""

    def __init__(self, sub: str, events: EventFilter | None = None) -> None:
        self.sub = sub
        self.events = events
        #: While history is replayed, live entries wait here (see Watcher.holding).
        self.holding = False
        self.held: list[Note] = []

    def wants(self, note: Note) -> bool:
        return self.events is None or self.events.matches(note)

    @abc.abstractmethod
    def admit(self, note: Note) -> bool:
        """May ``note`` be queued? Called synchronously as entries arrive."""

    @abc.abstractmethod
    async def release(self, note: Note, reader: GapReader) -> list[Note]:
        """The notes to send now for a queued ``note`` (may read a gap first)."""

    @abc.abstractmethod
    def resume(self) -> dict[str, Any]:
        """The subscribe request that continues this stream exactly where it stands."""

    def _request(self, **fields: Any) -> dict[str, Any]:
        request = {"action": "subscribe", "id": self.sub, **fields}
        if self.events is not None:
            request["events"] = self.events.pattern
        return request


class JobStream(Stream):
    kind = "job"

    def __init__(
        self, sub: str, job_id: uuid.UUID, since: int = 0, events: EventFilter | None = None
    ) -> None:
        super().__init__(sub, events)
        self.job_id = job_id
        self.admitted = since
        #: The last sequence number sent (or skipped by the filter): the resume point.
        self.sent = since

    def admit(self, note: Note) -> bool:
        if note.seq <= self.admitted:
            return False
        self.admitted = note.seq
        return True

    async def release(self, note: Note, reader: GapReader) -> list[Note]:
        if note.seq <= self.sent:
            return []
        notes = [note]
        if note.seq > self.sent + 1:
            missing = await reader.job_gap(self.job_id, self.sent, note.seq)
            notes = [*missing, note]
        self.sent = note.seq
        return [n for n in notes if self.wants(n)]

    def resume(self) -> dict[str, Any]:
        return self._request(job_id=str(self.job_id), since=self.sent)


class ProjectStream(Stream):
    kind = "project"

    def __init__(self, sub: str, project: str, events: EventFilter | None = None) -> None:
        super().__init__(sub, events)
        self.project = project
        self.admitted = 0
        self.sent = 0

    def start_at(self, cursor: int) -> None:
        self.admitted = self.sent = cursor

    def admit(self, note: Note) -> bool:
        if note.cursor is None or note.cursor <= self.admitted:
            return False
        self.admitted = note.cursor
        return True

    async def release(self, note: Note, reader: GapReader) -> list[Note]:
        assert note.cursor is not None
        if note.cursor <= self.sent:
            return []
        self.sent = note.cursor
        return [note] if self.wants(note) else []

    def resume(self) -> dict[str, Any]:
        return self._request(project=self.project, since=self.sent)


class PatternStream(Stream):
    kind = "events"
    #: (job, seq) pairs remembered to drop repeated live copies.
    MEMORY = 10_000

    def __init__(self, sub: str, events: EventFilter) -> None:
        super().__init__(sub, events)
        self._seen: OrderedDict[tuple[uuid.UUID, int], None] = OrderedDict()

    def admit(self, note: Note) -> bool:
        key = (note.job_id, note.seq)
        if not self.wants(note) or key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.MEMORY:
            self._seen.popitem(last=False)
        return True

    async def release(self, note: Note, reader: GapReader) -> list[Note]:
        return [note]

    def resume(self) -> dict[str, Any]:
        return self._request()
