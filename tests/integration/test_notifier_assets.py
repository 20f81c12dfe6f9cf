"""The archive's read API on the notifier: find images, read their record, fetch the PNG."""

from __future__ import annotations

import hashlib
import uuid
from functools import partial
from typing import Any

import aiohttp
import pytest

from services.archiver.main import create_app as archiver_app
from services.notifier.main import build as build_notifier
from shared.auth import create_key
from shared.events import CharacterDefinition, CharacterSnapshot
from shared.settings import Settings
from tests.support.archive_backend import ImageBackend, make_png, png_text
from tests.support.archive_jobs import insert_job, kai, publisher, rendered, spec_for
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually
from tests.support.watchers import auth, notifier_url

pytestmark = pytest.mark.integration

YUKI = CharacterSnapshot(
    character_id=uuid.uuid5(uuid.NAMESPACE_URL, "yuki"),
    name="Yuki Tanaka",
    version=1,
    version_id=uuid.uuid5(uuid.NAMESPACE_URL, "yuki/1"),
    definition=CharacterDefinition(appearance="red scarf"),
)


async def get_json(
    client: aiohttp.ClientSession, url: str, key: str | None = None
) -> tuple[int, Any]:
    async with client.get(url, headers=auth(key)) as response:
        return response.status, await response.json()


async def test_archived_images_are_found_by_project_shot_and_character_and_served(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ImageBackend() as backend:
        for n in range(1, 5):
            backend.add(f"img{n}.png", make_png(n * 60))
        settings = pipeline_settings.model_copy(
            update={"comfyui_urls": [backend.url], "require_api_keys": True}
        )
        reader, _ = await create_key(records.sessions, name="all", scopes=["read"])
        limited, _ = await create_key(
            records.sessions, name="gallery", scopes=["read"], projects=["gallery"]
        )
        kai_shot = spec_for(project="gallery", episode="ep01", batch_size=2)
        yuki_shot = spec_for(project="gallery", episode="ep02", characters=[YUKI, kai()])
        secret_shot = spec_for(project="secret")
        renders = [
            (kai_shot, ["img1.png", "img2.png"]),
            (yuki_shot, ["img3.png"]),
            (secret_shot, ["img4.png"]),
        ]
        jobs = [await insert_job(records.sessions, spec) for spec, _ in renders]
        async with (
            running(archiver_app(settings)),
            running(build_notifier(settings).app),
            publisher(settings) as bus,
            aiohttp.ClientSession() as client,
        ):
            # One after the other, so "oldest first" has one answer
            for job_id, (spec, names) in zip(jobs, renders, strict=True):
                await bus.publish(rendered(job_id, spec, backend.url, names))
                await eventually(partial(records.final_state, job_id), what="archived")

            def url(path: str) -> str:
                return notifier_url(settings, path)

            # A project's images, oldest first, with their place in the project
            status, page = await get_json(client, url("/v1/projects/gallery/assets"), reader)
            assert status == 200 and page["next_cursor"] is None
            listed = page["assets"]
            assert [(a["job_id"], a["index"]) for a in listed] == [
                (str(jobs[0]), 0), (str(jobs[0]), 1), (str(jobs[1]), 0)
            ]  # fmt: skip
            assert [a["episode"] for a in listed] == ["ep01", "ep01", "ep02"]

            # Filters: shot segments, character by name (any case) or by id, time
            query = "/v1/projects/gallery/assets?episode=ep02"
            assert [
                a["job_id"] for a in (await get_json(client, url(query), reader))[1]["assets"]
            ] == [str(jobs[1])]
            by_name = (
                await get_json(
                    client, url("/v1/projects/gallery/assets?character=kai%20nakamura"), reader
                )
            )[1]
            assert len(by_name["assets"]) == 3
            by_id = (
                await get_json(
                    client,
                    url(f"/v1/projects/gallery/assets?character={YUKI.character_id}"),
                    reader,
                )
            )[1]
            assert [a["job_id"] for a in by_id["assets"]] == [str(jobs[1])]
            later = (
                await get_json(
                    client, url("/v1/projects/gallery/assets?since=2999-01-01T00:00Z"), reader
                )
            )[1]
            assert later["assets"] == []
            status, problems = await get_json(
                client,
                url("/v1/projects/gallery/assets?limit=0&episode=EP%201&since=yesterday"),
                reader,
            )
            assert status == 400
            assert {e["field"] for e in problems["errors"]} == {"limit", "episode", "since"}

            # Cursor pagination: one at a time, no repeats, an end
            seen: list[str] = []
            cursor = ""
            while True:
                status, page = await get_json(
                    client, url(f"/v1/projects/gallery/assets?limit=1&cursor={cursor}"), reader
                )
                seen += [a["id"] for a in page["assets"]]
                if page["next_cursor"] is None:
                    break
                cursor = page["next_cursor"]
            assert seen == [a["id"] for a in listed]

            # One image's metadata carries the job's record; its file is the archived PNG
            first = listed[0]
            status, document = await get_json(client, url(f"/v1/assets/{first['id']}"), reader)
            assert status == 200
            assert document["record"]["job_id"] == str(jobs[0])
            assert document["record"]["seed"] == 1207
            async with client.get(url(first["links"]["file"]), headers=auth(reader)) as response:
                assert response.status == 200
                assert response.content_type == "image/png"
                body = await response.read()
                etag = response.headers["ETag"]
            assert body == (settings.asset_root / first["path"]).read_bytes()
            assert hashlib.sha256(body).hexdigest() == first["sha256"] == etag.strip('"')
            assert png_text(body)["anime_job"]["job_id"] == str(jobs[0])
            headers = {**auth(reader), "If-None-Match": etag}
            async with client.get(url(first["links"]["file"]), headers=headers) as response:
                assert response.status == 304

            # A key limited to "gallery" cannot list "secret" nor read its images
            secret = (await get_json(client, url("/v1/projects/secret/assets"), reader))[1]
            secret_id = secret["assets"][0]["id"]
            assert (await get_json(client, url("/v1/projects/secret/assets"), limited))[0] == 403
            assert (await get_json(client, url(f"/v1/assets/{secret_id}"), limited))[0] == 404
            async with client.get(url(f"/v1/assets/{secret_id}/file"), headers=auth(limited)) as r:
                assert r.status == 404
            assert (await get_json(client, url("/v1/projects/gallery/assets"), limited))[0] == 200
            # And without a key nothing is served
            assert (await get_json(client, url("/v1/projects/gallery/assets")))[0] == 401
