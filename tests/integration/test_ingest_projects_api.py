"""Projects over ingest's HTTP API: create (admin), list and get (read)."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.support.ingest_http import ingest, unique_slug

pytestmark = pytest.mark.integration


async def test_a_created_project_can_be_fetched_and_is_listed(pipeline_settings: Settings) -> None:
    async with ingest(pipeline_settings) as client:
        slug = unique_slug()
        created = await client.post(
            "/v1/projects", {"slug": slug, "name": "Night City", "description": "pilot"}
        )
        assert created.status == 201
        assert created.headers["Location"] == f"/v1/projects/{slug}"
        assert created.json["slug"] == slug

        fetched = await client.get(f"/v1/projects/{slug}")
        assert fetched.status == 200
        assert fetched.json == created.json

        listed = await client.get("/v1/projects")
        assert slug in [p["slug"] for p in listed.json["items"]]


async def test_a_taken_slug_is_409_naming_the_existing_project(pipeline_settings: Settings) -> None:
    async with ingest(pipeline_settings) as client:
        slug = unique_slug()
        first = await client.post("/v1/projects", {"slug": slug, "name": "One"})
        again = await client.post("/v1/projects", {"slug": slug, "name": "Two"})
        assert again.status == 409
        problem = again.problem("slug")
        assert problem["code"] == "slug_taken"
        assert first.json["id"] in problem["message"]


@pytest.mark.parametrize(
    ("slug", "suggested"),
    [
        ("../etc/passwd", "etc-passwd"),
        ("Neon Skies", "neon-skies"),
        ("a/b", "a-b"),
        ("-dash-", "dash"),
        ("x" * 65, "x" * 64),
        ("", None),
    ],
)
async def test_a_slug_that_is_not_lowercase_digits_and_dashes_is_422_with_a_suggestion(
    pipeline_settings: Settings, slug: str, suggested: str | None
) -> None:
    async with ingest(pipeline_settings) as client:
        reply = await client.post("/v1/projects", {"slug": slug, "name": "Bad"})
        assert reply.status == 422
        assert reply.problem("slug")["suggestions"] == ([suggested] if suggested else [])


@pytest.mark.parametrize("path", ["..%2F..%2Fetc", "Neon-Skies", "a.b", "%00x"])
async def test_a_project_path_with_tricks_is_400_or_not_found(
    pipeline_settings: Settings, path: str
) -> None:
    async with ingest(pipeline_settings) as client:
        reply = await client.get(f"/v1/projects/{path}")
        assert reply.status in (400, 404)
        assert reply.errors


async def test_an_unknown_project_is_404_with_the_closest_slugs(
    pipeline_settings: Settings, seeded: object
) -> None:
    async with ingest(pipeline_settings) as client:
        reply = await client.get("/v1/projects/neon-skie")
        assert reply.status == 404
        assert "neon-skies" in reply.problem("slug")["suggestions"]


async def test_a_project_body_with_unknown_fields_and_wrong_types_lists_every_problem(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        reply = await client.post("/v1/projects", {"slug": 5, "name": ["x"], "colour": "red"})
        assert reply.status == 422
        assert reply.fields() == {"slug", "name", "colour"}


async def test_unknown_endpoints_and_methods_answer_json_errors(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        nowhere = await client.get("/v1/nowhere")
        wrong_method = await client.delete("/v1/projects")
    assert nowhere.status == 404 and nowhere.codes() == {"not_found"}
    assert wrong_method.status == 405 and wrong_method.codes() == {"method_not_allowed"}
    assert "GET" in wrong_method.headers["Allow"]


async def test_the_openapi_document_is_served(pipeline_settings: Settings) -> None:
    from services.ingest.openapi import build_openapi

    async with ingest(pipeline_settings) as client:
        reply = await client.get("/v1/openapi.json")
    assert reply.status == 200
    assert reply.json == build_openapi()
