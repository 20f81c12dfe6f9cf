"""Group commit for the ledger: deliveries that wait while one batch is recorded form the next.

Each delivery's handler hands its event to :meth:`BatchRecorder.record` and waits. One
worker takes everything waiting (up to ``max_batch``), records it in one transaction
(:class:`services.archiver.ledger.Ledger`), publishes the relays, and only then answers
the handlers, which ack. There is no timer: at low load a batch is one event recorded
at once (no added latency); under load batches grow by themselves, because events
queue up while the previous batch is in the database.

Relays of one batch are published while the next batch is recorded (at most
``relays_in_flight`` batches at a time), so the database never waits on the broker's
confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archiver.ledger import Ledger, Outcome, Recorded
from shared.events import Event, LedgerEntry
from shared.logging import get_logger

log = get_logger(__name__)

Relay = Callable[[LedgerEntry, str], Awaitable[None]]

#: SQLSTATEs worth one more try at once: deadlock, serialization failure.
_RETRYABLE = frozenset({"40P01", "40001"})


class BatchRecorder:
    def __init__(
        self,
        *,
        engine: Callable[[], AsyncEngine],
        relay: Relay,
        ledger: Ledger | None = None,
        max_batch: int = 128,
        relays_in_flight: int = 2,
        attempts: int = 3,
    ) -> None:
        self.engine = engine
        self.relay = relay
        self.ledger = ledger or Ledger()
        self.max_batch = max_batch
        self.attempts = attempts
        self._waiting: list[tuple[Event, asyncio.Future[Outcome]]] = []
        self._wake = asyncio.Event()
        self._relays = asyncio.Semaphore(relays_in_flight)
        self._relay_tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None

    async def record(self, event: Event) -> Outcome:
        """Record ``event``; returns once it is committed and its relay published."""
        if self._worker is None:
            await self.start()
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        self._wake.set()
        return await future

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="ledger-recorder")

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for task in list(self._relay_tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        for _, future in self._waiting:
            if not future.done():
                future.cancel()
        self._waiting.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                batch = [(e, f) for e, f in batch if not f.cancelled()]
                if batch:
                    await self._record(batch)

    async def _record(self, batch: list[tuple[Event, asyncio.Future[Outcome]]]) -> None:
        events = [event for event, _ in batch]
        try:
            outcomes = await self._transaction(events)
        except Exception as exc:
            log.warning("archiver.batch_failed", events=len(events), error=repr(exc)[:300])
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        await self._relays.acquire()
        task = asyncio.create_task(self._relay_and_answer(batch, outcomes))
        self._relay_tasks.add(task)
        task.add_done_callback(self._relay_tasks.discard)

    async def _relay_of(self, event: Event, outcome: Outcome) -> None:
        assert isinstance(outcome, Recorded)
        await self.relay(outcome.entry, event.correlation_id)

    async def _transaction(self, events: list[Event]) -> list[Outcome]:
        for attempt in range(1, self.attempts + 1):
            try:
                async with self.engine().begin() as conn:
                    return await self.ledger.record(conn, events)
            except DBAPIError as exc:
                code = _sqlstate(exc)
                if code not in _RETRYABLE or attempt == self.attempts:
                    raise
                log.info("archiver.batch_retry", sqlstate=code, attempt=attempt)
        raise AssertionError("unreachable")

    async def _relay_and_answer(
        self,
        batch: list[tuple[Event, asyncio.Future[Outcome]]],
        outcomes: list[Outcome],
    ) -> None:
        try:
            relayed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Recorded)]
            # Started in batch order, so one job's relays leave in seq order.
            results = await asyncio.gather(
                *(self._relay_of(batch[i][0], outcomes[i]) for i in relayed),
                return_exceptions=True,
            )
            errors = dict(zip(relayed, results, strict=True))
            for index, ((_, future), outcome) in enumerate(zip(batch, outcomes, strict=True)):
                if future.done():
                    continue
                error = errors.get(index)
                if isinstance(error, BaseException):
                    # Recorded but not relayed: the redelivery is a duplicate and relays.
                    future.set_exception(error)
                else:
                    future.set_result(outcome)
        finally:
            self._relays.release()


def _sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE behind a wrapped driver error (asyncpg names it ``sqlstate``)."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str):
            return code
    return None
