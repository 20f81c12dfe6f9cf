"""Watchers that outlive the notifier: WebSocket clients that reconnect and resume.

* :class:`ProjectWatcher` subscribes to a project from the start of its ledger
  (``since: 0``) and, after any disconnect, resubscribes with the last ``cursor`` it
  received.
* :class:`JobsWatcher` subscribes to individual jobs and, after a disconnect,
  resubscribes to each with ``since`` = the last ``seq`` it received for that job.

Both only record what arrives; :func:`contiguity` judges it against the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from typing import Any

import aiohttp

from shared.settings import Settings


class _Socketed:
    def __init__(self, settings: Settings) -> None:
        self.url = f"http://127.0.0.1:{settings.notifier_port}/v1/ws"
        self.seqs: dict[uuid.UUID, list[int]] = defaultdict(list)
        self.reconnects = 0
        self.errors: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _subscribe_all(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        raise NotImplementedError

    def _on_event(self, frame: dict[str, Any]) -> None:
        self.seqs[uuid.UUID(frame["job_id"])].append(int(frame["seq"]))

    async def _loop(self) -> None:
        first = True
        async with aiohttp.ClientSession() as client:
            while True:
                try:
                    async with client.ws_connect(self.url, heartbeat=5) as ws:
                        if not first:
                            self.reconnects += 1
                        first = False
                        self._ws = ws
                        await self._subscribe_all(ws)
                        self.connected.set()
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            frame = json.loads(message.data)
                            if frame["type"] == "event":
                                self._on_event(frame)
                            elif frame["type"] == "error":
                                self.errors.append(frame)
                            # "overflow": the socket closes; we resume from what we hold.
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                finally:
                    self._ws = None
                    self.connected.clear()
                await asyncio.sleep(0.3)


class ProjectWatcher(_Socketed):
    def __init__(self, settings: Settings, project: str) -> None:
        super().__init__(settings)
        self.project = project
        self.cursor = 0

    async def _subscribe_all(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_json(
            {"action": "subscribe", "id": "p", "project": self.project, "since": self.cursor}
        )

    def _on_event(self, frame: dict[str, Any]) -> None:
        super()._on_event(frame)
        if frame.get("cursor") is not None:
            self.cursor = max(self.cursor, int(frame["cursor"]))


class JobsWatcher(_Socketed):
    """Per-job subscriptions (at most 100 per socket, the notifier's limit)."""

    LIMIT = 100

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.jobs: list[uuid.UUID] = []

    async def watch(self, job_id: uuid.UUID) -> bool:
        if len(self.jobs) >= self.LIMIT:
            return False
        self.jobs.append(job_id)
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.send_json(self._frame(job_id))
        return True

    def _frame(self, job_id: uuid.UUID) -> dict[str, Any]:
        got = self.seqs.get(job_id)
        return {
            "action": "subscribe",
            "id": f"j{self.jobs.index(job_id)}",
            "job_id": str(job_id),
            "since": max(got) if got else 0,
        }

    async def _subscribe_all(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for job_id in list(self.jobs):
            await ws.send_json(self._frame(job_id))


def contiguity(
    seqs: dict[uuid.UUID, list[int]], last_seq: dict[uuid.UUID, int]
) -> tuple[int, int, list[str]]:
    """(gaps, repeats, examples) of what a watcher received against the ledger's last seq."""
    gaps = repeats = 0
    examples: list[str] = []
    for job_id, last in last_seq.items():
        got = seqs.get(job_id, [])
        missing = sorted(set(range(1, last + 1)) - set(got))
        repeated = len(got) - len(set(got))
        out_of_order = got != sorted(got)
        if missing:
            gaps += len(missing)
            examples.append(f"{job_id}: missing seq {missing[:5]} of 1..{last}")
        if repeated or out_of_order:
            repeats += repeated or 1
            examples.append(f"{job_id}: received {got}")
    return gaps, repeats, examples[:10]
