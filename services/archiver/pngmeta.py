"""PNG metadata in ComfyUI's convention, so a file dropped into ComfyUI reloads its graph.

Text chunks: ``prompt`` (the API-format workflow actually run), ``workflow`` when the
UI graph is known, and ``anime_job`` (this pipeline's record of the job).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin

JOB_CHUNK = "anime_job"


@dataclass(frozen=True)
class StampedImage:
    data: bytes
    width: int
    height: int


class NotAnImage(ValueError):
    pass


def stamp_png(source: bytes, *, workflow: dict[str, Any], record: dict[str, Any]) -> StampedImage:
    """Re-encode ``source`` as PNG carrying our text chunks (and keeping ComfyUI's others)."""
    try:
        with Image.open(io.BytesIO(source)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(source))
        image.load()
    except Exception as exc:
        raise NotAnImage(f"backend returned something that is not an image: {exc}") from exc
    info = PngImagePlugin.PngInfo()
    existing: dict[str, Any] = getattr(image, "text", {}) or {}
    for key, value in existing.items():
        if key not in ("prompt", JOB_CHUNK) and isinstance(value, str):
            info.add_text(key, value)
    info.add_text("prompt", json.dumps(workflow, separators=(",", ":")))
    info.add_text(JOB_CHUNK, json.dumps(record, separators=(",", ":"), default=str))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=4)
    return StampedImage(data=out.getvalue(), width=image.width, height=image.height)


def read_text_chunks(data: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(data)) as image:
        text: dict[str, str] = dict(getattr(image, "text", {}) or {})
        return text
