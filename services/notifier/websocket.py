"""``/v1/ws``: watchers subscribe to a job, a project or an event-type pattern.

Client → server (JSON text frames; ``id`` names the subscription, default "1", "2"…)::

    {"action": "subscribe", "job_id": "…", "since": 3}          # seq last received
    {"action": "subscribe", "project": "neon-skies", "since": 1207}  # cursor last received
    {"action": "subscribe", "project": "neon-skies", "events": "job.progress"}
    {"action": "subscribe", "events": "job.failed.*"}            # live only
    {"action": "unsubscribe", "id": "2"}

Server → client::

    {"type": "subscribed", "id": "1", "kind": "job", "since": 3, ...}
    {"type": "event", "sub": "1", "seq": 4, "job_id": "…", "project": "…",
     "event_type": "job.progress", "state": "rendering", "recorded_at": "…",
     "cursor": 1208, "event": {…}}                                # cursor: project streams
    {"type": "overflow", "resubscribe": [{"action": "subscribe", …, "since": …}]}
    {"type": "unsubscribed", "id": "2"}
    {"type": "error", "errors": [{"field": …, "message": …}]}

Every (job, seq) is sent at most once per subscription, and a job or project
subscription never skips one. See docs/progress.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.notifier.access import allowed_projects, guarded
from services.notifier.config import NotifierOptions
from services.notifier.delivery import deliver
from services.notifier.history import LedgerReader
from services.notifier.hub import Hub, Watcher
from services.notifier.metrics import WS_WATCHERS
from services.notifier.notes import Note
from services.notifier.streams import EventFilter, Stream
from services.notifier.watching import SubscriptionError, Watching
from shared.events import SLUG_PATTERN
from shared.logging import get_logger

log = get_logger(__name__)

MAX_CLIENT_FRAME = 4096
MAX_JOB_SEQ = 2**31 - 1
MAX_CURSOR = 2**63 - 1
MAX_SUBSCRIPTIONS = 100
EVENTS_PATTERN = r"^[a-z_#*]+(\.[a-z0-9_#*-]+)*$"


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["subscribe", "unsubscribe"]
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    job_id: uuid.UUID | None = None
    project: str | None = Field(default=None, pattern=SLUG_PATTERN, max_length=64)
    events: str | None = Field(default=None, pattern=EVENTS_PATTERN, max_length=100)
    #: Strict: `true` or "12" is an error, not a resume point.
    since: int | None = Field(default=None, ge=0, le=MAX_CURSOR, strict=True)

    @model_validator(mode="after")
    def _coherent(self) -> ClientFrame:
        if self.action == "unsubscribe":
            if self.id is None:
                raise ValueError("unsubscribe needs the subscription's id")
            return self
        if self.job_id is None and self.project is None and self.events is None:
            raise ValueError("subscribe to a job_id, a project or an events pattern")
        if self.job_id is not None and self.project is not None:
            raise ValueError("subscribe to a job_id or a project, not both")
        if self.since is not None and self.job_id is None and self.project is None:
            raise ValueError("since resumes a job or project subscription")
        if self.since is not None and self.job_id is not None and self.since > MAX_JOB_SEQ:
            # A job's seq is a PostgreSQL integer; nothing beyond it can ever be missed.
            raise ValueError(f"since is a job sequence number, at most {MAX_JOB_SEQ}")
        return self


class WsOutlet:
    transport = "ws"

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self._transport = request.transport

    async def send(self, stream: Stream, note: Note) -> None:
        await self.ws.send_str(note.ws_frame(stream.sub))

    async def heartbeat(self) -> None:
        return None  # aiohttp pings

    async def overflow(self, resume: list[dict[str, Any]]) -> None:
        await self.ws.send_str(json.dumps({"type": "overflow", "resubscribe": resume}))
        await self.ws.close(
            code=WSCloseCode.POLICY_VIOLATION, message=b"overflow: resubscribe with since"
        )

    def done_after(self, note: Note) -> bool:
        return False

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _errors(*problems: tuple[str, str]) -> str:
    return json.dumps(
        {"type": "error", "errors": [{"field": f, "message": m} for f, m in problems]}
    )


class WebSocketApi:
    def __init__(
        self, *, hub: Hub, reader: LedgerReader, options: NotifierOptions | None = None
    ) -> None:
        self.hub = hub
        self.reader = reader
        self.watching = Watching(hub, reader)
        self.options = options or NotifierOptions()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/ws", guarded(self.handle, query_key=True))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Open a watcher socket (see the module docstring for the protocol)."""
        ws = web.WebSocketResponse(
            heartbeat=self.options.heartbeat_seconds,
            max_msg_size=MAX_CLIENT_FRAME,
            compress=False,  # one frame goes to many sockets: no per-socket deflate
        )
        await ws.prepare(request)
        outlet = WsOutlet(ws, request)
        watcher = Watcher(
            buffer=self.options.watcher_buffer,
            projects=allowed_projects(request),
            transport="ws",
            grace=self.options.overflow_grace_seconds,
            abort=outlet.abort,
        )
        self.hub.add(watcher)
        WS_WATCHERS.inc()
        sender = asyncio.create_task(self._send(watcher, outlet))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_frame(ws, watcher, message.data)
                elif message.type == WSMsgType.BINARY:
                    await ws.send_str(_errors(("frame", "send JSON text frames")))
        except ConnectionError:
            pass
        finally:
            self.hub.remove(watcher)
            WS_WATCHERS.dec()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _send(self, watcher: Watcher, outlet: WsOutlet) -> None:
        try:
            await deliver(watcher, outlet, self.reader)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("notifier.ws_send_stopped", error=repr(exc))
        except Exception:
            # The ledger could not be read (a gap to fill): the client resumes by id.
            log.exception("notifier.ws_send_failed")
        finally:
            with contextlib.suppress(Exception):
                await outlet.ws.close()

    async def _on_frame(self, ws: web.WebSocketResponse, watcher: Watcher, data: str) -> None:
        try:
            frame = ClientFrame.model_validate_json(data)
        except ValidationError as exc:
            problems = [
                (".".join(str(p) for p in e["loc"]) or "frame", e["msg"])
                for e in exc.errors(include_url=False)
            ]
            await ws.send_str(_errors(*problems))
            return
        if frame.action == "unsubscribe":
            assert frame.id is not None
            self.hub.remove_stream(watcher, frame.id)
            await ws.send_str(json.dumps({"type": "unsubscribed", "id": frame.id}))
            return
        sub = frame.id or str(len(watcher.streams) + 1)
        while frame.id is None and sub in watcher.streams:
            sub = str(int(sub) + 1)
        if sub in watcher.streams:
            await ws.send_str(_errors(("id", f"a subscription {sub!r} already exists")))
            return
        if len(watcher.streams) >= MAX_SUBSCRIPTIONS:
            await ws.send_str(_errors(("action", f"at most {MAX_SUBSCRIPTIONS} subscriptions")))
            return
        try:
            await self._subscribe(ws, watcher, frame, sub)
        except SubscriptionError as exc:
            await ws.send_str(_errors((exc.field, exc.message)))
        except (ConnectionError, RuntimeError):
            raise
        except Exception:
            log.exception("notifier.subscribe_failed")
            self.hub.remove_stream(watcher, sub)
            await ws.send_str(_errors(("action", "the ledger is unavailable; try again")))

    async def _subscribe(
        self, ws: web.WebSocketResponse, watcher: Watcher, frame: ClientFrame, sub: str
    ) -> None:
        events = EventFilter(frame.events) if frame.events is not None else None

        async def announce(start: int | None) -> None:
            ack = {
                "type": "subscribed",
                "id": sub,
                "job_id": str(frame.job_id) if frame.job_id else None,
                "project": frame.project,
                "events": frame.events,
                "since": start,
            }
            await ws.send_str(json.dumps(ack))

        if frame.job_id is not None:
            await self.watching.job(
                watcher, sub, frame.job_id, since=frame.since or 0, events=events, announce=announce
            )
        elif frame.project is not None:
            await self.watching.project(
                watcher, sub, frame.project, since=frame.since, events=events, announce=announce
            )
        else:
            assert events is not None
            self.watching.pattern(watcher, sub, events)
            await announce(None)
