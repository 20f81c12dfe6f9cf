"""Fan-out of ledger entries to watchers, each with a bounded buffer.

A watcher that stops reading never slows the others: its buffer fills, it is marked
overflowed and disconnected with the last sequence number it received per job, and
it resumes from there (``since`` / ``Last-Event-ID``) when it reconnects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid

from shared.events import LedgerEntry

DEFAULT_BUFFER = 1000


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


@dataclasses.dataclass(frozen=True)
class Subscription:
    """What a watcher wants: one job, one project, and/or event types matching a pattern."""

    job_id: uuid.UUID | None = None
    project: str | None = None
    event_pattern: str | None = None

    def matches(self, entry: LedgerEntry) -> bool:
        if self.job_id is not None and entry.job_id != self.job_id:
            return False
        if self.project is not None and entry.project != self.project:
            return False
        if self.event_pattern is not None:
            return bool(topic_pattern(self.event_pattern).match(entry.event_type.value))
        return True


class Watcher:
    """One connected client: its subscriptions, its buffer, and what it has seen."""

    def __init__(
        self, *, buffer: int = DEFAULT_BUFFER, projects: frozenset[str] | None = None
    ) -> None:
        self.queue: asyncio.Queue[LedgerEntry] = asyncio.Queue(maxsize=buffer)
        self.subscriptions: list[Subscription] = []
        #: Projects this watcher's key may see (None: all).
        self.allowed_projects = projects
        #: Highest sequence number delivered, per job: the seam between replay and live.
        self.delivered: dict[uuid.UUID, int] = {}
        self.overflowed = asyncio.Event()
        #: While replaying a subscription's history, live entries wait here.
        self.holding = False
        self.held: list[LedgerEntry] = []

    def wants(self, entry: LedgerEntry) -> bool:
        if self.allowed_projects is not None and entry.project not in self.allowed_projects:
            return False
        return any(s.matches(entry) for s in self.subscriptions)

    def offer(self, entry: LedgerEntry) -> None:
        if self.overflowed.is_set() or not self.wants(entry):
            return
        if self.holding:
            self.held.append(entry)
            if len(self.held) > self.queue.maxsize:
                self.overflowed.set()
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.overflowed.set()

    def fresh(self, entry: LedgerEntry) -> bool:
        """True once per (job, seq): drops repeats at the replay/live seam."""
        if entry.seq <= self.delivered.get(entry.job_id, 0):
            return False
        self.delivered[entry.job_id] = entry.seq
        return True


class Hub:
    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()

    def add(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def remove(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def publish(self, entry: LedgerEntry) -> None:
        # Synchronous and non-blocking: one slow watcher cannot delay the next.
        for watcher in tuple(self.watchers):
            watcher.offer(entry)

    def __len__(self) -> int:
        return len(self.watchers)
