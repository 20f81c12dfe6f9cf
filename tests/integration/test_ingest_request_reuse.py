"""Issue 12, item 7: a reused ``request_id`` under a new ``job_id``, and a missing ``job_id``.

A submitter watches the job id it chose. The same request published again under
another job id is answered on that id: a ``job.rejected`` naming the job that already
holds the request id. A ``job.submitted`` without a ``job_id`` has no id to answer on;
it is refused, parked in ingest's dead-letter queue with the reason.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from shared.topology import Topology
from tests.integration.test_ingest_submission import desk, kai_shot
from tests.support.amqp import drain
from tests.support.ingest_http import envelope, ingest, publish_body, publish_shot
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


async def test_the_same_request_under_a_new_job_id_is_rejected_on_that_id_naming_the_first_job(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    marker = kai_shot()
    async with desk(pipeline_settings, records) as d:
        first = await publish_shot(pipeline_settings, body)
        await d.events.event_for(first.job_id, "job.accepted")
        second = await publish_shot(pipeline_settings, body)
        rejected = await d.events.event_for(second.job_id, "job.rejected")
        # The same message again (same job id): the recorded rejection, not a new one.
        await publish_body(
            pipeline_settings,
            json.dumps(
                envelope(body, job_id=second.job_id, correlation_id=second.correlation_id)
            ).encode(),
            correlation_id=second.correlation_id,
            headers={"job_id": str(second.job_id), "event_type": "job.submitted"},
        )
        # A later request: once its verdict is out, both repeats were handled too.
        later = await publish_shot(pipeline_settings, marker)
        await d.events.event_for(later.job_id, "job.accepted")
        await d.events.settle()
        assert len(d.events.for_job(first.job_id)) == 1  # nothing re-published for it
        assert len(d.events.for_job(second.job_id)) == 1
    [problem] = rejected["problems"]
    assert (problem["field"], problem["code"]) == ("request_id", "duplicate_request")
    assert str(first.job_id) in problem["message"]
    assert problem["suggestions"] == [str(first.job_id)]
    assert rejected["request_id"] == body["request_id"]
    assert rejected["correlation_id"] == second.correlation_id
    jobs = {j.id: j.verdict for j in await records.jobs_by_request(body["request_id"])}
    assert jobs == {first.job_id: "accepted", second.job_id: "rejected"}


async def test_the_same_request_over_http_still_answers_with_the_existing_job(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    async with desk(pipeline_settings, records) as d:
        first = await publish_shot(pipeline_settings, body)
        await d.events.event_for(first.job_id, "job.accepted")
        reply = await d.client.post("/v1/jobs", body)
    assert reply.status == 200 and reply.json["job_id"] == str(first.job_id)


@pytest.mark.parametrize(
    ("job_id", "reason"), [(None, "missing_job_id"), ("not-a-uuid", "invalid_job_id")]
)
async def test_a_submission_without_a_usable_job_id_is_parked_with_the_reason(
    pipeline_settings: Settings,
    seeded: Path,
    records: Records,
    job_id: str | None,
    reason: str,
) -> None:
    topology = Topology.from_settings(pipeline_settings)
    dlq = topology.dlq_name(topology.pipeline_specs(pipeline_settings)["ingest.submitted"].name)
    body: dict[str, Any] = {
        "event_type": "job.submitted",
        "correlation_id": uuid.uuid4().hex,
        "producer": "external",
        **kai_shot(),
    }
    if job_id is not None:
        body["job_id"] = job_id
    async with ingest(pipeline_settings):
        await publish_body(
            pipeline_settings, json.dumps(body).encode(), correlation_id=body["correlation_id"]
        )

        async def parked() -> list[tuple[bytes, dict[str, Any]]]:
            return await drain(pipeline_settings, dlq)

        [(kept, headers)] = await eventually(parked, what="parked submission")
    assert json.loads(kept) == body
    assert str(headers["x-park-reason"]).startswith(f"{reason}:")
    assert "job_id" in str(headers["x-park-reason"])
    # Refused outright: no job under its request id, made-up or otherwise.
    assert await records.jobs_by_request(body["request_id"]) == []
