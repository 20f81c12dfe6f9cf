"""Each stream sends every entry it wants once, fills gaps, and knows its resume point."""

import json
import uuid

from services.notifier.notes import Note
from services.notifier.streams import EventFilter, JobStream, PatternStream, ProjectStream
from shared.events import EventType
from tests.unit.test_notifier_hub import note


class History:
    """A ledger of one job, as the gap filler reads it."""

    def __init__(self, job: uuid.UUID, kinds: dict[int, EventType] | None = None) -> None:
        self.job = job
        self.kinds = kinds or {}
        self.asked: list[tuple[int, int]] = []

    async def job_gap(self, job_id: uuid.UUID, after: int, before: int) -> list[Note]:
        self.asked.append((after, before))
        return [
            note(job_id, s, kind=self.kinds.get(s, EventType.PROGRESS))
            for s in range(after + 1, before)
        ]


async def test_a_job_stream_reads_a_gap_from_the_ledger_before_sending_the_entry() -> None:
    job = uuid.uuid4()
    stream, history = JobStream("1", job, since=1), History(job)
    fourth = note(job, 4)
    assert stream.admit(fourth)
    sent = await stream.release(fourth, history)
    assert [n.seq for n in sent] == [2, 3, 4]
    assert history.asked == [(1, 4)]
    # the late live copies of 2 and 3 are dropped
    assert not stream.admit(note(job, 3))
    assert await stream.release(note(job, 3), history) == []
    assert stream.resume() == {"action": "subscribe", "id": "1", "job_id": str(job), "since": 4}


async def test_a_filtered_job_stream_skips_but_counts_what_it_does_not_want() -> None:
    job = uuid.uuid4()
    stream = JobStream("f", job, events=EventFilter("job.failed"))
    history = History(job, {1: EventType.STARTED, 2: EventType.FAILED})
    sent = await stream.release(note(job, 3), history)
    assert [n.seq for n in sent] == [2]
    assert stream.resume()["since"] == 3 and stream.resume()["events"] == "job.failed"


async def test_a_project_stream_moves_by_ledger_id_only_forwards() -> None:
    stream = ProjectStream("p", "neon", events=EventFilter("job.progress"))
    stream.start_at(10)
    assert not stream.admit(note(uuid.uuid4(), 1, "neon", cursor=10))
    assert stream.admit(note(uuid.uuid4(), 1, "neon", cursor=11))
    started = note(uuid.uuid4(), 1, "neon", EventType.STARTED, cursor=12)
    assert stream.admit(started)
    assert await stream.release(started, History(uuid.uuid4())) == []
    assert stream.resume()["since"] == 12


def test_a_pattern_stream_drops_repeated_live_copies() -> None:
    stream, job = PatternStream("e", EventFilter("job.#")), uuid.uuid4()
    assert stream.admit(note(job, 2))
    assert stream.admit(note(job, 1))  # late, but never sent before
    assert not stream.admit(note(job, 2))


def test_a_frame_is_the_entry_once_rendered_plus_its_subscription() -> None:
    entry = note(uuid.uuid4(), 7, cursor=99)
    frame = json.loads(entry.ws_frame("mine"))
    assert frame["type"] == "event" and frame["sub"] == "mine"
    assert (frame["seq"], frame["cursor"], frame["event_type"]) == (7, 99, "job.progress")
    assert json.loads(entry.body())["event"] == {"event_type": "job.progress"}
