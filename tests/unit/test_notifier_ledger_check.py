"""Live ledger copies are hints: only what the ledger holds reaches a watcher."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from services.notifier.hub import Hub, Watcher
from services.notifier.notes import Note
from services.notifier.streams import EventFilter, JobStream, PatternStream
from shared.events import EventType, LedgerEntry


def entry(
    job: uuid.UUID,
    seq: int,
    *,
    project: str = "p",
    kind: EventType = EventType.PROGRESS,
    event_id: uuid.UUID | None = None,
    state: str = "rendering",
) -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        job_id=job,
        project=project,
        event_type=kind,
        recorded_at=datetime.now(UTC),
        state=state,
        event={"event_type": kind.value, "event_id": str(event_id or uuid.uuid4())},
    )


class Ledger:
    """A fake ledger: rows by (job, seq), and the lookups made."""

    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, int], tuple[Note, uuid.UUID]] = {}
        self.lookups: list[list[tuple[uuid.UUID, int]]] = []

    def record(self, live: LedgerEntry, cursor: int) -> LedgerEntry:
        self.rows[(live.job_id, live.seq)] = (
            Note(live, cursor),
            uuid.UUID(live.event["event_id"]),
        )
        return live

    async def recorded(
        self, keys: Sequence[tuple[uuid.UUID, int]]
    ) -> dict[tuple[uuid.UUID, int], tuple[Note, uuid.UUID]]:
        self.lookups.append(list(keys))
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def job_gap(self, job_id: uuid.UUID, after: int, before: int) -> list[Note]:
        return [
            note
            for (job, seq), (note, _) in sorted(self.rows.items())
            if job == job_id and after < seq < before
        ]


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("anime_ledger_relays_dropped_total", {"reason": reason}) or 0.0


def queued(watcher: Watcher) -> list[Note]:
    notes: list[Note] = []
    while not watcher.queue.empty():
        item = watcher.queue.get_nowait()
        assert isinstance(item, tuple)
        notes.append(item[1])
    return notes


async def test_a_forged_entry_ahead_of_the_ledger_never_moves_a_job_stream() -> None:
    ledger = Ledger()
    hub = Hub(ledger)  # type: ignore[arg-type]
    job = uuid.uuid4()
    watcher = Watcher()
    stream = JobStream("1", job)
    hub.add(watcher)
    hub.add_stream(watcher, stream)
    before = dropped("not_in_ledger")

    # A forged copy jumps ahead; the genuine ones follow
    hub.receive(entry(job, 9))
    genuine = [ledger.record(entry(job, seq), cursor=100 + seq) for seq in (1, 2, 3)]
    for live in genuine:
        hub.receive(live)
    await hub.check.idle()

    notes = queued(watcher)
    assert [n.seq for n in notes] == [1, 2, 3]
    assert all(n.cursor is not None for n in notes)  # the ledger's rows, not the copies
    assert stream.admitted == 3 and hub.relayed[job] == 3
    assert dropped("not_in_ledger") == before + 1


async def test_a_copy_that_disagrees_with_its_row_is_dropped_and_the_row_is_what_is_sent() -> None:
    ledger = Ledger()
    hub = Hub(ledger)  # type: ignore[arg-type]
    job = uuid.uuid4()
    watcher = Watcher()
    hub.add(watcher)
    hub.add_stream(watcher, JobStream("1", job))
    real = ledger.record(entry(job, 1), cursor=7)
    before = dropped("disagrees")

    hub.receive(entry(job, 1, state="completed"))  # same position, other story
    hub.receive(entry(job, 1, project="q", event_id=uuid.UUID(real.event["event_id"])))
    hub.receive(real)
    await hub.check.idle()

    notes = queued(watcher)
    assert [(n.seq, n.cursor, n.entry.state) for n in notes] == [(1, 7, "rendering")]
    assert dropped("disagrees") == before + 2


async def test_nothing_is_looked_up_when_no_watcher_could_receive_the_entry() -> None:
    ledger = Ledger()
    hub = Hub(ledger)  # type: ignore[arg-type]
    watcher = Watcher(projects=frozenset({"mine"}))
    hub.add(watcher)
    hub.add_stream(watcher, PatternStream("1", EventFilter("job.failed.*")))
    hub.add_stream(watcher, JobStream("2", uuid.uuid4()))

    hub.receive(entry(uuid.uuid4(), 1, project="mine"))  # not a failure
    hub.receive(entry(uuid.uuid4(), 1, project="other", kind=EventType.FAILED))  # not visible
    await hub.check.idle()
    assert ledger.lookups == []

    wanted = ledger.record(entry(uuid.uuid4(), 1, project="mine", kind=EventType.FAILED), 3)
    hub.receive(wanted)
    await hub.check.idle()
    assert ledger.lookups == [[(wanted.job_id, 1)]]
    assert [n.cursor for n in queued(watcher)] == [3]


async def test_entries_that_arrive_together_are_checked_with_one_lookup() -> None:
    ledger = Ledger()
    hub = Hub(ledger)  # type: ignore[arg-type]
    job = uuid.uuid4()
    watcher = Watcher()
    hub.add(watcher)
    hub.add_stream(watcher, JobStream("1", job))
    lives = [ledger.record(entry(job, seq), cursor=seq) for seq in range(1, 51)]
    for live in lives:
        hub.receive(live)
    await hub.check.idle()
    assert len(ledger.lookups) == 1 and len(ledger.lookups[0]) == 50
    assert [n.seq for n in queued(watcher)] == list(range(1, 51))


async def test_a_ledger_that_cannot_be_read_relays_nothing_and_counts_it() -> None:
    class Down(Ledger):
        async def recorded(
            self, keys: Sequence[tuple[uuid.UUID, int]]
        ) -> dict[tuple[uuid.UUID, int], tuple[Note, uuid.UUID]]:
            raise ConnectionRefusedError("database down")

    hub = Hub(Down())  # type: ignore[arg-type]
    job = uuid.uuid4()
    watcher = Watcher()
    hub.add(watcher)
    hub.add_stream(watcher, JobStream("1", job))
    before = dropped("unverified")
    hub.receive(entry(job, 1))
    await hub.check.idle()
    assert queued(watcher) == [] and job not in hub.relayed
    assert dropped("unverified") == before + 1
