"""Watchers get what they subscribed to, once, and a stalled one cannot block others."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from services.notifier.hub import OVERFLOW, Hub, Watcher
from services.notifier.notes import Note
from services.notifier.streams import EventFilter, JobStream, PatternStream, topic_pattern
from shared.events import EventType, LedgerEntry


def note(
    job: uuid.UUID,
    seq: int,
    project: str = "p",
    kind: EventType = EventType.PROGRESS,
    cursor: int | None = None,
) -> Note:
    entry = LedgerEntry(
        seq=seq,
        job_id=job,
        project=project,
        event_type=kind,
        recorded_at=datetime.now(UTC),
        state="rendering",
        event={"event_type": kind.value},
    )
    return Note(entry, cursor)


class NoHistory:
    async def job_gap(self, job_id: uuid.UUID, after: int, before: int) -> list[Note]:
        return []


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("job.*", "job.progress", True),
        ("job.#", "job.cancel_requested", True),
        ("#", "job.progress", True),
        ("job.progress", "job.progress", True),
        ("job.progress", "job.started", False),
        ("*.progress", "job.progress", True),
        ("job.*.x", "job.progress", False),
    ],
)
def test_topic_patterns_match_like_rabbitmq(pattern: str, value: str, matches: bool) -> None:
    assert bool(topic_pattern(pattern).match(value)) is matches


@pytest.mark.parametrize(
    ("pattern", "kind", "project", "matches"),
    [
        ("job.progress", EventType.PROGRESS, "a", True),
        ("job.progress.*", EventType.PROGRESS, "a", True),
        ("job.*", EventType.FAILED, "a", True),
        ("job.*.b", EventType.FAILED, "a", False),
        ("job.#", EventType.CANCEL_REQUESTED, "a", True),
        ("#.a", EventType.STARTED, "a", True),
        ("job.failed", EventType.PROGRESS, "a", False),
    ],
)
def test_event_filters_match_the_events_routing_keys(
    pattern: str, kind: EventType, project: str, matches: bool
) -> None:
    assert EventFilter(pattern).matches(note(uuid.uuid4(), 1, project, kind)) is matches


async def test_a_job_stream_gets_only_its_job() -> None:
    hub, watcher, job = Hub(reader=None), Watcher(), uuid.uuid4()  # type: ignore[arg-type]
    hub.add(watcher)
    hub.add_stream(watcher, JobStream("1", job))
    hub.publish(note(job, 1))
    hub.publish(note(uuid.uuid4(), 1))
    assert watcher.queue.qsize() == 1


async def test_a_full_watcher_is_overflowed_without_blocking_the_next() -> None:
    hub = Hub(reader=None)  # type: ignore[arg-type]
    slow, fast = Watcher(buffer=2), Watcher(buffer=100)
    for w in (slow, fast):
        hub.add(w)
        hub.add_stream(w, PatternStream("1", EventFilter("#")))
    job = uuid.uuid4()
    for seq in range(1, 11):
        hub.publish(note(job, seq))
    # The slow one's entries were dropped for the overflow notice; the fast one has all
    assert slow.overflowed.is_set() and slow.queue.get_nowait() is OVERFLOW
    assert fast.queue.qsize() == 10 and not fast.overflowed.is_set()


async def test_the_seam_between_history_and_live_sends_each_entry_once() -> None:
    watcher, job = Watcher(), uuid.uuid4()
    stream = JobStream("1", job, since=0)
    with watcher.holding(stream):
        # live entries 3 and 4 arrive while history 1..3 is being queued
        watcher.offer(stream, note(job, 3))
        watcher.offer(stream, note(job, 4))
        await watcher.replay(stream, [note(job, 1), note(job, 2), note(job, 3)])
    queued = [watcher.queue.get_nowait() for _ in range(watcher.queue.qsize())]
    assert [n.seq for _, n in queued] == [1, 2, 3, 4]  # type: ignore[misc]


async def test_a_key_limited_to_projects_never_sees_others() -> None:
    watcher = Watcher(projects=frozenset({"a"}))
    stream = PatternStream("1", EventFilter("#"))
    watcher.offer(stream, note(uuid.uuid4(), 1, project="b"))
    assert watcher.queue.empty()
    watcher.offer(stream, note(uuid.uuid4(), 1, project="a"))
    assert watcher.queue.qsize() == 1


async def test_an_overflowed_watcher_is_cut_off_if_it_cannot_take_the_notice() -> None:
    cut: list[bool] = []
    watcher = Watcher(buffer=1, grace=0.01, abort=lambda: cut.append(True))
    stream = PatternStream("1", EventFilter("#"))
    job = uuid.uuid4()
    watcher.offer(stream, note(job, 1))
    watcher.offer(stream, note(job, 2))
    assert watcher.overflowed.is_set()
    await asyncio.sleep(0.05)  # nobody took the notice within the grace period
    assert cut == [True]


async def test_a_watcher_that_finished_is_not_cut_off() -> None:
    cut: list[bool] = []
    watcher = Watcher(buffer=1, grace=0.01, abort=lambda: cut.append(True))
    stream = PatternStream("1", EventFilter("#"))
    watcher.offer(stream, note(uuid.uuid4(), 1))
    watcher.offer(stream, note(uuid.uuid4(), 1))
    watcher.close()
    await asyncio.sleep(0.05)
    assert cut == []
