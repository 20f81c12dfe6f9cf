"""Hostile reference-image uploads (``POST /v1/characters/{id}/references``).

Not images, truncated or corrupt images, decompression bombs, formats ingest does not
take, oversize files, lying content types, traversal in the part's file name, and
bad ``kind``/``weight`` fields: each is refused with a reason, nothing is stored, and
the character keeps no reference.
"""

from __future__ import annotations

import io
import random
import uuid
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.hostile.conftest import HostileEnv
from tests.hostile.test_http import refusal_problem, run_all
from tests.support.chaos_hostile import MARKER, STRINGS, hostile_images

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CATEGORY = "reference uploads"


def valid_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 90)).save(out, format="PNG")
    return out.getvalue()


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


async def test_hostile_reference_uploads_are_refused(hostile: HostileEnv, concurrency: int) -> None:
    env = hostile
    async with env.http.post(
        f"{env.ingest}/v1/characters",
        json={"name": f"Upload target {uuid.uuid4().hex[:8]}", "definition": {"appearance": "x"}},
    ) as reply:
        assert reply.status == 201, await reply.text()
        target = (await reply.json())["id"]
    url = f"{env.ingest}/v1/characters/{target}/references"
    stored_before = files(env.settings.reference_root)
    rng = random.Random(7005)
    good = valid_png()

    def multipart(
        data: bytes,
        *,
        filename: str,
        kind: str = "face",
        weight: str = "1.0",
        field: str = "image",
        content_type: str = "image/png",
    ) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field(field, data, filename=filename, content_type=content_type)
        form.add_field("kind", kind)
        form.add_field("weight", weight)
        return form

    def upload(data: bytes, **kwargs: str):  # type: ignore[no-untyped-def]
        async def send(http: aiohttp.ClientSession) -> tuple[int, bytes]:
            async with http.post(url, data=multipart(data, **kwargs)) as reply:
                return reply.status, await reply.read()

        return send

    def raw(data: bytes, content_type: str, query: dict[str, str]):  # type: ignore[no-untyped-def]
        async def send(http: aiohttp.ClientSession) -> tuple[int, bytes]:
            async with http.post(
                url, data=data, params=query, headers={"Content-Type": content_type}
            ) as reply:
                return reply.status, await reply.read()

        return send

    sends = []
    for name, data in hostile_images(420, seed=51, valid_png=good):
        filename = rng.choice(["a.png", f"../../{MARKER}.png", f"/tmp/{MARKER}.png", "x\x00.png"])
        if rng.random() < 0.5:
            sends.append(
                (f"{name} as multipart", upload(data, filename=filename.replace("\x00", "")))
            )
        else:
            kind = rng.choice(["image/png", "image/jpeg", "application/octet-stream", "image/webp"])
            sends.append((f"{name} raw as {kind}", raw(data, kind, {"kind": "face"})))
    # A real image with hostile fields: refused for the fields, not stored either.
    for _ in range(60):
        bad = rng.choice(
            [
                {"kind": rng.choice(STRINGS[:40]).replace("\x00", "")},
                {"weight": rng.choice(["-1", "2.5", "NaN", "inf", "heavy", "1e309"])},
                {"field": rng.choice(["img", "images", "../image", ""])},
            ]
        )
        sends.append((f"valid png with {bad}", upload(good, filename="ok.png", **bad)))
    for index in range(20):
        sends.append((f"raw with unknown query {index}", raw(good, "image/png", {"colour": "red"})))
        sends.append((f"text/plain upload {index}", raw(good, "text/plain", {"kind": "face"})))
    await run_all(env, CATEGORY, sends, concurrency=min(concurrency, 8))

    assert files(env.settings.reference_root) == stored_before, "a refused upload was stored"
    async with env.http.get(f"{env.ingest}/v1/characters/{target}") as reply:
        document = await reply.json()
    assert not document.get("references"), document["references"]
    assert refusal_problem(201, b"{}") is not None
    await env.aftermath()
