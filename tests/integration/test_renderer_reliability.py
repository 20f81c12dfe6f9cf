"""The renderer never loses a job: retries, dead-letters, crashes, dead backends,
priorities and cancellation, on the real broker with simulator backends."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.events import JobCancelRequested, Producer
from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import drain, publish_raw, publish_submission
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def shot(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": f"rel-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
        **overrides,
    }


async def final(records: Records, job_id: uuid.UUID, timeout: float = 60) -> str:
    return await eventually(
        lambda: records.final_state(job_id), timeout=timeout, what=f"final state of {job_id}"
    )


async def events(records: Records, job_id: uuid.UUID) -> list[str]:
    return await records.event_types(job_id)


async def sim_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as client, client.get(f"{url}/_sim/stats") as reply:
        stats: dict[str, Any] = await reply.json()
        return stats


def renderer_dlq(settings: Settings) -> str:
    return Topology.from_settings(settings).pipeline_specs(settings)["renderer.accepted"].dlq


async def cancel(settings: Settings, job_id: uuid.UUID) -> None:
    event = JobCancelRequested(
        job_id=job_id, correlation_id="test", producer=Producer.CLI, project="neon-skies"
    )
    await publish_raw(
        settings,
        event.model_dump_json().encode(),
        routing_key=event.routing_key(),
        headers=event.headers(),
    )


async def rendering(records: Records, job_id: uuid.UUID) -> str | None:
    row = await records.state_row(job_id)
    return row.backend if row is not None and row.state == "rendering" else None


@pytest.fixture
def settings(pipeline_settings: Settings, seeded: Path) -> Settings:
    return pipeline_settings.model_copy(update={"reference_root": seeded})


async def test_renderer_retries_transient_failures_then_succeeds(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    # Given a backend whose next two submissions answer 500
    async with pipeline_processes(
        settings, tmp_path, sim_args=["--fault", "http_500:count=2"]
    ) as pipeline:
        job = await publish_submission(pipeline.settings, shot())
        # Then the job is retried twice and completes on the third attempt
        assert await final(records, job.job_id) == "completed"
        kinds = await events(records, job.job_id)
        assert kinds.count("job.retrying") == 2
        state = await records.state_row(job.job_id)
        assert state is not None and state.attempt == 3
        assert len(await records.assets(job.job_id)) == 1


async def test_permanent_validation_failure_fails_once_with_comfyuis_node_error_text(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    async with pipeline_processes(
        settings, tmp_path, sim_args=["--fault", "validation_error:count=inf"]
    ) as pipeline:
        job = await publish_submission(pipeline.settings, shot())
        assert await final(records, job.job_id) == "failed"
        ledger = await records.events(job.job_id)
        assert "job.retrying" not in [e.event_type for e in ledger]
        failed = next(e for e in ledger if e.event_type == "job.failed")
        assert failed.payload["error_kind"] == "validation"
        assert failed.payload["details"], "ComfyUI's node errors must be reported"
        assert any("node" in line for line in failed.payload["details"])
        parked = await eventually(lambda: drain(pipeline.settings, renderer_dlq(pipeline.settings)))
        assert len(parked) == 1
        assert "validation" in str(parked[0][1]["x-park-reason"])


async def test_txt2img_naming_a_missing_checkpoint_fails_before_submission_naming_the_allowed_values(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    # The simulator has no models (like a fresh ComfyUI): the object_info check names it.
    async with pipeline_processes(settings, tmp_path) as pipeline:
        job = await publish_submission(
            pipeline.settings,
            shot(template="txt2img", params={"checkpoint": "sd15-anime.safetensors"}),
        )
        assert await final(records, job.job_id) == "failed"
        failed = next(e for e in await records.events(job.job_id) if e.event_type == "job.failed")
        assert "sd15-anime.safetensors" in " ".join(failed.payload["details"])
        assert (await sim_stats(pipeline.settings.comfyui_urls[0]))["prompts_run"] == 0


async def test_renderer_sigkilled_mid_render_completes_the_job_exactly_once(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    async with pipeline_processes(settings, tmp_path, render_seconds=3.0) as pipeline:
        job = await publish_submission(pipeline.settings, shot())
        await eventually(lambda: rendering(records, job.job_id), what="rendering")
        # When the renderer is killed mid-render and comes back
        await pipeline.kill("renderer")
        await pipeline.start("renderer")
        # Then the job completes, rendered once on the backend and archived once
        assert await final(records, job.job_id) == "completed"
        outputs = list(
            (tmp_path / "comfyui-0" / "output" / "jobs" / str(job.job_id)).rglob("*.png")
        )
        assert len(outputs) == 1, outputs
        assert len(await records.assets(job.job_id)) == 1
        assert (await sim_stats(pipeline.settings.comfyui_urls[0]))["prompts_run"] == 1


async def test_a_backend_killed_mid_job_leaves_the_job_to_finish_on_another(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    async with pipeline_processes(settings, tmp_path, render_seconds=3.0, simulators=2) as pipeline:
        job = await publish_submission(pipeline.settings, shot())
        backend = await eventually(lambda: rendering(records, job.job_id), what="rendering")
        index = pipeline.settings.comfyui_urls.index(backend)
        await pipeline.kill(f"comfyui-{index}")
        assert await final(records, job.job_id, timeout=90) == "completed"
        state = await records.state_row(job.job_id)
        assert state is not None and state.backend != backend
        assert "job.retrying" in await events(records, job.job_id)


async def test_a_high_priority_job_overtakes_a_backlog(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    one_slot = settings.model_copy(update={"backend_slots": 1})
    # Renders long enough that the urgent job's trip through ingest and the band hop
    # never races them, even on a loaded machine.
    async with pipeline_processes(one_slot, tmp_path, render_seconds=1.0) as pipeline:
        backlog = [await publish_submission(pipeline.settings, shot(priority=0)) for _ in range(6)]

        # Ingest judges the backlog concurrently, so any of it may be rendered first.
        async def backlog_started() -> int:
            return sum([await rendering(records, job.job_id) is not None for job in backlog])

        await eventually(backlog_started, what="backlog started")
        urgent = await publish_submission(pipeline.settings, shot(priority=9))
        jobs = [*backlog, urgent]
        for job in jobs:
            assert await final(records, job.job_id) == "completed"
        started = []
        for job in jobs:
            row = await records.state_row(job.job_id)
            assert row is not None and row.started_at is not None
            started.append((row.started_at, job.job_id))
        # Render order (the renderer's job.started), not archive order, which also
        # depends on how the archiver interleaves its queue.
        order = [job_id for _, job_id in sorted(started)]
        # At most the render already running and the one already handed to the backend
        # start before it; everything else in the backlog waits.
        assert order.index(urgent.job_id) <= 2, order.index(urgent.job_id)


async def test_cancelling_a_pending_and_a_running_job(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    one_slot = settings.model_copy(update={"backend_slots": 1})
    async with pipeline_processes(one_slot, tmp_path, render_seconds=4.0) as pipeline:
        running = await publish_submission(pipeline.settings, shot())
        await eventually(lambda: rendering(records, running.job_id), what="first job rendering")
        pending = await publish_submission(pipeline.settings, shot())
        bystander = await publish_submission(pipeline.settings, shot())
        await asyncio.sleep(0.5)
        await cancel(pipeline.settings, pending.job_id)
        await cancel(pipeline.settings, running.job_id)
        assert await final(records, pending.job_id) == "cancelled"
        assert await final(records, running.job_id) == "cancelled"
        # The job nobody cancelled is not disturbed
        assert await final(records, bystander.job_id) == "completed"
        stages = {}
        for job in (pending, running):
            cancelled = next(
                e for e in await records.events(job.job_id) if e.event_type == "job.cancelled"
            )
            stages[job.job_id] = cancelled.payload["stage"]
        assert stages[running.job_id] == "running"
        assert stages[pending.job_id] in ("pending", "queued")
        assert await records.assets(running.job_id) == []


async def test_a_duplicate_job_accepted_during_the_render_renders_once(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    async with pipeline_processes(settings, tmp_path, render_seconds=2.0) as pipeline:
        job = await publish_submission(pipeline.settings, shot())
        await eventually(lambda: rendering(records, job.job_id), what="rendering")
        # When the same job.accepted arrives again (a resubmission, a replay after a crash)
        accepted = next(
            e for e in await records.events(job.job_id) if e.event_type == "job.accepted"
        )
        body = json.dumps(accepted.payload).encode()
        await publish_raw(
            pipeline.settings, body, routing_key=f"job.accepted.{accepted.project_slug}"
        )
        # Then the job completes with one render and one asset
        assert await final(records, job.job_id) == "completed"
        assert (await sim_stats(pipeline.settings.comfyui_urls[0]))["prompts_run"] == 1
        assert len(await records.assets(job.job_id)) == 1
