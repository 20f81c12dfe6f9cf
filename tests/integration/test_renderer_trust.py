"""The database is the truth, a message a claim: a forged ``job.accepted`` for a genuine job
is parked and never rendered, and a real job renders with the spec of its jobs row.

Real broker and database; the e2e tests run the four services and a simulator."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.db.models import Job, JobState
from shared.db.session import make_engine, make_sessionmaker
from shared.events import JobSpec
from shared.job_facts import JobFactsReader
from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import drain, publish_raw, publish_submission
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.wait import eventually
from tests.unit.test_renderer_trust import spec

pytestmark = [pytest.mark.integration]

NORMAL_EVENTS = {"job.accepted", "job.started", "job.progress", "job.rendered", "job.archived"}


def shot(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": f"trust-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
        **overrides,
    }


def renderer_dlq(settings: Settings) -> str:
    return Topology.from_settings(settings).pipeline_specs(settings)["renderer.accepted"].dlq


async def final(records: Records, job_id: uuid.UUID) -> str:
    return await eventually(
        lambda: records.final_state(job_id), timeout=60, what=f"final state of {job_id}"
    )


async def rendering(records: Records, job_id: uuid.UUID) -> str | None:
    row = await records.state_row(job_id)
    return row.backend if row is not None and row.state == "rendering" else None


async def sim_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as client, client.get(f"{url}/_sim/stats") as reply:
        stats: dict[str, Any] = await reply.json()
        return stats


@pytest.fixture
def settings(pipeline_settings: Settings, seeded: Path) -> Settings:
    return pipeline_settings.model_copy(update={"reference_root": seeded})


def forge(genuine: dict[str, Any], attacker_url: str) -> dict[str, Any]:
    """The genuine job.accepted with the attacker's template and reference."""
    body = copy.deepcopy(genuine)
    body["spec"]["template"] = "txt2img-reference"
    evil = b"not what ingest stored"
    body["spec"]["characters"][0]["references"] = [
        {
            "sha256": hashlib.sha256(evil).hexdigest(),
            "kind": "face",
            "weight": 1.0,
            "mime": "image/png",
            "url": attacker_url,
        }
    ]
    return body


async def parked(settings: Settings) -> list[tuple[bytes, dict[str, Any]]]:
    return await drain(settings, renderer_dlq(settings))


@pytest.mark.e2e
async def test_a_forged_job_accepted_for_an_in_flight_job_is_parked_and_never_fetched(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    # An attacker's server, recording every request it gets
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(body=b"not what ingest stored", content_type="image/png")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with (
        TestServer(app) as attacker,
        pipeline_processes(settings, tmp_path, render_seconds=3.0) as pipeline,
    ):
        job = await publish_submission(pipeline.settings, shot())
        await eventually(lambda: rendering(records, job.job_id), what="rendering")
        genuine = next(
            e for e in await records.events(job.job_id) if e.event_type == "job.accepted"
        )
        # When someone holding ingest's own broker credentials (the one principal that
        # may publish job.accepted) re-publishes it with another spec, as a second attempt
        body = forge(genuine.payload, str(attacker.make_url("/reference.png")))
        headers = {"job_id": str(job.job_id), "event_type": "job.accepted", "x-attempt": 2}
        routing_key = f"job.accepted.{genuine.project_slug}"
        as_ingest = pipeline.settings
        if pipeline.broker_urls is not None:
            as_ingest = as_ingest.model_copy(update={"amqp_url": pipeline.broker_urls["ingest"]})
        await publish_raw(
            as_ingest, json.dumps(body).encode(), routing_key=routing_key, headers=headers
        )
        # Then it is parked, naming what disagrees with the job row...
        letters = await eventually(lambda: parked(pipeline.settings), what="forged message parked")
        assert len(letters) == 1
        letter_body, letter_headers = letters[0]
        assert json.loads(letter_body)["spec"]["template"] == "txt2img-reference"
        reason = str(letter_headers["x-park-reason"])
        assert reason.startswith("forged:") and "spec.template" in reason, reason
        # ...and the attacker's URL was never asked for
        assert seen == []
        # The genuine job finishes as it would have: one render, one attempt, nothing else
        assert await final(records, job.job_id) == "completed"
        ledger = await records.events(job.job_id)
        assert {e.event_type for e in ledger} == NORMAL_EVENTS
        assert all(e.payload.get("attempt", 1) == 1 for e in ledger)
        state = await records.state_row(job.job_id)
        assert state is not None and state.attempt == 1
        assert (await sim_stats(pipeline.settings.comfyui_urls[0]))["prompts_run"] == 1
        assert len(await records.assets(job.job_id)) == 1

        # A forgery of a job that already ended is parked too (not taken for a replay)
        await publish_raw(
            pipeline.settings, json.dumps(body).encode(), routing_key=routing_key, headers=headers
        )
        letters = await eventually(lambda: parked(pipeline.settings), what="second forgery")
        assert str(letters[0][1]["x-park-reason"]).startswith("forged:")
        assert seen == []
        assert len(await records.events(job.job_id)) == len(ledger)
        assert await records.state(job.job_id) == "completed"


@pytest.mark.e2e
async def test_a_job_renders_with_the_spec_of_its_row(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    async with pipeline_processes(settings, tmp_path) as pipeline:
        job = await publish_submission(pipeline.settings, shot(priority=7))
        assert await final(records, job.job_id) == "completed"
        row = await records.job(job.job_id)
        assert row is not None and row.spec is not None
        rendered = next(
            e for e in await records.events(job.job_id) if e.event_type == "job.rendered"
        )
        assert JobSpec.model_validate(rendered.payload["spec"]) == JobSpec.model_validate(row.spec)
        assert rendered.payload["correlation_id"] == row.correlation_id
        assert await parked(pipeline.settings) == []


def job_row(job_id: uuid.UUID, spec: dict[str, Any] | None, verdict: str) -> Job:
    return Job(
        id=job_id,
        request_id=f"facts-{job_id.hex[:12]}",
        request_hash=job_id.hex,
        correlation_id="corr-facts",
        project_slug="neon-skies",
        verdict=verdict,
        request={},
        spec=spec,
        submitted_via="http",
    )


async def test_job_facts_are_read_once_and_the_state_on_every_look(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    try:
        accepted, rejected, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        row_spec = spec()
        async with sessions() as session, session.begin():
            session.add(job_row(accepted, row_spec.model_dump(mode="json"), "accepted"))
            session.add(job_row(rejected, None, "rejected"))
        reader = JobFactsReader(sessions, cache_size=8)

        first = await reader.view(accepted)
        assert first.facts is not None and first.facts.spec == row_spec
        assert (first.facts.project, first.facts.correlation_id) == ("neon-skies", "corr-facts")
        assert (first.state, first.cancel_requested, reader.rows_read) == (None, False, 1)

        # The state is read again; the row is not
        async with sessions() as session, session.begin():
            session.add(JobState(job_id=accepted, state="rendering", last_seq=1))
        again = await reader.view(accepted)
        assert again.facts == first.facts
        assert (again.state, again.cancel_requested, reader.rows_read) == ("rendering", False, 1)

        # Only accepted jobs have facts, and they are not cached
        for job_id in (rejected, unknown, rejected):
            view = await reader.view(job_id)
            assert view.facts is None and view.state is None
        assert reader.rows_read == 4 and len(reader.cache) == 1
    finally:
        await engine.dispose()
