"""Small images made on the spot for upload tests (no files, no downloads)."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 80), colour: str = "teal") -> bytes:
    mode = "1" if fmt == "BMP1" else "RGB"
    image = Image.new(mode, size, colour if mode == "RGB" else 0)
    out = io.BytesIO()
    image.save(out, format="BMP" if fmt == "BMP1" else fmt)
    return out.getvalue()


def huge_canvas_png(width: int, height: int) -> bytes:
    """A PNG that claims a big canvas but compresses to little (1-bit, all black)."""
    out = io.BytesIO()
    Image.new("1", (width, height), 0).save(out, format="PNG", optimize=True)
    return out.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]
