"""The walking skeleton: one shot through four service processes and a ComfyUI simulator."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.archiver.pngmeta import JOB_CHUNK, read_text_chunks
from shared.settings import Settings
from tests.support.amqp import publish_submission
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def shot(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": f"e2e-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "rooftop-dusk",
        "shot": "shot-012",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        "params": {"width": 128, "height": 96, "batch_size": 1},
        **overrides,
    }


async def watch(
    settings: Settings, job_id: uuid.UUID, frames: list[dict[str, Any]], subscribed: asyncio.Event
) -> None:
    url = f"http://127.0.0.1:{settings.notifier_port}/v1/ws"
    async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
        await ws.send_json({"action": "subscribe", "job_id": str(job_id)})
        async for message in ws:
            frame = json.loads(message.data)
            if frame["type"] == "subscribed":
                subscribed.set()
            if frame["type"] == "event":
                frames.append(frame)
                if frame["state"] in ("completed", "failed", "rejected", "cancelled"):
                    return


async def test_one_shot_flows_through_four_service_processes(
    pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    async with pipeline_processes(settings, tmp_path) as pipeline:
        # Given a watcher subscribed to the job before it is submitted
        job_id = uuid.uuid4()
        frames: list[dict[str, Any]] = []
        subscribed = asyncio.Event()
        watcher = asyncio.create_task(watch(pipeline.settings, job_id, frames, subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)

        # When another system publishes the shot over AMQP
        await publish_submission(pipeline.settings, shot(), job_id=job_id)

        # Then the job completes …
        await asyncio.wait_for(watcher, 60)
        assert await records.state(job_id) == "completed"
        # … its PNG is on disk under the project's folder, with its metadata …
        (asset,) = await records.assets(job_id)
        path = Path(settings.asset_root) / asset.path
        assert asset.path.startswith(f"neon-skies/ep01/rooftop-dusk/shot-012/{job_id}/")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        chunks = read_text_chunks(path.read_bytes())
        record = json.loads(chunks[JOB_CHUNK])
        assert record["characters"] == [
            {
                "name": "Kai Nakamura",
                "version": 3,
                "version_id": record["characters"][0]["version_id"],
            }
        ]
        assert "EmptyImage" in chunks["prompt"]
        assert (asset.width, asset.height) == (128, 96)
        # … and the watcher saw the whole story, in order, without gaps.
        kinds = [f["event_type"] for f in frames]
        assert kinds[0] == "job.accepted" and kinds[-1] == "job.archived"
        assert {"job.started", "job.progress", "job.rendered"} <= set(kinds)
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert [e.event_type for e in await records.events(job_id)] == kinds


# The notifier has no durable queue on the job's path (watchers catch up from the ledger),
# so "a job waiting in its queue" applies to the other three.
@pytest.mark.parametrize("service", ["ingest", "renderer", "archiver"])
async def test_a_job_waiting_while_a_service_is_down_completes_when_it_is_back(
    service: str, pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    async with pipeline_processes(settings, tmp_path) as pipeline:
        # Given one service stopped
        await pipeline.stop(service)
        # When a shot is submitted while it is down (it waits in that service's queue)
        event = await publish_submission(pipeline.settings, shot())
        await asyncio.sleep(1.0)
        assert await records.final_state(event.job_id) is None
        # Then, once the service is back, the job completes and nothing was lost
        await pipeline.start(service)
        state = await eventually(
            lambda: records.final_state(event.job_id), timeout=60, what="final state"
        )
        assert state == "completed", pipeline.logs(service)[-3000:]
        assert len(await records.assets(event.job_id)) == 1
