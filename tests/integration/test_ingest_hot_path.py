"""Ingest's hot path: what it caches never hides a change, and what a request costs.

Ingest caches project ids by slug and version definitions by version id (both
immutable once they exist). Everything else a request depends on (which project a
slug names when it did not exist yet, which character a name means in a project, the
current version, attributes, references) must be read afresh for every request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.engine import Engine

from shared.settings import Settings
from tests.support.ingest_http import (
    IngestClient,
    definition,
    ingest,
    make_character,
    make_project,
    publish_shot,
    shot,
    unique_slug,
)
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


async def accepted_characters(
    client: IngestClient, records: Records, body: dict[str, Any]
) -> list[dict[str, Any]]:
    reply = await client.post("/v1/jobs", body)
    assert reply.status == 202, reply.raw
    job = await records.job(uuid.UUID(reply.json["job_id"]))
    assert job is not None and job.spec is not None
    characters: list[dict[str, Any]] = job.spec["characters"]
    return characters


async def test_a_project_created_after_a_request_named_it_is_found_at_once(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    slug = unique_slug()
    kai = [{"name": "Kai Nakamura"}]
    async with ingest(pipeline_settings) as client:
        early = await client.post("/v1/jobs", shot(slug, kai))
        assert early.status == 422 and early.codes() == {"unknown_project"}
        await make_project(client, slug)
        assert len(await accepted_characters(client, records, shot(slug, kai))) == 1


async def test_a_projects_own_character_takes_over_a_global_name_at_once(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        kai = [{"name": "Kai Nakamura"}]
        [global_kai] = await accepted_characters(client, records, shot(project, kai))
        own = await make_character(client, project=project, name="Kai Nakamura")
        [project_kai] = await accepted_characters(client, records, shot(project, kai))
    assert project_kai["character_id"] == own["id"] != global_kai["character_id"]


async def test_current_version_attributes_and_references_changes_are_seen_by_the_next_request(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        character = await make_character(
            client,
            project=project,
            versions=[definition(outfit="summer dress"), definition(outfit="winter coat")],
            attributes={"hair": "red"},
        )
        cid = character["id"]
        ref = [{"id": cid}]
        [before] = await accepted_characters(client, records, shot(project, ref))
        assert (await client.put(f"/v1/characters/{cid}/current", {"version": 1})).status == 200
        put = await client.put(f"/v1/characters/{cid}/attributes/hair", {"value": "blue"})
        assert put.status == 200
        [after] = await accepted_characters(client, records, shot(project, ref))
        # A version seen before (its definition cached) is still the right one.
        [pinned] = await accepted_characters(
            client, records, shot(project, [{"id": cid, "version": 2}])
        )
    assert (before["version"], before["definition"]["outfit"]) == (2, "winter coat")
    assert before["attributes"] == {"hair": "red"}
    assert (after["version"], after["definition"]["outfit"]) == (1, "summer dress")
    assert after["attributes"] == {"hair": "blue"}
    assert (pinned["version"], pinned["definition"]["outfit"]) == (2, "winter coat")
    assert pinned["version_id"] == before["version_id"]


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process runs while the test does."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def handled() -> float:
    return sum(
        REGISTRY.get_sample_value(
            "anime_messages_consumed_total",
            {"service": "ingest", "event_type": "job.submitted", "outcome": outcome},
        )
        or 0.0
        for outcome in ("ok", "error")
    )


async def test_a_new_request_costs_at_most_three_statements(
    pipeline_settings: Settings, seeded: Path, statements: list[str]
) -> None:
    kai = [{"name": "Kai Nakamura"}]
    async with ingest(pipeline_settings):
        warm = handled()
        await publish_shot(pipeline_settings, shot("neon-skies", kai))
        await eventually(lambda: _at_least(warm + 1), what="the warm-up request handled")

        statements.clear()
        before = handled()
        await publish_shot(pipeline_settings, shot("neon-skies", kai))
        await eventually(lambda: _at_least(before + 1), what="one request handled")
        one = list(statements)

        statements.clear()
        before = handled()
        burst = 40
        await asyncio.gather(
            *(publish_shot(pipeline_settings, shot("neon-skies", kai)) for _ in range(burst))
        )
        await eventually(lambda: _at_least(before + burst), what="the burst handled")
    # Its characters, the insert (guarded: no look at jobs first), the published mark.
    # Under a burst, marks of jobs confirmed together share one UPDATE (timing: not
    # asserted).
    assert len(one) <= 3, one
    assert len(statements) <= 3 * burst, statements


async def _at_least(count: float) -> bool | None:
    return True if handled() >= count else None


async def test_the_same_request_many_times_at_once_is_one_job_and_a_conflict_is_a_rejection(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = shot("neon-skies", [{"name": "Kai Nakamura"}])
    other = {**body, "prompt": "another shot under the same request id"}
    async with ingest(pipeline_settings) as client:
        replies = await asyncio.gather(*(client.post("/v1/jobs", body) for _ in range(8)))
        conflicts = await asyncio.gather(*(client.post("/v1/jobs", other) for _ in range(3)))
    assert sorted(r.status for r in replies) == [200] * 7 + [202]
    assert {r.json["job_id"] for r in replies} == {replies[0].json["job_id"]}
    # The first is judged a conflict (409); its repeats answer the recorded rejection.
    assert sorted(r.status for r in conflicts) == [409, 422, 422]
    assert all(r.codes() == {"conflict"} for r in conflicts)
    jobs = await records.jobs_by_request(body["request_id"])
    assert sorted(j.verdict for j in jobs) == ["accepted", "rejected"]
