"""Hostile WebSocket frames on the notifier's ``/v1/ws``.

Each frame is answered with ``{"type": "error", "errors": [{field, message}, …]}`` and
the socket stays usable; a frame larger than the 4096-byte limit closes the socket with
1009 (message too big), which is a refusal with a reason too. A valid subscription on
the same socket afterwards still works.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.hostile.conftest import HostileEnv
from tests.support.chaos_hostile import TALLY, hostile_frames

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CATEGORY = "websocket frames"


async def _socket(env: HostileEnv, frames: list[str | bytes]) -> None:
    url = f"{env.notifier}/v1/ws"
    ws = await env.http.ws_connect(url)
    try:
        for frame in frames:
            if ws.closed:
                ws = await env.http.ws_connect(url)
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            message = await ws.receive(timeout=15)
            while message.type == aiohttp.WSMsgType.TEXT and '"type":"event"' in message.data:
                # Events mean an earlier frame subscribed: none may.
                TALLY.bad(CATEGORY, f"an event arrived before the answer to {frame[:200]!r}")
                message = await ws.receive(timeout=15)
            if message.type == aiohttp.WSMsgType.TEXT:
                answer = json.loads(message.data)
                errors = answer.get("errors") or []
                if (
                    answer.get("type") == "error"
                    and errors
                    and all(e.get("message") for e in errors)
                ):
                    TALLY.ok(CATEGORY)
                else:
                    TALLY.bad(CATEGORY, f"{frame[:200]!r} answered {message.data[:300]}")
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                code = ws.close_code
                if code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG and len(frame) > 4096:
                    TALLY.ok(CATEGORY)
                else:
                    TALLY.bad(CATEGORY, f"{frame[:200]!r} closed the socket ({code})")
                await ws.close()
            else:
                TALLY.bad(CATEGORY, f"{frame[:200]!r}: {message.type!r}")
        # The socket (or its successor) still serves a valid subscription.
        if ws.closed:
            ws = await env.http.ws_connect(url)
        await ws.send_json({"action": "subscribe", "project": "neon-skies"})
        answer = json.loads((await ws.receive(timeout=15)).data)
        assert answer["type"] == "subscribed", answer
    finally:
        await ws.close()


async def test_hostile_websocket_frames_are_answered_with_errors(hostile: HostileEnv) -> None:
    frames = hostile_frames(2000, seed=41)
    sockets = 8
    await hostile.valid_traffic("ws-before")
    await asyncio.gather(*(_socket(hostile, frames[i::sockets]) for i in range(sockets)))
    await hostile.valid_traffic("ws-after")
    failures = [f for f in TALLY.failures if f.startswith(f"[{CATEGORY}]")]
    assert not failures, failures[:20]
    await hostile.aftermath()


async def test_resume_points_beyond_the_ledger_range_are_refused(hostile: HostileEnv) -> None:
    url = f"{hostile.notifier}/v1/ws"
    job = "00000000-0000-4000-8000-000000000001"
    for frame in (
        {"action": "subscribe", "project": "neon-skies", "since": 2**63},
        {"action": "subscribe", "project": "neon-skies", "since": 10**30},
        {"action": "subscribe", "job_id": job, "since": 2**31},
        {"action": "subscribe", "job_id": job, "since": 2**63},
    ):
        async with hostile.http.ws_connect(url) as ws:
            await ws.send_json(frame)
            answer = json.loads((await ws.receive(timeout=15)).data)
            assert answer["type"] == "error", (frame, answer)
            await ws.send_json({"action": "subscribe", "id": "ok", "project": "neon-skies"})
            answer = json.loads((await ws.receive(timeout=15)).data)
            assert answer["type"] == "subscribed", (frame, answer)
