"""Ingest and the ledger on the real broker and database (no renderer involved)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.archiver.main import create_app as archiver_app
from services.ingest.main import create_app as ingest_app
from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import drain, publish_raw, publish_submission
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


def shot(**overrides: object) -> dict[str, object]:
    return {
        "request_id": f"req-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "rooftop-dusk",
        "shot": "shot-012",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        **overrides,
    }


async def test_kai_submitted_by_name_is_accepted_with_his_current_version(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    # Given ingest and the archiver's ledger running
    async with running(ingest_app(pipeline_settings)), running(archiver_app(pipeline_settings)):
        # When another system publishes a shot naming Kai without a version
        event = await publish_submission(pipeline_settings, shot())
        # Then the job is accepted and its row records Kai's current version (3)
        state = await eventually(lambda: records.state(event.job_id), what="job state")
        assert state == "accepted"
        job = await records.job(event.job_id)
        assert job is not None and job.verdict == "accepted"
        assert [(c["name"], c["version"]) for c in job.character_versions] == [("Kai Nakamura", 3)]
        assert job.spec is not None
        assert "kainakamura" in job.spec["composed_prompt"]
        assert await records.event_types(event.job_id) == ["job.accepted"]


async def test_unknown_character_is_rejected_with_the_closest_names(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    async with running(ingest_app(pipeline_settings)), running(archiver_app(pipeline_settings)):
        event = await publish_submission(
            pipeline_settings, shot(characters=[{"name": "Kai Nakamure"}])
        )
        assert await eventually(lambda: records.state(event.job_id)) == "rejected"
        job = await records.job(event.job_id)
        assert job is not None and job.problems
        problem = job.problems[0]
        assert problem["code"] == "unknown_character"
        assert "Kai Nakamura" in problem["suggestions"]


async def test_a_body_that_is_not_json_is_parked_in_ingests_dlq_with_the_reason(
    pipeline_settings: Settings, seeded: Path
) -> None:
    topology = Topology.from_settings(pipeline_settings)
    dlq = topology.dlq_name(topology.pipeline_specs(pipeline_settings)["ingest.submitted"].name)
    async with running(ingest_app(pipeline_settings)):
        await publish_raw(pipeline_settings, b"\xff\xfe this is not json")

        async def parked() -> list[tuple[bytes, dict[str, object]]]:
            return await drain(pipeline_settings, dlq)

        messages = await eventually(parked, what="parked message")
    body, headers = messages[0]
    assert body == b"\xff\xfe this is not json"
    assert "not UTF-8" in str(headers["x-park-reason"])
