"""The job's own record of an image: in the PNG, in the JSON sidecar and in the assets row.

The record is a pure function of the ``job.rendered`` event and the image, with no
clock in it, so archiving the same render twice produces byte-identical files.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from shared.events import JobRendered, OutputImage

#: Version of the record's layout, for readers of old files.
RECORD_VERSION = 1


def job_record(
    event: JobRendered, index: int, output: OutputImage, source_sha256: str
) -> dict[str, Any]:
    """Everything needed to find the image again and render it again."""
    spec = event.spec
    return {
        "record_version": RECORD_VERSION,
        "job_id": str(event.job_id),
        "request_id": spec.request_id,
        "index": index,
        "project": spec.location.project,
        "episode": spec.location.episode,
        "scene": spec.location.scene,
        "shot": spec.location.shot,
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "composed_prompt": spec.composed_prompt,
        "composed_negative": spec.composed_negative,
        "seed": spec.params.seed,
        "params": spec.params.model_dump(mode="json"),
        "template": spec.template,
        "characters": [
            {"name": c.name, "version": c.version, "version_id": str(c.version_id)}
            for c in spec.characters
        ],
        "backend": event.backend,
        "prompt_id": event.prompt_id,
        "attempt": event.attempt,
        "rendered_at": event.occurred_at.isoformat(),
        "render_seconds": event.render_seconds,
        "source": {**output.model_dump(mode="json"), "sha256": source_sha256},
        "correlation_id": event.correlation_id,
    }


def sidecar(
    record: dict[str, Any],
    *,
    key: str,
    sha256: str,
    width: int,
    height: int,
    size: int,
    workflow: dict[str, Any],
) -> bytes:
    """The JSON file next to the PNG: the record, the file's facts and the workflow run."""
    document = {
        **record,
        "path": key,
        "sha256": sha256,
        "width": width,
        "height": height,
        "bytes": size,
        "mime": "image/png",
        "workflow": workflow,
    }
    return json.dumps(document, indent=2, sort_keys=True).encode()


def asset_row(
    event: JobRendered,
    record: dict[str, Any],
    *,
    key: str,
    sha256: str,
    width: int,
    height: int,
    size: int,
) -> dict[str, Any]:
    """The ``assets`` row of one archived image (``key`` is relative to the asset root)."""
    episode, scene, shot = key.split("/")[1:4]
    return {
        "id": uuid.uuid5(event.job_id, f"asset/{record['index']}"),
        "job_id": event.job_id,
        "index": record["index"],
        "project_slug": event.spec.location.project,
        "episode": episode,
        "scene": scene,
        "shot": shot,
        "path": key,
        "sha256": sha256,
        "width": width,
        "height": height,
        "bytes": size,
        "mime": "image/png",
        # The row also names each character's id, for "every image of this character".
        "characters": [
            {"character_id": str(c.character_id), **entry}
            for c, entry in zip(event.spec.characters, record["characters"], strict=True)
        ],
        "character_names": [c.name for c in event.spec.characters],
        "record": record,
    }
