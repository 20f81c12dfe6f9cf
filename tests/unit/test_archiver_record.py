"""The job's record in the PNG: ComfyUI's chunks kept or replaced, ours added, reproducibly."""

import hashlib
import uuid
from typing import Any

import pytest

from services.archiver.pngmeta import JOB_CHUNK, NotAnImage, read_text_chunks, stamp_png
from services.archiver.record import asset_row, job_record
from shared.events import JobRendered
from tests.support.archive_backend import UI_WORKFLOW, make_png
from tests.support.archive_jobs import WORKFLOW, rendered, spec_for


def event_and_record() -> tuple[JobRendered, dict[str, Any]]:
    spec = spec_for(episode=None)
    event = rendered(uuid.uuid4(), spec, "http://comfy:8188", ["a.png"])
    return event, job_record(event, 0, event.outputs[0], "ab" * 32)


def test_the_record_names_everything_needed_to_render_again() -> None:
    _, record = event_and_record()
    assert record["prompt"] == "rooftop at dusk" and record["negative_prompt"] == "blurry"
    assert record["seed"] == 1207 and record["template"] == "txt2img"
    assert record["characters"][0]["name"] == "Kai Nakamura"
    assert record["characters"][0]["version"] == 3
    assert (record["backend"], record["attempt"]) == ("http://comfy:8188", 1)
    assert record["source"]["sha256"] == "ab" * 32


def test_stamping_keeps_comfyuis_workflow_replaces_prompt_and_is_reproducible() -> None:
    _, record = event_and_record()
    source = make_png(3)
    first = stamp_png(source, workflow=WORKFLOW, record=record)
    again = stamp_png(source, workflow=WORKFLOW, record=record)
    assert hashlib.sha256(first.data).digest() == hashlib.sha256(again.data).digest()
    chunks = read_text_chunks(first.data)
    assert set(chunks) == {"prompt", "workflow", JOB_CHUNK}
    assert '"KSampler"' in chunks["prompt"] and "stale" not in chunks["prompt"]
    assert '"SaveImage"' in chunks["workflow"] and str(UI_WORKFLOW["version"]) in chunks["workflow"]


def test_the_row_files_a_missing_segment_as_unassigned() -> None:
    event, record = event_and_record()
    key = f"neon-skies/unassigned/rooftop-dusk/shot-012/{event.job_id}/01.png"
    row = asset_row(event, record, key=key, sha256="0" * 64, width=1, height=1, size=1)
    assert (row["episode"], row["scene"], row["shot"]) == ("unassigned", "rooftop-dusk", "shot-012")


def test_something_that_is_not_an_image_is_refused() -> None:
    with pytest.raises(NotAnImage):
        stamp_png(b"<html>502 Bad Gateway</html>", workflow={}, record={})
