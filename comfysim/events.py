"""Websocket registry and the outgoing-message publisher.

Mirrors ComfyUI's ``PromptServer``: sockets are kept in a dict keyed by client id
(``sid``), every event is queued (``send_sync``) and one publisher task sends them
in order. ``sid=None`` broadcasts to every registered socket; an unknown sid
drops the message silently. Binary frames use ComfyUI's 4-byte big-endian event
type header (1 = PREVIEW_IMAGE, 4 = PREVIEW_IMAGE_WITH_METADATA).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

log = logging.getLogger("comfysim.events")

#: Binary event types (``server.BinaryEventTypes``).
PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

#: What ``GET /features`` and the feature-flag handshake answer.
SERVER_FEATURES: dict[str, Any] = {
    "supports_preview_metadata": True,
    "max_upload_size": 104857600,
}


@dataclass
class Outgoing:
    """One queued frame (or a control action)."""

    event: str | int
    data: Any
    sid: str | None
    delay: float = 0.0
    action: str | None = None


def encode_preview(image_format: str, image: bytes) -> bytes:
    """Binary frame type 1: u32 event, u32 format (1 JPEG, 2 PNG), image bytes."""
    type_num = 1 if image_format == "JPEG" else 2
    return struct.pack(">I", PREVIEW_IMAGE) + struct.pack(">I", type_num) + image


def encode_preview_with_metadata(
    image_format: str, image: bytes, metadata: dict[str, Any]
) -> bytes:
    """Binary frame type 4: u32 event, u32 JSON length, JSON metadata, image bytes."""
    meta = dict(metadata)
    meta["image_type"] = "image/jpeg" if image_format == "JPEG" else "image/png"
    meta_json = json.dumps(meta).encode("utf-8")
    return (
        struct.pack(">I", PREVIEW_IMAGE_WITH_METADATA)
        + struct.pack(">I", len(meta_json))
        + meta_json
        + image
    )


class Hub:
    """Socket registry + ordered publisher (the parts of PromptServer clients see)."""

    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.sockets_metadata: dict[str, dict[str, Any]] = {}
        self._requests: dict[int, web.BaseRequest] = {}
        # Sockets of a previous (simulated) process must not touch the new registry.
        self._generation = 0
        self._ws_generation: dict[int, int] = {}
        #: client id of the prompt being (or last) executed, like ``server.client_id``.
        self.client_id: str | None = None
        #: node currently executing for that client (for the reconnect ``executing``).
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        #: extra per-frame delay (slow socket), seconds; set globally or per prompt.
        self.global_delay: float = 0.0
        self.prompt_delay: float = 0.0
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the publisher task."""
        if self._task is None:
            self._task = asyncio.create_task(self._publisher(), name="comfysim-publisher")

    async def stop(self) -> None:
        """Stop the publisher and close every socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for ws in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 1.0)
        self.cut_all()
        self.sockets.clear()
        self.sockets_metadata.clear()

    def reset(self) -> None:
        """Forget queued frames and routing state, cutting every connection (restart)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self.cut_all()
        self.sockets.clear()
        self.sockets_metadata.clear()
        self._generation += 1
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.prompt_delay = 0.0

    # ------------------------------------------------------------------ registry

    def register(self, sid: str, ws: web.WebSocketResponse, request: web.BaseRequest) -> None:
        """A socket connected: it takes over ``sid`` (the old socket stays open)."""
        self.sockets.pop(sid, None)
        self.sockets[sid] = ws
        self.sockets_metadata[sid] = {"feature_flags": {}}
        self._requests[id(ws)] = request
        self._ws_generation[id(ws)] = self._generation

    def unregister(self, sid: str, ws: web.WebSocketResponse) -> None:
        """A socket closed: ComfyUI pops ``sid`` even if a newer socket owns it."""
        self._requests.pop(id(ws), None)
        if self._ws_generation.pop(id(ws), self._generation) != self._generation:
            return  # closed by a simulated restart: belongs to the old process
        self.sockets.pop(sid, None)
        self.sockets_metadata.pop(sid, None)

    def supports_preview_metadata(self, sid: str | None) -> bool:
        """Whether ``sid`` negotiated ``supports_preview_metadata``."""
        if sid is None or sid not in self.sockets_metadata:
            return False
        flags = self.sockets_metadata[sid].get("feature_flags", {})
        return isinstance(flags, dict) and flags.get("supports_preview_metadata", False) is True

    def _cut(self, ws: web.WebSocketResponse) -> None:
        request = self._requests.pop(id(ws), None)
        if request is not None and request.protocol is not None:
            # Abrupt: the peer sees the TCP connection end without a close frame.
            request.protocol.force_close()

    def cut_client(self, sid: str | None) -> None:
        """Cut the socket registered under ``sid`` (every socket when None)."""
        if sid is None:
            self.cut_all()
            return
        ws = self.sockets.get(sid)
        if ws is not None:
            self._cut(ws)

    def cut_all(self) -> None:
        """Cut every websocket connection (even ones no longer registered)."""
        for ws in list(self.sockets.values()):
            self._cut(ws)
        for key in list(self._requests):
            request = self._requests.pop(key)
            if request.protocol is not None:
                request.protocol.force_close()

    # ------------------------------------------------------------------ sending

    def send(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """``send_sync``: queue one frame for the publisher."""
        delay = self.global_delay + self.prompt_delay
        self._queue.put_nowait(Outgoing(event, data, sid, delay))

    def send_cut(self, sid: str | None) -> None:
        """Queue a connection cut, so frames queued before it are still delivered."""
        self._queue.put_nowait(Outgoing("", None, sid, 0.0, action="cut"))

    async def send_now(self, event: str, data: Any, sid: str) -> None:
        """Send directly (used for the first frames of a new socket)."""
        ws = self.sockets.get(sid)
        if ws is not None:
            await self._send_socket(ws, {"type": event, "data": data})

    async def _publisher(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                if msg.delay > 0:
                    await asyncio.sleep(msg.delay)
                if msg.action == "cut":
                    self.cut_client(msg.sid)
                    continue
                await self._deliver(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publisher failed to deliver %r", msg.event)

    async def _deliver(self, msg: Outgoing) -> None:
        payload: Any
        if msg.event == PREVIEW_IMAGE:
            fmt, image = msg.data
            payload = encode_preview(fmt, image)
        elif msg.event == PREVIEW_IMAGE_WITH_METADATA:
            (fmt, image), metadata = msg.data
            payload = encode_preview_with_metadata(fmt, image, metadata)
        else:
            payload = {"type": msg.event, "data": msg.data}
        if msg.sid is None:
            targets = list(self.sockets.values())
        elif msg.sid in self.sockets:
            targets = [self.sockets[msg.sid]]
        else:
            targets = []
        for ws in targets:
            await self._send_socket(ws, payload)

    @staticmethod
    async def _send_socket(ws: web.WebSocketResponse, payload: Any) -> None:
        try:
            if isinstance(payload, bytes | bytearray):
                await ws.send_bytes(bytes(payload))
            else:
                await ws.send_json(payload)
        except Exception as exc:  # ComfyUI logs and carries on as well
            log.warning("send error: %s", exc)
