"""The read side of jobs and cancelling: ``GET /v1/jobs``, ``POST /v1/jobs/{id}/cancel``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import insert

from shared.db.models import JobState
from shared.settings import Settings
from tests.support.ingest_capture import capture
from tests.support.ingest_http import (
    IngestClient,
    definition,
    ingest,
    make_character,
    make_project,
    shot,
)
from tests.support.records import Records

pytestmark = pytest.mark.integration


async def _submit(
    client: IngestClient, project: str, characters: list[dict[str, Any]], **kw: Any
) -> str:
    reply = await client.post("/v1/jobs", shot(project, characters, **kw))
    assert reply.status in (202, 422), reply.raw
    return str(reply.json["job_id"])


async def _all_pages(client: IngestClient, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        reply = await client.get("/v1/jobs", params=query)
        assert reply.status == 200, reply.raw
        items += reply.json["items"]
        cursor = reply.json["next_cursor"]
        if cursor is None:
            return items


async def test_a_projects_jobs_are_listed_in_creation_order_across_cursor_pages(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        character = await make_character(client, project=project)
        submitted = [await _submit(client, project, [{"id": character["id"]}]) for _ in range(5)]

        ascending = await _all_pages(client, project=project, limit="2")
        descending = await _all_pages(client, project=project, limit="2", order="desc")
        all_at_once = (await client.get("/v1/jobs", params={"project": project})).json

    assert [j["job_id"] for j in ascending] == submitted
    assert [j["job_id"] for j in descending] == submitted[::-1]
    assert all_at_once["next_cursor"] is None and len(all_at_once["items"]) == 5
    first = ascending[0]
    assert (first["project"], first["verdict"], first["state"]) == (
        project,
        "accepted",
        "submitted",
    )
    assert first["character_versions"][0]["character_id"] == character["id"]


async def test_jobs_are_filtered_by_status_and_by_character_name_or_id(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        ann = await make_character(
            client, project=project, versions=[definition(), definition(outfit="b")]
        )
        bob = await make_character(client, project=project)
        with_ann_v1 = await _submit(client, project, [{"id": ann["id"], "version": 1}])
        with_both = await _submit(client, project, [{"id": bob["id"]}, {"name": ann["name"]}])
        with_bob = await _submit(client, project, [{"id": bob["id"]}])
        rejected = await _submit(client, project, [{"id": bob["id"]}], template="nope")
        async with records.sessions() as session, session.begin():
            await session.execute(
                insert(JobState).values(job_id=uuid.UUID(with_bob), state="rendering")
            )

        async def ids(**params: str) -> list[str]:
            return [j["job_id"] for j in await _all_pages(client, project=project, **params)]

        assert await ids(character=ann["name"].upper()) == [with_ann_v1, with_both]
        assert await ids(character=bob["id"]) == [with_both, with_bob]
        assert await ids(status="rejected") == [rejected]
        assert await ids(status="rendering") == [with_bob]
        assert await ids(status="submitted", character=bob["name"]) == [with_both]

        unknown = await client.get(
            "/v1/jobs", params={"project": project, "character": ann["name"][:-1]}
        )
        assert unknown.status == 422
        assert ann["name"] in unknown.problem("character")["suggestions"]
        bad_status = await client.get("/v1/jobs", params={"status": "done"})
        assert bad_status.status == 422 and bad_status.fields() == {"status"}
        bad_cursor = await client.get("/v1/jobs", params={"cursor": "eyJ4Ijox"})
        assert bad_cursor.status == 400 and bad_cursor.codes() == {"bad_cursor"}
        bad_project = await client.get("/v1/jobs", params={"project": "../etc"})
        assert bad_project.status == 422
        typo = await client.get("/v1/jobs", params={"project": project[:-1]})
        assert typo.status == 422 and project in typo.problem("project")["suggestions"]


async def test_a_job_is_read_with_its_state_versions_and_problems(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        character = await make_character(client, project=project)
        accepted = await _submit(client, project, [{"id": character["id"]}])
        rejected = await _submit(client, project, [{"id": character["id"]}], priority=12)
        good = (await client.get(f"/v1/jobs/{accepted}")).json
        bad = (await client.get(f"/v1/jobs/{rejected}")).json
        missing = await client.get(f"/v1/jobs/{uuid.uuid4()}")
        malformed = await client.get("/v1/jobs/not-a-uuid")
    assert (good["verdict"], good["state"], good["problems"]) == ("accepted", "submitted", [])
    assert good["character_versions"][0]["version"] == 1
    assert (bad["verdict"], bad["state"]) == ("rejected", "rejected")
    assert bad["problems"][0]["field"] == "priority"
    assert missing.status == 404 and malformed.status == 400


async def test_cancelling_a_live_job_publishes_job_cancel_requested_and_answers_202(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        character = await make_character(client, project=project)
        job_id = await _submit(client, project, [{"id": character["id"]}])
        async with capture(pipeline_settings, "job.cancel_requested.#") as events:
            reply = await client.post(f"/v1/jobs/{job_id}/cancel", {"reason": "wrong outfit"})
            event = await events.event_for(job_id, "job.cancel_requested")
        without_body = await client.request("POST", f"/v1/jobs/{job_id}/cancel")
    assert reply.status == 202
    assert reply.json == {
        "job_id": job_id,
        "state": "cancel_requested",
        "event_id": event["event_id"],
    }
    assert (event["producer"], event["project"], event["reason"]) == (
        "ingest",
        project,
        "wrong outfit",
    )
    assert without_body.status == 202


async def test_cancelling_an_unknown_job_is_404_and_a_finished_one_409(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        character = await make_character(client, project=project)
        rejected = await _submit(client, project, [{"id": character["id"]}], template="nope")
        completed = await _submit(client, project, [{"id": character["id"]}])
        async with records.sessions() as session, session.begin():
            await session.execute(
                insert(JobState).values(job_id=uuid.UUID(completed), state="completed")
            )
        unknown = await client.post(f"/v1/jobs/{uuid.uuid4()}/cancel")
        too_late = await client.post(f"/v1/jobs/{rejected}/cancel")
        done = await client.post(f"/v1/jobs/{completed}/cancel")
        bad_reason = await client.post(f"/v1/jobs/{completed}/cancel", {"reason": ""})
    assert unknown.status == 404
    assert too_late.status == 409 and too_late.codes() == {"job_final"}
    assert done.status == 409 and "completed" in done.problem("job_id")["message"]
    assert bad_reason.status == 422
