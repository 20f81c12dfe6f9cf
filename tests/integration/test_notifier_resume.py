"""Watchers that disconnect and come back get every entry once: no gap, no repeat."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import update

from services.archiver.main import create_app as archiver_app
from services.notifier.config import NotifierOptions
from services.notifier.main import build as build_notifier
from shared.db.models import JobEvent, JobState
from shared.events import Event
from shared.settings import Settings
from tests.support.archive_jobs import (
    Publisher,
    accepted,
    archived,
    insert_job,
    progress,
    publisher,
    spec_for,
    started,
)
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually
from tests.support.watchers import SseEvent, connect, notifier_url, sse

pytestmark = pytest.mark.integration


@asynccontextmanager
async def pipeline(
    settings: Settings, options: NotifierOptions | None = None
) -> AsyncIterator[Publisher]:
    """Archiver (the ledger) and notifier running; yields a publisher of events."""
    notifier = build_notifier(settings, options)
    async with (
        running(archiver_app(settings)),
        running(notifier.app),
        publisher(settings) as bus,
    ):
        yield bus


def job_events(job_id: uuid.UUID, project: str, spec_events: int) -> list[Event]:
    spec = spec_for(project=project)
    return [
        accepted(job_id, spec),
        started(job_id, project),
        *(progress(job_id, project, n) for n in range(1, spec_events + 1)),
        archived(job_id, project),
    ]


def publish_in_background(
    bus: Publisher, records: Records, events: list[Event], *, recorded_first: int
) -> asyncio.Task[None]:
    """Publish ``events``, the last one (job.archived) only once its job has
    ``recorded_first`` entries in the ledger: as in the pipeline, where the archiver
    sends it after the render's events."""

    async def run() -> None:
        await bus.publish_all(events[:-1])

        async def recorded() -> bool:
            return len(await records.events(events[-1].job_id)) >= recorded_first

        await eventually(recorded, what="events recorded")
        await bus.publish(events[-1])

    return asyncio.create_task(run())


async def test_a_websocket_watcher_that_disconnects_mid_job_resumes_without_gap_or_repeat(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    job_id = await insert_job(records.sessions, spec)
    events = job_events(job_id, spec.location.project, 30)
    async with pipeline(pipeline_settings) as bus, aiohttp.ClientSession() as client:
        watcher = await connect(client, pipeline_settings)
        ack = await watcher.subscribe(job_id=str(job_id), since=0)
        assert ack["type"] == "subscribed"
        await bus.publish_all(events[:15])
        # Given a watcher that took the first ten entries and went away
        first = await watcher.events_until(lambda f: f["seq"] >= 10)
        await watcher.close()
        # When the job goes on while it is away and while it comes back
        rest = publish_in_background(bus, records, events[15:], recorded_first=len(events) - 1)
        watcher = await connect(client, pipeline_settings)
        await watcher.subscribe(job_id=str(job_id), since=first[-1]["seq"])
        second = await watcher.events_until(lambda f: f["seq"] >= len(events))
        await rest
        await watcher.close()

    # Then together it saw every entry of the ledger exactly once, in order
    seqs = [f["seq"] for f in first + second]
    ledger = [e.seq for e in await records.events(job_id)]
    assert seqs == ledger == list(range(1, len(events) + 1))
    assert second[-1]["event_type"] == "job.archived"


async def test_an_sse_watcher_that_disconnects_mid_job_resumes_from_last_event_id(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    job_id = await insert_job(records.sessions, spec)
    events = job_events(job_id, spec.location.project, 30)
    url = notifier_url(pipeline_settings, f"/v1/jobs/{job_id}/events")
    async with pipeline(pipeline_settings) as bus, aiohttp.ClientSession() as client:
        await bus.publish_all(events[:15])
        first: list[SseEvent] = []
        async for event in sse(client, url):
            first.append(event)
            if int(event.id or 0) >= 10:
                break  # the reader goes away mid-job
        rest = publish_in_background(bus, records, events[15:], recorded_first=len(events) - 1)
        second: list[SseEvent] = []
        async for event in sse(client, url, last_event_id=first[-1].id):
            second.append(event)
        await rest

    assert second[-1].event == "end" and second[-1].data["state"] == "completed"
    received = [e for e in first + second if e.event.startswith("job.")]
    assert [int(e.id or 0) for e in received] == [e.data["seq"] for e in received]
    assert [e.data["seq"] for e in received] == list(range(1, len(events) + 1))


async def test_a_project_stream_resumes_from_its_last_event_id_and_sees_only_its_project(
    pipeline_settings: Settings, records: Records
) -> None:
    here, there = spec_for(project="here"), spec_for(project="there")
    jobs = [await insert_job(records.sessions, here) for _ in range(2)]
    stranger = await insert_job(records.sessions, there)
    url = notifier_url(pipeline_settings, "/v1/projects/here/events")
    streams = [job_events(j, "here", 12) for j in jobs]
    interleaved: list[Event] = [e for pair in zip(*streams, strict=True) for e in pair]
    interleaved += job_events(stranger, "there", 3)
    async with pipeline(pipeline_settings) as bus, aiohttp.ClientSession() as client:
        first: list[SseEvent] = []
        async for event in sse(client, url):
            first.append(event)
            if event.event == "id":  # the stream's starting point arrived: publish now
                await bus.publish_all(interleaved[:16])
            elif len(first) >= 8:
                break
        rest = publish_in_background(bus, records, interleaved[16:], recorded_first=5)
        second: list[SseEvent] = []
        total = sum(len(s) for s in streams)
        seen = sum(1 for e in first if e.event.startswith("job."))
        async for event in sse(client, url, last_event_id=first[-1].id):
            second.append(event)
            seen += event.event.startswith("job.")
            if seen == total:
                break
        await rest

    received = [e for e in first + second if e.event.startswith("job.")]
    pairs = [(e.data["job_id"], e.data["seq"]) for e in received]
    # Every entry of both jobs of the project, once each, in ledger position (commit) order
    ledger = sorted([e for j in jobs for e in await records.events(j)], key=lambda e: e.position)
    assert pairs == [(str(e.job_id), e.seq) for e in ledger]
    assert [int(e.id or 0) for e in received] == [e.position for e in ledger]
    assert all(e.data["project"] == "here" for e in received)


async def test_a_project_subscription_sees_only_its_project(
    pipeline_settings: Settings, records: Records
) -> None:
    mine, other = spec_for(project="mine"), spec_for(project="other")
    job_id = await insert_job(records.sessions, mine)
    other_id = await insert_job(records.sessions, other)
    async with pipeline(pipeline_settings) as bus, aiohttp.ClientSession() as client:
        watcher = await connect(client, pipeline_settings)
        ack = await watcher.subscribe(project="mine")
        assert ack["type"] == "subscribed" and isinstance(ack["since"], int)
        for a, b in zip(
            job_events(other_id, "other", 5), job_events(job_id, "mine", 5), strict=True
        ):
            await bus.publish_all([a, b])
        frames = await watcher.events_until(lambda f: f["seq"] >= 8)
        await watcher.close()
    assert {f["project"] for f in frames} == {"mine"}
    assert [f["seq"] for f in frames] == list(range(1, 9))
    assert [f["cursor"] for f in frames] == sorted(f["cursor"] for f in frames)


async def test_a_lost_live_copy_is_read_from_the_ledger_before_the_next_entry_is_sent(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    project = spec.location.project
    job_id = await insert_job(records.sessions, spec)
    async with pipeline(pipeline_settings) as bus, aiohttp.ClientSession() as client:
        watcher = await connect(client, pipeline_settings)
        await watcher.subscribe(job_id=str(job_id))
        await bus.publish(accepted(job_id, spec))
        assert [f["seq"] for f in await watcher.events_until(lambda f: True)] == [1]
        # Given two entries recorded whose live copies never left (as if the archiver
        # died between commit and publish and its redelivery was lost)
        async with records.sessions() as session, session.begin():
            for seq in (2, 3):
                event = progress(job_id, project, seq)
                session.add(
                    JobEvent(
                        job_id=job_id,
                        seq=seq,
                        event_id=event.event_id,
                        event_type=event.event_type.value,
                        project_slug=project,
                        occurred_at=event.occurred_at,
                        recorded_at=datetime.now(UTC),
                        state="rendering",
                        payload=event.model_dump(mode="json"),
                    )
                )
            await session.execute(
                update(JobState)
                .where(JobState.job_id == job_id)
                .values(last_seq=3, state="rendering")
            )
        # When the next entry arrives live
        await bus.publish(archived(job_id, project))
        frames = await watcher.events_until(lambda f: f["seq"] >= 4)
        await watcher.close()
    # Then the watcher got the missing two first, in order
    assert [(f["seq"], f["event_type"]) for f in frames] == [
        (2, "job.progress"),
        (3, "job.progress"),
        (4, "job.archived"),
    ]


async def test_an_sse_stream_of_a_finished_job_replays_it_and_ends(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    job_id = await insert_job(records.sessions, spec)
    url = notifier_url(pipeline_settings, f"/v1/jobs/{job_id}/events")
    # A history longer than a watcher's buffer still arrives whole (replay waits for room)
    small = NotifierOptions(watcher_buffer=2)
    async with pipeline(pipeline_settings, small) as bus, aiohttp.ClientSession() as client:
        events = job_events(job_id, spec.location.project, 2)
        await publish_in_background(bus, records, events, recorded_first=len(events) - 1)
        whole = [e async for e in sse(client, url)]
        after_end = [e async for e in sse(client, url, last_event_id=whole[-2].id)]
    assert sorted(e.event for e in whole[:-2]) == [
        "job.accepted", "job.progress", "job.progress", "job.started"
    ]  # fmt: skip
    assert [e.event for e in whole[-2:]] == ["job.archived", "end"]
    assert [int(e.id or 0) for e in whole[:-1]] == [1, 2, 3, 4, 5]
    assert [e.event for e in after_end] == ["end"]
