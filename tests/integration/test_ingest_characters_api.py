"""Characters over ingest's HTTP API: definitions, versions, attributes, reference images."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from services.ingest.images import MAX_IMAGE_BYTES
from shared.settings import Settings
from tests.support.ingest_http import (
    IngestClient,
    definition,
    ingest,
    make_character,
    make_project,
    unique_name,
)
from tests.support.ingest_images import huge_canvas_png, image_bytes, truncated

pytestmark = pytest.mark.integration


async def test_a_character_is_created_with_version_one_current_and_its_attributes(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        name = unique_name("Aiko")
        reply = await client.post(
            "/v1/characters",
            {
                "name": name,
                "project": project,
                "definition": definition(lora={"name": "aiko.safetensors", "strength": 0.6}),
                "attributes": {"age": "19", "eyes": "grey"},
                "note": "first draft",
            },
        )
        assert reply.status == 201
        character = reply.json
        assert reply.headers["Location"] == f"/v1/characters/{character['id']}"
        assert (character["name"], character["project"], character["current_version"]) == (
            name,
            project,
            1,
        )
        [version] = character["versions"]
        assert version["version"] == 1 and version["current"] and version["note"] == "first draft"
        assert version["definition"]["lora"] == {"name": "aiko.safetensors", "strength": 0.6}
        assert character["attributes"] == {"age": "19", "eyes": "grey"}
        assert character["references"] == []

        fetched = await client.get(f"/v1/characters/{character['id']}")
        assert fetched.json == character


async def test_a_name_is_unique_per_project_case_insensitively_but_free_in_another_project(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        first, second = await make_project(client), await make_project(client)
        name = unique_name("Ren")
        original = await make_character(client, project=first, name=name)

        clash = await client.post(
            "/v1/characters",
            {"name": name.upper(), "project": first, "definition": definition()},
        )
        assert clash.status == 409
        assert clash.problem("name")["code"] == "name_taken"
        assert original["id"] in clash.problem("name")["message"]

        elsewhere = await client.post(
            "/v1/characters", {"name": name, "project": second, "definition": definition()}
        )
        assert elsewhere.status == 201


async def test_a_character_in_an_unknown_project_is_422_with_the_closest_slugs(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        reply = await client.post(
            "/v1/characters",
            {"name": unique_name(), "project": project[:-1], "definition": definition()},
        )
        assert reply.status == 422
        assert project in reply.problem("project")["suggestions"]


async def test_a_new_version_is_a_new_row_that_becomes_current_and_old_ones_never_change(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        character = await make_character(client, project=await make_project(client))
        cid = character["id"]
        v1 = (await client.get(f"/v1/characters/{cid}/versions/1")).json

        added = await client.post(
            f"/v1/characters/{cid}/versions",
            {"definition": definition(outfit="winter coat"), "note": "winter arc"},
        )
        assert added.status == 201
        assert added.headers["Location"] == f"/v1/characters/{cid}/versions/2"
        assert added.json["version"] == 2 and added.json["current"]
        assert added.json["id"] != v1["id"]

        now = (await client.get(f"/v1/characters/{cid}")).json
        assert now["current_version"] == 2
        assert [v["version"] for v in now["versions"]] == [1, 2]
        old = (await client.get(f"/v1/characters/{cid}/versions/1")).json
        assert {**old, "current": True} == {**v1, "current": True}
        assert old["definition"]["outfit"] == "pilot suit"
        assert not old["current"]


async def test_the_current_version_can_go_back_to_an_older_one_but_not_to_a_missing_one(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        character = await make_character(
            client,
            project=await make_project(client),
            versions=[definition(), definition(outfit="b"), definition(outfit="c")],
        )
        cid = character["id"]
        back = await client.put(f"/v1/characters/{cid}/current", {"version": 1})
        assert back.status == 200 and back.json["current_version"] == 1

        missing = await client.put(f"/v1/characters/{cid}/current", {"version": 7})
        assert missing.status == 422
        assert missing.problem("version")["suggestions"] == ["1", "2", "3"]

        zero = await client.put(f"/v1/characters/{cid}/current", {"version": 0})
        assert zero.status == 422
        assert (await client.get(f"/v1/characters/{cid}")).json["current_version"] == 1


async def test_attributes_are_set_replaced_and_deleted(pipeline_settings: Settings) -> None:
    async with ingest(pipeline_settings) as client:
        character = await make_character(
            client, project=await make_project(client), attributes={"age": "19"}
        )
        base = f"/v1/characters/{character['id']}/attributes"

        added = await client.put(f"{base}/hair", {"value": "blue"})
        assert added.status == 201 and added.json["attributes"] == {"age": "19", "hair": "blue"}
        changed = await client.put(f"{base}/hair", {"value": "black"})
        assert changed.status == 200 and changed.json["attributes"]["hair"] == "black"

        replaced = await client.put(base, {"attributes": {"role": "pilot"}})
        assert replaced.json["attributes"] == {"role": "pilot"}

        assert (await client.delete(f"{base}/role")).status == 204
        assert (await client.delete(f"{base}/role")).status == 404
        assert (await client.put(f"{base}/..%2Fx", {"value": "v"})).status in (400, 404)
        assert (await client.get(f"/v1/characters/{character['id']}")).json["attributes"] == {}


async def test_a_definition_beyond_the_limits_is_422_listing_every_field(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        reply = await client.post(
            "/v1/characters",
            {
                "name": "  ",
                "project": "../x",
                "definition": {
                    "appearance": "a" * 2001,
                    "trigger_words": ["ok", "with, comma"],
                    "prompt_fragments": ["x"] * 51,
                    "lora": {"name": "l", "strength": 9},
                    "default_seed": -1,
                    "colour": "red",
                    "outfit": "nul\x00byte",
                },
                "attributes": {"bad key!": "v"},
            },
        )
        assert reply.status == 422
        assert {
            "name",
            "project",
            "definition.appearance",
            "definition.trigger_words[1]",
            "definition.prompt_fragments",
            "definition.lora.strength",
            "definition.default_seed",
            "definition.colour",
            "definition.outfit",
        } <= reply.fields()
        assert any(f.startswith("attributes") for f in reply.fields())


async def test_characters_are_listed_by_name_with_search_and_cursor_pages(
    pipeline_settings: Settings, seeded: object
) -> None:
    async with ingest(pipeline_settings) as client:
        project = await make_project(client)
        names = [f"Zed {letter} {project}" for letter in "ecadb"]
        for name in names:
            await make_character(client, project=project, name=name)

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"project": project, "q": project, "limit": "2"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/characters", params=params)).json
            seen += [c["name"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(names, key=str.lower)

        with_globals = (await client.get("/v1/characters", params={"project": project})).json
        listed = [c["name"] for c in with_globals["items"]]
        assert "Kai Nakamura" in listed and names[0] in listed

        bad_cursor = await client.get("/v1/characters", params={"cursor": "not-a-cursor"})
        assert bad_cursor.status == 400
        bad_limit = await client.get("/v1/characters", params={"limit": "0", "colour": "x"})
        assert bad_limit.status == 422 and bad_limit.fields() == {"limit", "colour"}


async def test_an_unknown_or_malformed_character_id_is_404_or_400(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        missing = await client.get("/v1/characters/00000000-0000-0000-0000-000000000001")
        assert missing.status == 404
        malformed = await client.get("/v1/characters/kai")
        assert malformed.status == 400 and malformed.problem("character_id")["code"] == "bad_id"


# --------------------------------------------------------------------------- references


async def _character(client: IngestClient) -> dict[str, Any]:
    return await make_character(client, project=await make_project(client))


def _multipart(data: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename="ref.bin", content_type="application/octet-stream")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def test_a_png_uploaded_as_multipart_is_stored_by_sha256_and_served_back(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        character = await _character(client)
        png = image_bytes("PNG", (96, 128))
        reply = await client.request(
            "POST",
            f"/v1/characters/{character['id']}/references",
            data=_multipart(png, kind="full-body", weight="0.6"),
        )
        assert reply.status == 201, reply.raw
        sha = hashlib.sha256(png).hexdigest()
        assert {
            k: reply.json[k]
            for k in ("sha256", "kind", "weight", "mime", "width", "height", "bytes")
        } == {
            "sha256": sha,
            "kind": "full-body",
            "weight": 0.6,
            "mime": "image/png",
            "width": 96,
            "height": 128,
            "bytes": len(png),
        }
        assert reply.json["url"].endswith(f"/v1/references/{sha}")
        assert (pipeline_settings.reference_root / sha[:2] / sha).read_bytes() == png

        served = await client.get(f"/v1/references/{sha}")
        assert served.status == 200 and served.raw == png
        assert served.headers["Content-Type"] == "image/png"
        document = (await client.get(f"/v1/characters/{character['id']}")).json
        assert [r["sha256"] for r in document["references"]] == [sha]


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
async def test_jpeg_and_webp_sent_as_the_raw_body_are_accepted(
    pipeline_settings: Settings, fmt: str, mime: str
) -> None:
    async with ingest(pipeline_settings) as client:
        character = await _character(client)
        data = image_bytes(fmt)
        reply = await client.request(
            "POST",
            f"/v1/characters/{character['id']}/references",
            data=data,
            headers={"Content-Type": mime},
            params={"kind": "expression", "weight": "1.5"},
        )
        assert reply.status == 201, reply.raw
        assert (reply.json["mime"], reply.json["kind"], reply.json["weight"]) == (
            mime,
            "expression",
            1.5,
        )


async def test_the_same_image_again_is_the_same_reference_and_with_another_kind_a_409(
    pipeline_settings: Settings,
) -> None:
    async with ingest(pipeline_settings) as client:
        path = f"/v1/characters/{(await _character(client))['id']}/references"
        png = image_bytes()
        first = await client.request("POST", path, data=_multipart(png, kind="face"))
        again = await client.request("POST", path, data=_multipart(png, kind="face"))
        other = await client.request("POST", path, data=_multipart(png, kind="outfit"))
        assert (first.status, again.status, other.status) == (201, 200, 409)
        assert again.json == first.json
        assert (await client.delete(f"{path}/{first.json['sha256']}")).status == 204
        assert (await client.delete(f"{path}/{first.json['sha256']}")).status == 404


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("gif", 415, "not_an_image"),
        ("text", 415, "not_an_image"),
        ("truncated png", 422, "corrupt_image"),
        ("5000x5000 png", 413, "too_many_pixels"),
        ("decompression bomb", 413, "too_many_pixels"),
        ("over 10 MB", 413, "too_large"),
        ("wrong content type", 415, "unsupported_media_type"),
        ("unknown kind", 422, "literal_error"),
        ("weight out of range", 422, "less_than_equal"),
        ("no image part", 422, "missing"),
    ],
)
async def test_an_unacceptable_upload_is_refused_with_the_right_status(
    pipeline_settings: Settings, case: str, status: int, code: str
) -> None:
    uploads: dict[str, Callable[[], tuple[Any, dict[str, str]]]] = {
        "gif": lambda: (_multipart(image_bytes("GIF")), {}),
        "text": lambda: (_multipart(b"hello, I am not an image"), {}),
        "truncated png": lambda: (_multipart(truncated(image_bytes("PNG", (300, 300), "red"))), {}),
        "5000x5000 png": lambda: (_multipart(huge_canvas_png(5000, 5000)), {}),
        "decompression bomb": lambda: (_multipart(huge_canvas_png(15000, 15000)), {}),
        "over 10 MB": lambda: (b"\x89PNG" + bytes(MAX_IMAGE_BYTES), {"Content-Type": "image/png"}),
        "wrong content type": lambda: (b"{}", {"Content-Type": "text/plain"}),
        "unknown kind": lambda: (_multipart(image_bytes(), kind="portrait"), {}),
        "weight out of range": lambda: (_multipart(image_bytes(), weight="3"), {}),
        "no image part": lambda: (
            aiohttp.FormData({"kind": "face"}, default_to_multipart=True),
            {},
        ),
    }
    data, headers = uploads[case]()
    async with ingest(pipeline_settings) as client:
        character = await _character(client)
        reply = await client.request(
            "POST", f"/v1/characters/{character['id']}/references", data=data, headers=headers
        )
        assert reply.status == status, reply.raw
        assert code in reply.codes()
        assert (await client.get(f"/v1/characters/{character['id']}")).json["references"] == []
