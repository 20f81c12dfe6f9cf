"""1,000 WebSocket watchers on one notifier, and one that stalls without slowing them."""

from __future__ import annotations

import asyncio
import resource
import secrets
import socket
import uuid
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from services.archiver.main import create_app as archiver_app
from services.notifier.config import NotifierOptions
from services.notifier.main import build as build_notifier
from shared.events import Event, JobRetrying, Producer
from shared.settings import Settings
from tests.support.archive_jobs import (
    accepted,
    archived,
    envelope,
    insert_job,
    progress,
    publisher,
    spec_for,
    started,
)
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually
from tests.support.watchers import WsWatcher, connect, notifier_url

pytestmark = pytest.mark.integration

WATCHERS = 1000
#: A deliberately small per-watcher buffer, so the stalled one overflows soon.
BUFFER = 32


def enough_file_descriptors(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        pytest.skip(f"needs {needed} file descriptors")


def overflows() -> float:
    return REGISTRY.get_sample_value("anime_watcher_overflows_total", {"transport": "ws"}) or 0.0


def ws_gauge() -> float:
    return REGISTRY.get_sample_value("anime_ws_watchers") or 0.0


def tiny_receive_buffer(addr_info: Any) -> socket.socket:
    """A client socket that buffers little, as a phone on a bad network would."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def fat_retry(job_id: uuid.UUID, project: str, n: int) -> JobRetrying:
    return JobRetrying(
        **envelope(job_id, project, Producer.RENDERER),
        attempt=n,
        next_attempt=n + 1,
        delay_seconds=1.0,
        reason=secrets.token_hex(64 * 1024),  # 128 KiB nobody else subscribed to
    )


async def read_job(watcher: WsWatcher, last_seq: int) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < last_seq:
        frame = await watcher.frame(timeout=60)
        assert frame["type"] == "event", frame
        seqs.append(frame["seq"])
    return seqs


async def test_a_thousand_watchers_get_every_event_while_a_stalled_one_is_cut_off(
    pipeline_settings: Settings, records: Records
) -> None:
    enough_file_descriptors(2 * WATCHERS + 512)
    options = NotifierOptions(watcher_buffer=BUFFER, overflow_grace_seconds=1.0)
    notifier = build_notifier(pipeline_settings, options)
    crowd, flood = spec_for(project="crowd"), spec_for(project="flood")
    job_id = await insert_job(records.sessions, crowd)
    flood_id = await insert_job(records.sessions, flood)
    events: list[Event] = [
        accepted(job_id, crowd),
        started(job_id, "crowd"),
        *(progress(job_id, "crowd", n) for n in range(1, 21)),
        archived(job_id, "crowd"),
    ]
    baseline_overflows, baseline_gauge = overflows(), ws_gauge()
    connector = aiohttp.TCPConnector(limit=0)
    stalled_connector = aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)
    async with (
        running(archiver_app(pipeline_settings)),
        running(notifier.app),
        publisher(pipeline_settings) as bus,
        aiohttp.ClientSession(connector=connector) as client,
        aiohttp.ClientSession(connector=stalled_connector) as stalled_client,
    ):
        flooded = 0

        async def flood_relayed(count: int) -> None:
            """Publish ``count`` fat events to the flood project; wait until relayed."""
            nonlocal flooded
            await bus.publish_all(
                [fat_retry(flood_id, "flood", flooded + n) for n in range(1, count + 1)]
            )
            flooded += count

            async def relayed() -> bool:
                ledger = await records.events(flood_id)
                tailer = notifier.hub.tailers.get("flood")
                return (
                    len(ledger) == flooded
                    and tailer is not None
                    and (tailer.position >= ledger[-1].position)
                )

            await eventually(relayed, what="flood relayed")

        # Given a thousand watchers of one job ...
        async def watcher() -> WsWatcher:
            w = await connect(client, pipeline_settings)
            assert (await w.subscribe(job_id=str(job_id)))["type"] == "subscribed"
            return w

        crowd_watchers: list[WsWatcher] = []
        for _ in range(WATCHERS // 100):
            crowd_watchers += await asyncio.gather(*(watcher() for _ in range(100)))
        # ... and one more that watches it and a busy project, then stops reading
        stalled = await connect(stalled_client, pipeline_settings)
        await stalled.subscribe(job_id=str(job_id))
        await stalled.subscribe(project="flood")
        assert ws_gauge() - baseline_gauge == WATCHERS + 1
        (stuck,) = [w for w in notifier.hub.watchers if len(w.streams) == 2]
        # ... so stuck that its socket is full and entries queue up for it
        while stuck.queue.qsize() < 4:
            await flood_relayed(4)
        assert not stuck.overflowed.is_set()

        # When the job runs
        readers = [asyncio.create_task(read_job(w, len(events))) for w in crowd_watchers]
        await bus.publish_all(events)
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=60)

        # Then every one of the thousand got every entry of the job once, in order,
        # while the stuck watcher was still connected with the job's entries unsent
        assert len(results) == WATCHERS
        assert all(seqs == list(range(1, len(events) + 1)) for seqs in results)
        assert stuck in notifier.hub.watchers and not stuck.overflowed.is_set()

        # And when its buffer fills, it alone is overflowed and disconnected
        while not stuck.overflowed.is_set():
            await flood_relayed(8)
        assert overflows() - baseline_overflows == 1
        assert await eventually(lambda: _true(ws_gauge() - baseline_gauge == WATCHERS))
        assert await _drain(stalled) in {"overflow", "closed"}
        async with client.get(notifier_url(pipeline_settings, "/metrics")) as response:
            assert f"anime_ws_watchers {float(WATCHERS + baseline_gauge)}" in await response.text()
        await asyncio.gather(*(w.close() for w in crowd_watchers))


async def _true(value: bool) -> bool:
    return value


async def _drain(watcher: WsWatcher) -> str:
    """Read a stalled socket to its end: ``overflow`` if the notice got through."""
    while True:
        try:
            frame = await watcher.frame(timeout=30)
        except (ConnectionError, aiohttp.ClientError):
            return "closed"
        if frame["type"] == "overflow":
            return "overflow"
