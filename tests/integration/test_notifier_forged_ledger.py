"""A forged ``ledger.*`` message never reaches a watcher nor silences the real events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aio_pika
import aiohttp
import pytest
from prometheus_client import REGISTRY

from services.archiver.main import create_app as archiver_app
from services.notifier.main import build as build_notifier
from shared.events import EventType, LedgerEntry
from shared.settings import Settings
from tests.support.archive_jobs import (
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


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("anime_ledger_relays_dropped_total", {"reason": reason}) or 0.0


async def publish_raw(settings: Settings, entry: LedgerEntry) -> None:
    """What anyone allowed to publish to the exchange can send."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        await exchange.publish(
            aio_pika.Message(entry.model_dump_json().encode(), content_type="application/json"),
            routing_key=entry.routing_key(),
        )


async def test_a_forged_ledger_entry_ahead_of_a_job_is_dropped_and_every_real_one_arrives(
    pipeline_settings: Settings, records: Records
) -> None:
    settings = pipeline_settings
    spec = spec_for()
    project = spec.location.project
    job_id = await insert_job(records.sessions, spec)
    forged_id = uuid.uuid4()
    forged = LedgerEntry(
        seq=4,  # ahead of the ledger, which holds 2 entries when it arrives
        job_id=job_id,
        project=project,
        event_type=EventType.PROGRESS,
        recorded_at=datetime.now(UTC),
        state="completed",  # and it would end an SSE stream
        event={"event_type": "job.progress", "event_id": str(forged_id), "percent": 99.0},
    )
    genuine = [
        accepted(job_id, spec),
        started(job_id, project),
        *(progress(job_id, project, n) for n in range(1, 6)),
        archived(job_id, project),
    ]
    url = notifier_url(settings, f"/v1/jobs/{job_id}/events")
    async with (
        running(archiver_app(settings)),
        running(build_notifier(settings).app),
        publisher(settings) as bus,
        aiohttp.ClientSession() as client,
    ):
        # Given a WebSocket watcher of the job, one of every event, and an SSE reader
        watcher = await connect(client, settings)
        assert (await watcher.subscribe(job_id=str(job_id), since=0))["type"] == "subscribed"
        everything = await connect(client, settings)
        assert (await everything.subscribe(events="job.#"))["type"] == "subscribed"
        read: list[SseEvent] = []

        async def read_sse() -> None:
            async for event in sse(client, url):
                read.append(event)

        reader = asyncio.create_task(read_sse())
        await bus.publish_all(genuine[:2])
        first = await watcher.events_until(lambda f: f["seq"] >= 2)
        await eventually(lambda: _async(len(read) >= 2), what="the SSE reader got two entries")

        # When a forged entry ahead of the ledger is published
        before = dropped("not_in_ledger")
        await publish_raw(settings, forged)
        await eventually(
            lambda: _async(dropped("not_in_ledger") > before), what="the forgery was dropped"
        )
        # and the real events go on
        await bus.publish_all(genuine[2:])
        rest = await watcher.events_until(lambda f: f["seq"] >= len(genuine))
        seen = await everything.events_until(
            lambda f: f["event_type"] == "job.archived" and f["job_id"] == str(job_id)
        )
        await asyncio.wait_for(reader, timeout=30)
        await watcher.close()
        await everything.close()

    ledger = await records.events(job_id)
    expected = list(range(1, len(genuine) + 1))
    assert [e.seq for e in ledger] == expected
    # Then every watcher got every genuine entry in order, and never the forgery
    assert [f["seq"] for f in first + rest] == expected
    assert [f["seq"] for f in seen if f["job_id"] == str(job_id)] == expected
    entries = [e for e in read if e.event.startswith("job.")]
    assert [e.data["seq"] for e in entries] == expected
    assert read[-1].event == "end" and read[-1].data["seq"] == len(genuine)
    for frame in [*first, *rest, *seen, *(e.data for e in entries)]:
        assert frame["event"]["event_id"] != str(forged_id)
    assert [str(e.event_id) for e in ledger] == [f["event"]["event_id"] for f in first + rest]


async def _async(value: bool) -> bool:
    return value
