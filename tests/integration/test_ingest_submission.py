"""Both doors of ingest, one validation: rejections, idempotency, attached characters.

Over HTTP a problem is a 422 listing every problem; over AMQP it is a ``job.rejected``
listing the same problems. Either way the verdict is a row in ``jobs``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import update

from services.ingest.seed import HIROSHI, KAI_VERSIONS, SAKURA
from shared.db.models import Job
from shared.settings import Settings
from tests.support.ingest_capture import Captured, capture
from tests.support.ingest_http import (
    IngestClient,
    definition,
    envelope,
    ingest,
    make_character,
    make_project,
    publish_body,
    publish_shot,
)
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

Door = Literal["http", "amqp"]
DOORS: tuple[Door, ...] = ("http", "amqp")


def kai_shot(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "rooftop-dusk",
        "shot": "shot-012",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        **overrides,
    }


@dataclass
class Desk:
    """Ingest running, with a client for each door and the events it publishes."""

    settings: Settings
    client: IngestClient
    events: Captured
    records: Records

    async def submit(self, door: Door, body: Any) -> tuple[uuid.UUID, list[dict[str, Any]]]:
        """Submit ``body`` through ``door``; the job id and its problems ([] if accepted)."""
        if door == "http":
            reply = await self.client.request(
                "POST",
                "/v1/jobs",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            if reply.status in (200, 202):
                return uuid.UUID(reply.json["job_id"]), []
            assert reply.status in (409, 422), reply.raw
            return uuid.UUID(reply.json["job_id"]), reply.errors
        sent = await publish_shot(self.settings, body)
        request_id = body.get("request_id") if isinstance(body, dict) else None
        event = await self.events.wait_for(
            lambda m: (
                m["correlation_id"] == sent.correlation_id
                or (request_id is not None and m.get("request_id") == request_id)
            ),
            what=f"verdict on {sent.job_id}",
        )
        problems: list[dict[str, Any]] = event.get("problems", [])
        return uuid.UUID(event["job_id"]), problems


@asynccontextmanager
async def desk(settings: Settings, records: Records) -> AsyncIterator[Desk]:
    async with (
        ingest(settings) as client,
        capture(settings, "job.accepted.#", "job.rejected.#") as events,
    ):
        yield Desk(settings, client, events, records)


# --------------------------------------------------------------------------- rejections

REJECTIONS: dict[str, tuple[dict[str, Any], str, str]] = {
    # kind: (overrides, field, code)
    "unknown character": (
        {"characters": [{"name": "Kai Nakamure"}]},
        "characters[0].name",
        "unknown_character",
    ),
    "unknown template": ({"template": "txt2imgg"}, "template", "unknown_template"),
    "steps out of range": ({"params": {"steps": 151}}, "params.steps", "less_than_equal"),
    "width not a multiple of 8": ({"params": {"width": 100}}, "params.width", "multiple_of"),
    "negative cfg": ({"params": {"cfg": -1}}, "params.cfg", "greater_than_equal"),
    "huge seed": ({"params": {"seed": 10**30}}, "params.seed", "less_than_equal"),
    "priority out of range": ({"priority": 10}, "priority", "less_than_equal"),
    "oversize prompt": ({"prompt": "x" * 4001}, "prompt", "string_too_long"),
    "unsafe project path": ({"project": "../../etc"}, "project", "string_pattern_mismatch"),
    "unsafe episode path": ({"episode": "ep/../01"}, "episode", "string_pattern_mismatch"),
    "priority of the wrong type": ({"priority": "high"}, "priority", "int_type"),
    "characters of the wrong type": ({"characters": "Kai"}, "characters", "list_type"),
    "no characters": ({"characters": []}, "characters", "too_short"),
    "name and id together": (
        {"characters": [{"name": "Kai Nakamura", "id": str(uuid.uuid4())}]},
        "characters[0]",
        "value_error",
    ),
    "unknown pinned version": (
        {"characters": [{"name": "Kai Nakamura", "version": 9}]},
        "characters[0].version",
        "unknown_version",
    ),
    "misspelt field": ({"priorty": 3}, "priorty", "extra_forbidden"),
    "NUL in the prompt": ({"prompt": "dusk\x00"}, "prompt", "invalid_characters"),
    "missing request id": ({"request_id": None}, "request_id", "string_type"),
}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("kind", list(REJECTIONS))
async def test_each_kind_of_invalid_request_is_rejected_naming_the_field_through_both_doors(
    pipeline_settings: Settings, seeded: Path, records: Records, door: Door, kind: str
) -> None:
    overrides, field, code = REJECTIONS[kind]
    async with desk(pipeline_settings, records) as d:
        job_id, problems = await d.submit(door, kai_shot(**overrides))
    assert (field, code) in {(p["field"], p["code"]) for p in problems}, problems
    job = await records.job(job_id)
    assert job is not None and job.verdict == "rejected"
    assert job.submitted_via == door


@pytest.mark.parametrize("door", DOORS)
async def test_an_unknown_character_comes_with_the_closest_names_as_suggestions(
    pipeline_settings: Settings, seeded: Path, records: Records, door: Door
) -> None:
    async with desk(pipeline_settings, records) as d:
        _, problems = await d.submit(
            door, kai_shot(characters=[{"name": "Kai"}, {"name": "Sakura Hanna"}])
        )
    by_field = {p["field"]: p for p in problems}
    assert "Kai Nakamura" in by_field["characters[0].name"]["suggestions"]
    assert by_field["characters[1].name"]["suggestions"][0] == "Sakura Hana"


@pytest.mark.parametrize("door", DOORS)
async def test_every_problem_of_a_request_is_reported_at_once(
    pipeline_settings: Settings, seeded: Path, records: Records, door: Door
) -> None:
    body = kai_shot(
        characters=[{"name": "Nobody Atall"}],
        template="nope",
        params={"steps": 0, "height": 5000},
        priority=-1,
        colour="red",
    )
    async with desk(pipeline_settings, records) as d:
        _, problems = await d.submit(door, body)
    assert {p["field"] for p in problems} == {
        "params.steps",
        "params.height",
        "priority",
        "colour",
    }
    # With the body's shape wrong, nothing is looked up; once it is right, the lookups
    # report their problems together.
    async with desk(pipeline_settings, records) as d:
        _, problems = await d.submit(
            door, kai_shot(characters=[{"name": "Nobody Atall"}], template="nope", colour="red")
        )
    assert {p["field"] for p in problems} == {"characters[0].name", "template", "colour"}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("body", [[1, 2], "a string", 42, None, True])
async def test_a_json_body_that_is_not_an_object_is_rejected_through_both_doors(
    pipeline_settings: Settings, records: Records, door: Door, body: Any
) -> None:
    async with desk(pipeline_settings, records) as d:
        _, problems = await d.submit(door, body)
    assert [(p["field"], p["code"]) for p in problems] == [("body", "type")]


# --------------------------------------------------------------------------- idempotency


async def test_the_same_request_twice_over_http_is_200_with_the_existing_job(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    async with ingest(pipeline_settings) as client:
        first = await client.post("/v1/jobs", body)
        again = await client.post("/v1/jobs", dict(reversed(list(body.items()))))
    assert first.status == 202
    assert again.status == 200
    assert again.json["job_id"] == first.json["job_id"]
    assert again.json["verdict"] == "accepted"
    assert [c["version"] for c in again.json["character_versions"]] == [3]
    assert len(await records.jobs_by_request(body["request_id"])) == 1


async def test_the_same_request_twice_over_amqp_makes_no_second_job_and_no_second_event(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    marker = kai_shot()
    async with desk(pipeline_settings, records) as d:
        first = await publish_shot(pipeline_settings, body)
        await d.events.wait_for(
            lambda m: bool(_accepted_for(d, body["request_id"])), what="the first verdict"
        )
        # The same message again, same job id (under another job id, see
        # test_ingest_request_reuse.py: a duplicate_request rejection on that id).
        await publish_body(
            pipeline_settings,
            json.dumps(
                envelope(body, job_id=first.job_id, correlation_id=first.correlation_id)
            ).encode(),
            correlation_id=first.correlation_id,
            headers={"job_id": str(first.job_id), "event_type": "job.submitted"},
        )
        # A later, different request: once its verdict is out, the repeat was handled too.
        await publish_shot(pipeline_settings, marker)
        await d.events.wait_for(
            lambda m: bool(_accepted_for(d, marker["request_id"])), what="the marker's verdict"
        )
        await asyncio.sleep(0.5)
        # The repeat is answered from the record; the delivered verdict is not sent again.
        assert len(_accepted_for(d, body["request_id"])) == 1
    jobs = await records.jobs_by_request(body["request_id"])
    assert [j.id for j in jobs] == [first.job_id]


async def test_a_verdict_the_broker_never_confirmed_is_published_when_the_request_repeats(
    pipeline_settings: Settings, seeded: Path, records: Records, database_url: str
) -> None:
    body = kai_shot()
    async with desk(pipeline_settings, records) as d:
        first = await publish_shot(pipeline_settings, body)
        await d.events.wait_for(
            lambda m: bool(_accepted_for(d, body["request_id"])), what="the first verdict"
        )
        # Given ingest had stopped between recording the verdict and the broker's confirm
        async with records.sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.id == first.job_id).values(verdict_published_at=None)
            )
        # When the request repeats, the verdict goes out again, under the same event id
        await publish_shot(pipeline_settings, body)
        await d.events.wait_for(
            lambda m: len(_accepted_for(d, body["request_id"])) == 2, what="the healed verdict"
        )
        accepted = _accepted_for(d, body["request_id"])
        assert {e["event_id"] for e in accepted} == {accepted[0]["event_id"]}
    job = await records.job(first.job_id)
    assert job is not None and job.verdict_published_at is not None


def _accepted_for(d: Any, request_id: str) -> list[dict[str, Any]]:
    return [e for e in d.events.of_type("job.accepted") if e["spec"]["request_id"] == request_id]


async def test_the_same_request_through_both_doors_is_one_job(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    async with desk(pipeline_settings, records) as d:
        job_id, problems = await d.submit("amqp", body)
        reply = await d.client.post("/v1/jobs", body)
    assert problems == []
    assert reply.status == 200 and reply.json["job_id"] == str(job_id)
    assert len(await records.jobs_by_request(body["request_id"])) == 1


async def test_conflicting_resubmission_over_http_is_409_naming_the_existing_job(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    async with ingest(pipeline_settings) as client:
        first = await client.post("/v1/jobs", body)
        other = await client.post("/v1/jobs", {**body, "prompt": "a different shot"})
    assert other.status == 409
    problem = other.problem("request_id")
    assert problem["code"] == "conflict"
    assert first.json["job_id"] in problem["message"]


async def test_conflicting_resubmission_over_amqp_is_rejected_naming_the_existing_job(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    async with desk(pipeline_settings, records) as d:
        first_id, _ = await d.submit("amqp", body)
        sent = await publish_shot(pipeline_settings, {**body, "priority": 9})
        rejected = await d.events.wait_for(
            lambda m: m["correlation_id"] == sent.correlation_id, what="conflict rejection"
        )
    assert rejected["event_type"] == "job.rejected"
    [problem] = rejected["problems"]
    assert (problem["field"], problem["code"]) == ("request_id", "conflict")
    assert str(first_id) in problem["message"]
    verdicts = sorted(j.verdict for j in await records.jobs_by_request(body["request_id"]))
    assert verdicts == ["accepted", "rejected"]


async def test_a_rejected_request_can_be_fixed_and_resubmitted_under_the_same_request_id(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot(template="nope")
    async with ingest(pipeline_settings) as client:
        rejected = await client.post("/v1/jobs", body)
        fixed = await client.post("/v1/jobs", {**body, "template": "model-free"})
    assert (rejected.status, fixed.status) == (422, 202)


async def test_a_request_with_a_misspelt_field_can_be_corrected_under_the_same_request_id(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    body = kai_shot()
    async with ingest(pipeline_settings) as client:
        typo = await client.post("/v1/jobs", {**body, "priorty": 3})
        again = await client.post("/v1/jobs", {**body, "priorty": 3})
        fixed = await client.post("/v1/jobs", {**body, "priority": 3})
        same_with_defaults = await client.post(
            "/v1/jobs", {**body, "priority": 3, "negative_prompt": ""}
        )
    assert (typo.status, again.status, fixed.status) == (422, 422, 202)
    assert again.json["job_id"] == typo.json["job_id"]
    assert same_with_defaults.status == 200
    assert same_with_defaults.json["job_id"] == fixed.json["job_id"]


# --------------------------------------------------------------------------- characters


async def test_kai_by_name_without_a_version_is_accepted_with_his_current_version_attached(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    async with desk(pipeline_settings, records) as d:
        job_id, problems = await d.submit("amqp", kai_shot())
        accepted = await d.events.event_for(job_id, "job.accepted")
    assert problems == []
    [kai] = accepted["spec"]["characters"]
    assert (kai["name"], kai["version"]) == ("Kai Nakamura", 3)
    assert kai["definition"] == KAI_VERSIONS[2]
    assert kai["attributes"] == {
        "age": "17",
        "eyes": "brown",
        "hair": "black",
        "height_cm": "174",
        "role": "protagonist",
    }
    job = await records.job(job_id)
    assert job is not None and job.verdict == "accepted"
    assert job.character_versions == [
        {
            "character_id": kai["character_id"],
            "name": "Kai Nakamura",
            "version": 3,
            "version_id": kai["version_id"],
        }
    ]
    assert [str(v) for v in job.character_version_ids] == [kai["version_id"]]
    # No explicit seed: Kai's default seed is used.
    assert accepted["spec"]["params"]["seed"] == KAI_VERSIONS[2]["default_seed"]


@pytest.mark.parametrize("door", DOORS)
async def test_a_multi_character_shot_attaches_each_definition_and_reference_image(
    pipeline_settings: Settings, seeded: Path, records: Records, door: Door
) -> None:
    body = kai_shot(
        characters=[
            {"name": "sakura hana"},
            {"name": "Hiroshi Tanaka"},
            {"name": "Kai Nakamura", "version": 1},
        ],
        prompt="three friends on a rooftop",
    )
    # The seed stored the reference images under its own root.
    pipeline_settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    async with desk(pipeline_settings, records) as d:
        job_id, problems = await d.submit(door, body)
        accepted = await d.events.event_for(job_id, "job.accepted")
        sakura, hiroshi, kai = accepted["spec"]["characters"]
        images = [
            await d.client.get(r["url"].split(str(pipeline_settings.ingest_port), 1)[1])
            for r in sakura["references"]
        ]
    assert problems == []
    assert (sakura["name"], hiroshi["name"], kai["name"]) == (
        "Sakura Hana",
        "Hiroshi Tanaka",
        "Kai Nakamura",
    )
    assert sakura["definition"] == SAKURA and hiroshi["definition"] == HIROSHI
    assert kai["version"] == 1 and kai["definition"] == KAI_VERSIONS[0]
    assert [(r["kind"], r["weight"]) for r in sakura["references"]] == [
        ("face", 1.0),
        ("full-body", 0.6),
    ]
    assert [r["kind"] for r in hiroshi["references"]] == ["face"]
    for reference, image in zip(sakura["references"], images, strict=True):
        assert image.status == 200
        assert hashlib.sha256(image.raw).hexdigest() == reference["sha256"]
        assert (
            reference["url"]
            == f"{pipeline_settings.public_ingest_url}/v1/references/{reference['sha256']}"
        )
    composed = accepted["spec"]["composed_prompt"]
    assert (
        composed.index("sakurahana")
        < composed.index("hiroshitanaka")
        < composed.index("kainakamura")
    )
    job = await records.job(job_id)
    assert job is not None
    assert [(c["name"], c["version"]) for c in job.character_versions] == [
        ("Sakura Hana", 1),
        ("Hiroshi Tanaka", 1),
        ("Kai Nakamura", 1),
    ]


@pytest.mark.parametrize("door", DOORS)
async def test_a_pinned_version_is_used_over_the_current_one_which_follows_the_pointer(
    pipeline_settings: Settings, records: Records, door: Door
) -> None:
    async with desk(pipeline_settings, records) as d:
        project = await make_project(d.client)
        character = await make_character(
            d.client,
            project=project,
            versions=[definition(outfit="summer dress"), definition(outfit="winter coat")],
        )
        cid = character["id"]

        async def attached(ref: dict[str, Any]) -> tuple[int, str]:
            job_id, problems = await d.submit(door, kai_shot(project=project, characters=[ref]))
            assert problems == []
            event = await d.events.event_for(job_id, "job.accepted")
            [snapshot] = event["spec"]["characters"]
            job = await records.job(job_id)
            assert job is not None and job.character_versions[0]["version"] == snapshot["version"]
            return snapshot["version"], snapshot["definition"]["outfit"]

        assert await attached({"id": cid}) == (2, "winter coat")
        assert await attached({"id": cid, "version": 1}) == (1, "summer dress")
        assert await attached({"name": character["name"], "version": 2}) == (2, "winter coat")
        moved = await d.client.put(f"/v1/characters/{cid}/current", {"version": 1})
        assert moved.status == 200
        assert await attached({"name": character["name"]}) == (1, "summer dress")


async def test_a_project_character_is_invisible_to_another_project(
    pipeline_settings: Settings, records: Records
) -> None:
    async with desk(pipeline_settings, records) as d:
        owner, other = await make_project(d.client), await make_project(d.client)
        character = await make_character(d.client, project=owner)
        _, problems = await d.submit(
            "http", kai_shot(project=other, characters=[{"id": character["id"]}])
        )
    assert [p["code"] for p in problems] == ["unknown_character"]


# --------------------------------------------------------------------------- unreadable bodies


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"\xff\xfe not json", None, "encoding"),
        ('{"request_id": "x"}'.encode("utf-16"), None, "encoding"),
        (b'{"request_id": ', None, "not_json"),
        (b'{"request_id": ', "application/json", "not_json"),
        (b"NaN", None, "not_json"),
        (b'{"cfg": 1e999}', None, "not_json"),
        (b'{"priority": ' + b"9" * 5000 + b"}", "application/json", "not_json"),
        (b"[" * 100 + b"]" * 100, None, "too_deep"),
        (b"[" * 100_000, "application/json", "too_deep"),
        (b'{"prompt": "' + b"x" * (300 * 1024) + b'"}', None, "too_large"),
    ],
)
async def test_an_unreadable_amqp_body_is_parked_in_ingests_dlq_with_the_reason_and_counted(
    pipeline_settings: Settings, body: bytes, content_type: str | None, reason: str
) -> None:
    from prometheus_client import REGISTRY

    from shared.topology import Topology
    from tests.support.amqp import drain

    def parked_count() -> float:
        labels = {"service": "ingest", "reason": reason}
        return REGISTRY.get_sample_value("anime_dead_lettered_total", labels) or 0.0

    topology = Topology.from_settings(pipeline_settings)
    dlq = topology.dlq_name(topology.pipeline_specs(pipeline_settings)["ingest.submitted"].name)
    before = parked_count()
    async with ingest(pipeline_settings):
        await publish_body(
            pipeline_settings, body, correlation_id="unreadable-1", content_type=content_type
        )

        async def parked() -> list[tuple[bytes, dict[str, Any]]]:
            return await drain(pipeline_settings, dlq)

        [(kept, headers)] = await eventually(parked, what="parked message")
    assert kept == body
    assert str(headers["x-park-reason"]).startswith(f"{reason}:")
    assert headers["x-parked-by"] == "ingest"
    assert parked_count() == before + 1


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"\xff\xfe not json", "application/json", 400, "encoding"),
        (b'{"request_id": ', "application/json", 400, "not_json"),
        (b"", "application/json", 400, "empty_body"),
        (b"[" * 100 + b"]" * 100, "application/json", 400, "too_deep"),
        (b'{"prompt": "' + b"x" * (300 * 1024) + b'"}', "application/json", 413, "too_large"),
        (b"request_id=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
async def test_an_unreadable_http_body_is_a_4xx_naming_why(
    pipeline_settings: Settings, data: bytes, content_type: str, status: int, code: str
) -> None:
    async with ingest(pipeline_settings) as client:
        reply = await client.request(
            "POST", "/v1/jobs", data=data, headers={"Content-Type": content_type}
        )
        healthy = await client.get("/readyz")
    assert reply.status == status
    assert reply.codes() == {code}
    assert healthy.status == 200


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("missing", ["request_id", "project", "characters"])
async def test_a_request_without_a_required_field_is_rejected(
    pipeline_settings: Settings, seeded: Path, records: Records, door: Door, missing: str
) -> None:
    body = {k: v for k, v in kai_shot().items() if k != missing}
    async with desk(pipeline_settings, records) as d:
        _, problems = await d.submit(door, body)
    assert (missing, "missing") in {(p["field"], p["code"]) for p in problems}
