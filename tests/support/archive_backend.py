"""A stand-in for a ComfyUI backend's ``GET /view``: real PNGs served from memory.

Enough for the archiver (it only fetches finished images). A file can be *gated*: its
request is answered only once the test releases it, so a test knows exactly where an
archiver is when it kills it.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from types import TracebackType
from typing import Any

from aiohttp import web
from PIL import Image, PngImagePlugin

from tests.support.pipeline import free_port

#: The UI graph ComfyUI writes into its PNGs as the ``workflow`` chunk.
UI_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 9, "type": "SaveImage"}], "version": 0.4}


def make_png(shade: int, *, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small, distinct PNG carrying ComfyUI's own text chunks."""
    image = Image.new("RGB", size, (shade % 256, (shade * 7) % 256, (shade * 13) % 256))
    image.putpixel((shade % size[0], 0), (255, 255, 255))
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"stale": "graph as queued"}))
    info.add_text("workflow", json.dumps(UI_WORKFLOW))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


class Gate:
    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()


class ImageBackend:
    """``async with ImageBackend() as backend: backend.add("a.png", make_png(1))``."""

    def __init__(self) -> None:
        self.images: dict[tuple[str, str, str], bytes] = {}
        self.statuses: dict[str, int] = {}
        self.gates: dict[str, Gate] = {}
        self.requests: Counter[str] = Counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    def add(self, filename: str, data: bytes, *, subfolder: str = "", kind: str = "output") -> None:
        self.images[(filename, subfolder, kind)] = data

    def fail(self, filename: str, status: int) -> None:
        self.statuses[filename] = status

    def gate(self, filename: str) -> Gate:
        self.gates[filename] = Gate()
        return self.gates[filename]

    async def _view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename", "")
        key = (filename, request.query.get("subfolder", ""), request.query.get("type", "output"))
        self.requests[filename] += 1
        gate = self.gates.get(filename)
        if gate is not None:
            gate.arrived.set()
            await gate.released.wait()
        if filename in self.statuses:
            return web.Response(status=self.statuses[filename], text="nope")
        data = self.images.get(key)
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="image/png")

    async def __aenter__(self) -> ImageBackend:
        app = web.Application()
        app.router.add_get("/view", self._view)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        for gate in self.gates.values():
            gate.released.set()
        if self._runner is not None:
            await self._runner.cleanup()


def png_text(data: bytes) -> dict[str, Any]:
    """The text chunks of a PNG, JSON-decoded where they are JSON."""
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        chunks: dict[str, str] = dict(getattr(image, "text", {}) or {})
    decoded: dict[str, Any] = {}
    for key, value in chunks.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded
