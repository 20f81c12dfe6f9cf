"""The archive on the real broker, database and disk: files, metadata, rows, once."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from services.archiver.main import create_app as archiver_app
from shared.events import JobArchived
from shared.settings import Settings
from tests.support.archive_backend import UI_WORKFLOW, ImageBackend, make_png, png_text
from tests.support.archive_jobs import (
    WORKFLOW,
    accepted,
    insert_job,
    listening,
    publisher,
    rendered,
    spec_for,
)
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


def with_backend(settings: Settings, backend: ImageBackend) -> Settings:
    return settings.model_copy(update={"comfyui_urls": [backend.url]})


def job_files(root: Path, job_id: uuid.UUID) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and str(job_id) in p.parts)


async def test_a_three_image_batch_is_filed_by_shot_with_its_metadata_in_each_png(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ImageBackend() as backend:
        names = [f"job_0000{i}_.png" for i in range(1, 4)]
        for shade, name in enumerate(names, start=1):
            backend.add(name, make_png(shade * 40))
        settings = with_backend(pipeline_settings, backend)
        spec = spec_for(batch_size=3)
        job_id = await insert_job(records.sessions, spec)
        async with running(archiver_app(settings)), publisher(settings) as bus:
            # Given an accepted job whose render produced three images
            await bus.publish(accepted(job_id, spec))
            event = rendered(job_id, spec, backend.url, names)
            # When the renderer announces them
            await bus.publish(event)
            state = await eventually(lambda: records.final_state(job_id), what="final state")

    # Then the job completed and the images sit in the shot's folder, numbered
    assert state == "completed"
    folder = settings.asset_root / "neon-skies" / "ep01" / "rooftop-dusk" / "shot-012" / str(job_id)
    assert sorted(p.name for p in folder.iterdir()) == [
        "01.json", "01.png", "02.json", "02.png", "03.json", "03.png"
    ]  # fmt: skip
    rows = await records.assets(job_id)
    assert [r.index for r in rows] == [0, 1, 2]
    for row in rows:
        data = (settings.asset_root / row.path).read_bytes()
        # And each row describes its file exactly
        assert row.path == f"neon-skies/ep01/rooftop-dusk/shot-012/{job_id}/{row.index + 1:02d}.png"
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        assert (row.width, row.height, row.bytes, row.mime) == (64, 48, len(data), "image/png")
        assert row.character_names == ["Kai Nakamura"]
        assert [(c["name"], c["version"]) for c in row.characters] == [("Kai Nakamura", 3)]
        # And the PNG reloads in ComfyUI: the workflow run as `prompt`, the UI graph kept
        chunks = png_text(data)
        assert chunks["prompt"] == WORKFLOW
        assert chunks["workflow"] == UI_WORKFLOW
        # And carries the job's own record, the same as the sidecar and the row
        record = chunks["anime_job"]
        assert record["job_id"] == str(job_id)
        assert record["prompt"] == "rooftop at dusk" and record["negative_prompt"] == "blurry"
        assert record["seed"] == 1207 and record["params"]["batch_size"] == 3
        assert record["template"] == "txt2img"
        assert [(c["name"], c["version"]) for c in record["characters"]] == [("Kai Nakamura", 3)]
        assert (record["backend"], record["attempt"]) == (backend.url, 1)
        sidecar = json.loads((settings.asset_root / row.path).with_suffix(".json").read_text())
        assert {k: sidecar[k] for k in record} == record
        assert (sidecar["sha256"], sidecar["workflow"]) == (row.sha256, WORKFLOW)
        assert row.record == record
    # And the ledger shows the job archived with the three assets
    events = await records.events(job_id)
    assert [e.event_type for e in events][-1] == "job.archived"
    assert [a["path"] for a in events[-1].payload["assets"]] == [r.path for r in rows]


async def test_a_duplicated_job_rendered_creates_one_set_of_files_and_rows(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ImageBackend() as backend:
        for name, shade in [("a1.png", 1), ("a2.png", 2), ("b1.png", 3), ("b2.png", 4)]:
            backend.add(name, make_png(shade * 50))
        settings = with_backend(pipeline_settings, backend)
        # Missing episode, scene and shot: filed under "unassigned"
        spec = spec_for(project="pilot", episode=None, scene=None, shot=None, batch_size=2)
        job_id = await insert_job(records.sessions, spec)
        first = rendered(job_id, spec, backend.url, ["a1.png", "a2.png"])
        # A second render of the same job (a renderer that crashed after publishing)
        second = rendered(job_id, spec, backend.url, ["b1.png", "b2.png"], attempt=2)
        async with (
            running(archiver_app(settings)),
            listening(settings, f"job.archived.{spec.location.project}") as archived_inbox,
            publisher(settings) as bus,
        ):
            # When job.rendered arrives three times: twice the same event, once a re-render
            for event in (first, first, second):
                await bus.publish(event)
            # Then each delivery is answered with job.archived ...
            answers = [
                JobArchived.model_validate_json(await archived_inbox.get()) for _ in range(3)
            ]
        fetched = dict(backend.requests)

    # ... listing the same two assets every time
    assert {tuple(a.path for a in answer.assets) for answer in answers} == {
        tuple(f"pilot/unassigned/unassigned/unassigned/{job_id}/0{i}.png" for i in (1, 2))
    }
    # And there is exactly one set of files and rows: the first render's
    files = job_files(settings.asset_root, job_id)
    assert [f.name for f in files] == ["01.json", "01.png", "02.json", "02.png"]
    rows = await records.assets(job_id)
    assert [r.record["source"]["filename"] for r in rows] == ["a1.png", "a2.png"]
    assert fetched == {"a1.png": 1, "a2.png": 1}
    # And the ledger recorded the duplicate event once and the job completed once
    types = await records.event_types(job_id)
    assert types.count("job.rendered") == 2 and types.count("job.archived") == 1
    assert await records.state(job_id) == "completed"


async def test_identical_images_in_one_render_are_each_their_own_asset(
    pipeline_settings: Settings, records: Records
) -> None:
    """Two outputs are two assets, whatever their bytes (issue 12, item 8).

    This test used to require the opposite (outputs with the same sha256 archived once).
    But a user who asked for two images, and got two files from ComfyUI, must find two
    images in the archive, even when the two happen to be byte-identical (a fixed seed,
    a deterministic sampler). Only the very same file reported twice (same filename,
    subfolder and type) is one image, so one asset.
    """
    async with ImageBackend() as backend:
        # ComfyUI wrote two files with the same picture, and a third one
        backend.add("saved.png", make_png(7))
        backend.add("preview.png", make_png(7))
        backend.add("other.png", make_png(8))
        settings = with_backend(pipeline_settings, backend)
        spec = spec_for(batch_size=3)
        job_id = await insert_job(records.sessions, spec)
        # ... and reported the last one twice (the same file)
        names = ["saved.png", "preview.png", "other.png", "other.png"]
        async with running(archiver_app(settings)), publisher(settings) as bus:
            await bus.publish(rendered(job_id, spec, backend.url, names))
            assert await eventually(lambda: records.final_state(job_id)) == "completed"
        fetched = dict(backend.requests)
    rows = await records.assets(job_id)
    # Then each distinct output is an asset of its own, numbered in order
    assert [r.record["source"]["filename"] for r in rows] == [
        "saved.png",
        "preview.png",
        "other.png",
    ]
    assert [r.index for r in rows] == [0, 1, 2]
    assert rows[0].record["source"]["sha256"] == rows[1].record["source"]["sha256"]
    # And each has its own file on disk
    files = job_files(settings.asset_root, job_id)
    assert [f.name for f in files] == [
        "01.json", "01.png", "02.json", "02.png", "03.json", "03.png"
    ]  # fmt: skip
    assert len({r.path for r in rows}) == 3
    # And the file reported twice was fetched once
    assert fetched == {"saved.png": 1, "preview.png": 1, "other.png": 1}


async def test_an_image_the_backend_no_longer_has_fails_the_job_and_leaves_no_files(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ImageBackend() as backend:
        backend.add("ok.png", make_png(1))
        backend.fail("gone.png", 404)
        settings = with_backend(pipeline_settings, backend)
        spec = spec_for(batch_size=2)
        job_id = await insert_job(records.sessions, spec)
        async with running(archiver_app(settings)), publisher(settings) as bus:
            await bus.publish(rendered(job_id, spec, backend.url, ["ok.png", "gone.png"]))
            assert await eventually(lambda: records.final_state(job_id)) == "failed"
    row = await records.state_row(job_id)
    assert row is not None and row.reason is not None and "404" in row.reason
    assert job_files(settings.asset_root, job_id) == []
    assert await records.assets(job_id) == []
