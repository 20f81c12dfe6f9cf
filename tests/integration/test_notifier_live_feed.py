"""A notifier replica takes live ledger copies only while somebody watches."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from services.archiver.main import create_app as archiver_app
from services.notifier.config import NotifierOptions
from services.notifier.main import build as build_notifier
from shared.settings import Settings
from tests.support.archive_jobs import accepted, insert_job, progress, publisher, spec_for, started
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually
from tests.support.watchers import connect

pytestmark = pytest.mark.integration


async def test_the_live_feed_is_bound_while_a_stream_is_open_and_unbound_after(
    pipeline_settings: Settings, records: Records
) -> None:
    settings = pipeline_settings
    spec = spec_for()
    project = spec.location.project
    job_a = await insert_job(records.sessions, spec)
    job_b = await insert_job(records.sessions, spec)
    notifier = build_notifier(
        settings, NotifierOptions(live_linger_seconds=0, job_resync_seconds=0.2)
    )
    live = notifier.hub.live
    assert live is not None
    async with (
        running(archiver_app(settings)),
        running(notifier.app),
        publisher(settings) as bus,
        aiohttp.ClientSession() as client,
    ):
        # Given a replica nobody watches: its queue is not bound, relays pass it by
        await bus.publish_all([accepted(job_a, spec), started(job_a, project)])
        await eventually(lambda: _count(records, job_a, 2), what="quiet job recorded")
        assert not live.bound and live.changes == 0

        # When a watcher subscribes, the feed is bound before its history is read
        watcher = await connect(client, settings)
        assert (await watcher.subscribe(job_id=str(job_b), since=0))["type"] == "subscribed"
        assert live.bound
        await bus.publish_all([accepted(job_b, spec), started(job_b, project)])
        await bus.publish(progress(job_b, project, 1))
        frames = await watcher.events_until(lambda f: f["seq"] >= 3)
        assert [f["seq"] for f in frames] == [1, 2, 3]
        await watcher.close()

        # Then, once nothing is watched (linger 0 here), it is unbound again
        await eventually(lambda: _value(not live.bound), what="feed unbound")
    assert live.changes == 2


async def _count(records: Records, job_id: uuid.UUID, count: int) -> bool:
    return len(await records.events(job_id)) >= count


async def _value(value: bool) -> bool:
    return value
