"""``/v1/ws``: watchers subscribe to a job, a project or an event-type pattern.

Client → server (JSON text frames)::

    {"action": "subscribe", "job_id": "…", "since": 3}
    {"action": "subscribe", "project": "neon-skies"}
    {"action": "subscribe", "events": "job.progress.*"}   # topic-style pattern

Server → client::

    {"type": "subscribed", ...}
    {"type": "event", "seq": 4, "job_id": "…", "event_type": "job.progress", "state": …, "event": {…}}
    {"type": "overflow", "resume": {"<job id>": <last seq>}}   # then the socket closes
    {"type": "error", "errors": [{"field": …, "message": …}]}

A job subscription with ``since`` first replays the ledger after that sequence number,
then continues live; every (job, seq) is sent exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.notifier.history import missed_entries
from services.notifier.hub import Hub, Subscription, Watcher, topic_pattern
from shared.auth import Principal, requires
from shared.db.session import SessionFactory
from shared.events import SLUG_PATTERN, LedgerEntry
from shared.logging import get_logger

log = get_logger(__name__)

MAX_CLIENT_FRAME = 4096


class SubscribeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["subscribe"]
    job_id: uuid.UUID | None = None
    project: str | None = Field(default=None, pattern=SLUG_PATTERN, max_length=64)
    events: str | None = Field(
        default=None, pattern=r"^[a-z_#*]+(\.[a-z0-9_#*-]+)*$", max_length=100
    )
    since: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _something(self) -> SubscribeRequest:
        if self.job_id is None and self.project is None and self.events is None:
            raise ValueError("subscribe to a job_id, a project or an events pattern")
        return self


def entry_frame(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "type": "event",
        "seq": entry.seq,
        "job_id": str(entry.job_id),
        "project": entry.project,
        "event_type": entry.event_type.value,
        "state": entry.state,
        "recorded_at": entry.recorded_at.isoformat(),
        "event": entry.event,
    }


class WebSocketApi:
    def __init__(self, *, hub: Hub, sessions: SessionFactory, buffer: int = 1000) -> None:
        self.hub = hub
        self.sessions = sessions
        self.buffer = buffer

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/ws", self.handle)

    @requires("read")
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Open a watcher socket (see the module docstring for the protocol)."""
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_CLIENT_FRAME)
        await ws.prepare(request)
        principal: Principal | None = request.get("principal")
        watcher = Watcher(buffer=self.buffer, projects=principal.projects if principal else None)
        self.hub.add(watcher)
        sender = asyncio.create_task(self._send_loop(ws, watcher))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    if message.type == WSMsgType.BINARY:
                        await ws.send_json(
                            {
                                "type": "error",
                                "errors": [{"field": "frame", "message": "send JSON text frames"}],
                            }
                        )
                    continue
                await self._on_client_message(ws, watcher, message.data)
        finally:
            self.hub.remove(watcher)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _on_client_message(
        self, ws: web.WebSocketResponse, watcher: Watcher, data: str
    ) -> None:
        try:
            request = SubscribeRequest.model_validate_json(data)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "frame", "message": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            await ws.send_json({"type": "error", "errors": errors})
            return
        if request.events is not None:
            try:
                topic_pattern(request.events)
            except Exception:
                await ws.send_json(
                    {"type": "error", "errors": [{"field": "events", "message": "bad pattern"}]}
                )
                return
        if (
            watcher.allowed_projects is not None
            and request.project is not None
            and request.project not in watcher.allowed_projects
        ):
            await ws.send_json(
                {
                    "type": "error",
                    "errors": [
                        {"field": "project", "message": "this key may not watch that project"}
                    ],
                }
            )
            return
        subscription = Subscription(
            job_id=request.job_id, project=request.project, event_pattern=request.events
        )
        watcher.holding = True
        watcher.subscriptions.append(subscription)
        try:
            await ws.send_json(
                {
                    "type": "subscribed",
                    "job_id": str(request.job_id) if request.job_id else None,
                    "project": request.project,
                    "events": request.events,
                    "since": request.since,
                }
            )
            if request.job_id is not None:
                replay = await missed_entries(
                    self.sessions, job_id=request.job_id, since_seq=request.since
                )
                watcher.delivered[request.job_id] = max(
                    watcher.delivered.get(request.job_id, 0), request.since
                )
                for entry in replay:
                    if watcher.wants(entry):
                        await watcher.queue.put(entry)
        finally:
            held, watcher.held, watcher.holding = watcher.held, [], False
            for entry in held:
                watcher.offer(entry)

    async def _send_loop(self, ws: web.WebSocketResponse, watcher: Watcher) -> None:
        overflow = asyncio.create_task(watcher.overflowed.wait())
        try:
            while True:
                getter = asyncio.create_task(watcher.queue.get())
                done, _ = await asyncio.wait(
                    {getter, overflow}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    entry = getter.result()
                    if watcher.fresh(entry):
                        await ws.send_json(entry_frame(entry))
                    continue
                getter.cancel()
                resume = {str(job): seq for job, seq in watcher.delivered.items()}
                log.warning("notifier.watcher_overflow", jobs=len(resume))
                await ws.send_json({"type": "overflow", "resume": resume})
                await ws.close(code=1008, message=b"buffer overflow: resume with since")
                return
        finally:
            overflow.cancel()
