"""Well-formed events for a job ingest never recorded (forged, or from another system).

They are valid by schema, so only a check against the ``jobs`` table can refuse them:
the renderer parks a forged job.accepted without rendering it, and the archiver parks a
forged job.rendered before writing anything into the asset root.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.events import JobAccepted, JobRendered, JobSpec, Producer, derived_id
from shared.settings import Settings
from tests.support.amqp import drain, publish_raw, publish_submission
from tests.support.chaos_campaign import robust_pipeline
from tests.support.chaos_checks import dead_letter_queues
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def shot() -> dict[str, Any]:
    return {
        "request_id": f"forge-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "forged",
        "shot": "shot-001",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "the genuine article",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
    }


async def _genuine(settings: Settings, records: Records) -> JobRendered:
    """A real job's job.rendered (its image exists on the backend)."""
    job = await publish_submission(settings, shot())
    await eventually(lambda: records.final_state(job.job_id), timeout=60, what="genuine job")
    rendered = next(e for e in await records.events(job.job_id) if e.event_type == "job.rendered")
    return JobRendered.model_validate(rendered.payload)


async def _outcome(
    settings: Settings, fake: uuid.UUID, dlq: str, asset_root: Path, *, timeout: float = 45
) -> tuple[list[dict[str, Any]], list[str]]:
    """Wait until the forged message is parked, or until files of the fake job appear."""
    deadline = time.monotonic() + timeout
    parked: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        parked += [h for _, h in await drain(settings, dlq) if h.get("job_id") == str(fake)]
        written = [str(p) for p in asset_root.rglob("*") if str(fake) in str(p) and p.is_file()]
        if parked or written:
            return parked, written
        await asyncio.sleep(0.3)
    return parked, []


async def test_a_forged_job_accepted_is_parked_and_never_rendered(
    pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    async with robust_pipeline(settings, tmp_path, render_seconds=0.05, simulators=1) as pipeline:
        genuine = await _genuine(pipeline.settings, records)
        fake = uuid.uuid4()
        forged = JobAccepted(
            event_id=derived_id(fake, "accepted"),
            job_id=fake,
            correlation_id="forged",
            producer=Producer.INGEST,
            project=genuine.project,
            spec=JobSpec.model_validate(genuine.spec.model_dump()),
        )
        await publish_raw(
            pipeline.settings,
            forged.model_dump_json().encode(),
            routing_key=forged.routing_key(),
            headers=forged.headers(),
        )
        parked, written = await _outcome(
            pipeline.settings,
            fake,
            dead_letter_queues(pipeline.settings)["renderer"],
            Path(pipeline.settings.asset_root),
        )
        rendered = list((tmp_path / "comfyui-0" / "output" / "jobs" / str(fake)).rglob("*.png"))
        assert not written, f"files archived for a job nobody submitted: {written}"
        assert not rendered, f"a job nobody submitted was rendered: {rendered}"
        assert parked and parked[0].get("x-park-reason"), "not parked with a reason"


async def test_a_forged_job_rendered_writes_nothing(
    pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    async with robust_pipeline(settings, tmp_path, render_seconds=0.05, simulators=1) as pipeline:
        genuine = await _genuine(pipeline.settings, records)
        fake = uuid.uuid4()
        forged = genuine.model_copy(
            update={"job_id": fake, "event_id": derived_id(fake, "rendered", 1)}
        )
        await publish_raw(
            pipeline.settings,
            forged.model_dump_json().encode(),
            routing_key=forged.routing_key(),
            headers=forged.headers(),
        )
        parked, written = await _outcome(
            pipeline.settings,
            fake,
            dead_letter_queues(pipeline.settings)["archiver.rendered"],
            Path(pipeline.settings.asset_root),
        )
        assert not written, f"files archived for a job nobody submitted: {written}"
        assert parked and parked[0].get("x-park-reason"), "not parked with a reason"


POISON = {
    "application/json that is not JSON": (b"{", "application/json"),
    "JSON nested 5000 deep": (b"[" * 5000 + b"]" * 5000, None),
    "an integer of 5000 digits": (b'{"seq": ' + b"1" * 5000 + b"}", None),
}


@pytest.mark.parametrize("poison", sorted(POISON))
async def test_poison_bodies_on_downstream_queues_are_parked(
    poison: str, pipeline_settings: Settings, seeded: Path, tmp_path: Path
) -> None:
    import aio_pika

    body, content_type = POISON[poison]
    settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    async with robust_pipeline(settings, tmp_path, render_seconds=0.05, simulators=1) as pipeline:
        queues = dead_letter_queues(pipeline.settings)
        marks = {
            "job.accepted": ("renderer", "archiver.ledger"),
            "job.rendered": ("archiver.rendered", "archiver.ledger"),
        }
        connection = await aio_pika.connect(pipeline.settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(pipeline.settings.exchange)
            for kind in marks:
                await exchange.publish(
                    aio_pika.Message(body, content_type=content_type, headers={"x-poison": kind}),
                    routing_key=f"{kind}.neon-skies",
                )
        wanted = {(kind, queue) for kind, names in marks.items() for queue in names}
        got: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 8
        while got != wanted and time.monotonic() < deadline:
            for name, queue in queues.items():
                for _, headers in await drain(pipeline.settings, queue):
                    if headers.get("x-poison") and headers.get("x-park-reason"):
                        got.add((str(headers["x-poison"]), name))
            await asyncio.sleep(0.5)
        assert got == wanted, f"not parked: {sorted(wanted - got)}"
