"""Watchers get what they subscribed to, once, and a stalled one cannot block others."""

import uuid
from datetime import UTC, datetime

import pytest

from services.notifier.hub import Hub, Subscription, Watcher, topic_pattern
from shared.events import EventType, LedgerEntry


def entry(
    job: uuid.UUID, seq: int, project: str = "p", kind: EventType = EventType.PROGRESS
) -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        job_id=job,
        project=project,
        event_type=kind,
        recorded_at=datetime.now(UTC),
        state="rendering",
        event={"event_type": kind.value},
    )


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


def test_a_project_subscription_sees_only_its_project() -> None:
    hub, watcher = Hub(), Watcher()
    watcher.subscriptions.append(Subscription(project="a"))
    hub.add(watcher)
    hub.publish(entry(uuid.uuid4(), 1, project="a"))
    hub.publish(entry(uuid.uuid4(), 1, project="b"))
    assert watcher.queue.qsize() == 1


def test_a_full_watcher_is_marked_overflowed_without_blocking_the_next() -> None:
    hub, slow, fast = Hub(), Watcher(buffer=2), Watcher(buffer=100)
    for w in (slow, fast):
        w.subscriptions.append(Subscription(project="p"))
        hub.add(w)
    job = uuid.uuid4()
    for seq in range(1, 11):
        hub.publish(entry(job, seq))
    assert slow.overflowed.is_set()
    assert fast.queue.qsize() == 10 and not fast.overflowed.is_set()


def test_fresh_drops_repeats_at_the_replay_live_seam() -> None:
    watcher, job = Watcher(), uuid.uuid4()
    assert watcher.fresh(entry(job, 1))
    assert watcher.fresh(entry(job, 2))
    assert not watcher.fresh(entry(job, 2))
    assert not watcher.fresh(entry(job, 1))


def test_a_key_limited_to_projects_never_sees_others() -> None:
    watcher = Watcher(projects=frozenset({"a"}))
    watcher.subscriptions.append(Subscription(event_pattern="#"))
    watcher.offer(entry(uuid.uuid4(), 1, project="b"))
    assert watcher.queue.empty()
