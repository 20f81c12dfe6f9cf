"""Test clients of the notifier: a WebSocket watcher and an SSE reader."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from shared.settings import Settings

FINAL = {"completed", "failed", "cancelled", "rejected"}


def notifier_url(settings: Settings, path: str) -> str:
    return f"http://127.0.0.1:{settings.notifier_port}{path}"


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


class WsWatcher:
    """One socket on ``/v1/ws``; frames are read explicitly, never in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def subscribe(self, **fields: Any) -> dict[str, Any]:
        """Subscribe; returns the server's answer (``subscribed`` or ``error``)."""
        await self.send({"action": "subscribe", **fields})
        while True:
            frame = await self.frame()
            if frame["type"] in ("subscribed", "error"):
                return frame
            raise AssertionError(f"event before the subscription was acknowledged: {frame}")

    async def frame(self, timeout: float = 30.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {message.type!r} {message.data!r}")
        frame: dict[str, Any] = json.loads(message.data)
        return frame

    async def events_until(
        self, done: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Event frames up to and including the first one ``done`` accepts."""
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame()
                if frame["type"] != "event":
                    raise AssertionError(f"unexpected frame {frame}")
                events.append(frame)
                if done(frame):
                    return events

    async def close(self) -> None:
        await self.ws.close()


async def connect(
    client: aiohttp.ClientSession, settings: Settings, *, key: str | None = None
) -> WsWatcher:
    ws = await client.ws_connect(notifier_url(settings, "/v1/ws"), headers=auth(key))
    return WsWatcher(ws)


@dataclasses.dataclass
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


async def sse(
    client: aiohttp.ClientSession,
    url: str,
    *,
    last_event_id: str | None = None,
    key: str | None = None,
) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream as a browser would (``id`` sticks across events)."""
    headers = auth(key)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with client.get(url, headers=headers) as response:
        if response.status != 200:
            raise PermissionError(response.status, await response.text())
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event_id, name, data, has_id = last_event_id, "message", "", False
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    yield SseEvent(event_id, name, json.loads(data))
                elif has_id:  # an id alone moves the resume point (no event is fired)
                    yield SseEvent(event_id, "id", {})
                name, data, has_id = "message", "", False
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id, has_id = value, True
            elif field == "event":
                name = value
            elif field == "data":
                data += value
