"""Live copies are hints: a watcher is sent what the ledger holds, never the copy itself.

Anyone who can publish to the exchange can publish a ``ledger.*`` message. Relayed as
is, a forged entry for a real job with a ``seq`` ahead of the real one would move the
job's streams forward, and the genuine entries after it would be dropped as repeats
(or a forged final state would end an SSE stream). So a live entry that some watcher
could receive is first looked up in ``job_events`` by (job, seq), and what is relayed
is *the row*: its payload, state and ledger id (``cursor``). A copy whose row does not
exist, or whose project, event id, event type or state differ from the row's, is
dropped and counted (``anime_ledger_relays_dropped_total``).

Cost: nothing for entries no watcher wants (the hub asks first); otherwise one query
for all the entries that arrived while the previous query ran (at most ``MAX_BATCH``
positions), in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from services.notifier.metrics import RELAYS_DROPPED
from services.notifier.notes import Note
from shared.events import LedgerEntry
from shared.logging import get_logger

log = get_logger(__name__)

#: Positions looked up per query.
MAX_BATCH = 500
#: Live entries waiting for a lookup before new ones are dropped (the ledger is stuck).
MAX_PENDING = 20_000


class RecordedReader(Protocol):
    async def recorded(
        self, keys: Sequence[tuple[uuid.UUID, int]]
    ) -> dict[tuple[uuid.UUID, int], tuple[Note, uuid.UUID]]: ...


def disagreement(live: LedgerEntry, row: Note, event_id: uuid.UUID) -> str | None:
    """Which field of a live copy differs from the ledger row at its position (None: none)."""
    recorded = row.entry
    if live.project != recorded.project:
        return "project"
    if live.event_type != recorded.event_type:
        return "event_type"
    if str(live.event.get("event_id")) != str(event_id):
        return "event_id"
    if live.state != recorded.state:
        return "state"
    return None


class LedgerCheck:
    """Checks live entries against the ledger in batches and relays the rows found."""

    def __init__(self, reader: RecordedReader, relay: Callable[[Note], None]) -> None:
        self.reader = reader
        self.relay = relay
        self._pending: list[LedgerEntry] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, entry: LedgerEntry) -> None:
        """Queue ``entry`` for the next lookup. Never waits."""
        if len(self._pending) >= MAX_PENDING:
            RELAYS_DROPPED.labels("backlog").inc()
            return
        self._pending.append(entry)
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="notifier-ledger-check")

    async def idle(self) -> None:
        """Wait until every submitted entry was checked (tests, shutdown)."""
        await self._idle.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pending.clear()
        self._idle.set()

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._check(batch)
        finally:
            if not self._pending:
                self._idle.set()

    async def _check(self, batch: list[LedgerEntry]) -> None:
        try:
            rows = await self.reader.recorded([(e.job_id, e.seq) for e in batch])
        except Exception:
            # Not relayed: job streams catch up from the ledger at the next resync.
            log.exception("notifier.ledger_check_failed", entries=len(batch))
            RELAYS_DROPPED.labels("unverified").inc(len(batch))
            return
        for entry in batch:
            found = rows.get((entry.job_id, entry.seq))
            if found is None:
                self._drop(entry, "not_in_ledger", None)
                continue
            row, event_id = found
            field = disagreement(entry, row, event_id)
            if field is not None:
                self._drop(entry, "disagrees", field)
                continue
            self.relay(row)

    def _drop(self, entry: LedgerEntry, reason: str, field: str | None) -> None:
        RELAYS_DROPPED.labels(reason).inc()
        log.warning(
            "notifier.ledger_relay_dropped",
            reason=reason,
            field=field,
            job_id=str(entry.job_id),
            seq=entry.seq,
            project=entry.project,
            event_type=entry.event_type.value,
        )
