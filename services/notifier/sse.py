"""Server-sent events: ``GET /v1/jobs/{id}/events`` and ``GET /v1/projects/{p}/events``.

Each event is ``id: <resume point>``, ``event: <event type>``, ``data: <entry JSON>``.
For a job stream the id is the entry's sequence number; for a project stream it is
the entry's ledger id (``cursor``). A reconnecting client sends the last id it got as
``Last-Event-ID`` (browsers do this themselves; ``?last_event_id=`` works too) and
receives exactly what came after it. A job stream ends with ``event: end`` once the
job reached a final state. See docs/progress.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.notifier.access import allowed_projects, error, guarded
from services.notifier.config import NotifierOptions
from services.notifier.delivery import deliver
from services.notifier.history import LedgerReader
from services.notifier.hub import Hub, Watcher
from services.notifier.metrics import SSE_WATCHERS
from services.notifier.notes import Note
from services.notifier.streams import EventFilter, Stream
from services.notifier.watching import Announce, SubscriptionError, Watching
from services.notifier.websocket import EVENTS_PATTERN
from shared.events import is_slug
from shared.logging import get_logger

log = get_logger(__name__)

RETRY_MS = 2000


class SseOutlet:
    transport = "sse"

    def __init__(self, request: web.Request, *, ends_with_job: bool) -> None:
        self.request = request
        self.ends_with_job = ends_with_job
        self.last: Note | None = None
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )

    async def open(self, start: int) -> None:
        await self.response.prepare(self.request)
        preamble = f"retry: {RETRY_MS}\n\n"
        if not self.ends_with_job:
            # Where "now" was, so even a client that saw nothing resumes from here.
            preamble += f"id: {start}\n: start\n\n"
        await self.response.write(preamble.encode())

    async def send(self, stream: Stream, note: Note) -> None:
        event_id = note.seq if self.ends_with_job else note.cursor
        frame = f"id: {event_id}\nevent: {note.entry.event_type.value}\ndata: {note.body()}\n\n"
        await self.response.write(frame.encode())
        self.last = note

    async def event(self, name: str, data: dict[str, Any]) -> None:
        await self.response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    async def end(self, last: Note) -> None:
        """The job reached a final state: nothing more will come (clients close)."""
        await self.event(
            "end", {"job_id": str(last.job_id), "seq": last.seq, "state": last.entry.state}
        )

    async def heartbeat(self) -> None:
        await self.response.write(b": keep-alive\n\n")

    async def overflow(self, resume: list[dict[str, Any]]) -> None:
        since = resume[0].get("since") if resume else None
        await self.event("overflow", {"last_event_id": since, "reconnect": True})

    def done_after(self, note: Note) -> bool:
        return self.ends_with_job and note.final

    def abort(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()


#: Job streams resume from a ``seq`` (a PostgreSQL integer), project streams from a
#: ledger id (a bigint); anything beyond is refused before it reaches the database.
MAX_JOB_SEQ = 2**31 - 1
MAX_CURSOR = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def _last_event_id(request: web.Request, *, highest: int) -> int | str | None:
    """The resume point: an int, None when absent, or an error message."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw) or int(raw) > highest:
        return (
            "Last-Event-ID must be the id of an event of this stream "
            f"(a whole number from 0 to {highest})"
        )
    return int(raw)


def _events_filter(request: web.Request) -> EventFilter | str | None:
    pattern = request.query.get("events")
    if pattern is None:
        return None
    if len(pattern) > 100 or not re.match(EVENTS_PATTERN, pattern):
        return "events must be a topic pattern such as job.progress.* or job.#"
    return EventFilter(pattern)


class SseApi:
    def __init__(
        self, *, hub: Hub, reader: LedgerReader, options: NotifierOptions | None = None
    ) -> None:
        self.hub = hub
        self.reader = reader
        self.watching = Watching(hub, reader)
        self.options = options or NotifierOptions()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/jobs/{job_id}/events", guarded(self.job_events, query_key=True))
        app.router.add_get(
            "/v1/projects/{project}/events", guarded(self.project_events, query_key=True)
        )

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        """Every entry of one job (``id:`` = its sequence number), then ``end``."""
        try:
            job_id = uuid.UUID(request.match_info["job_id"])
        except ValueError:
            return error(400, "job_id", "job id must be a UUID")
        since = _last_event_id(request, highest=MAX_JOB_SEQ)
        if isinstance(since, str):
            return error(400, "Last-Event-ID", since)

        async def open_stream(watcher: Watcher, announce: Announce) -> None:
            await self.watching.job(watcher, "job", job_id, since=since or 0, announce=announce)
            last = await self.reader.job_last(job_id)
            if last is not None and last.final and last.seq <= (since or 0):
                raise _Ended(last)

        return await self._serve(request, SseOutlet(request, ends_with_job=True), open_stream)

    async def project_events(self, request: web.Request) -> web.StreamResponse:
        """A project's entries (``id:`` = ledger id), live from now or from Last-Event-ID."""
        project = request.match_info["project"]
        if not is_slug(project):
            return error(400, "project", "project must be a slug")
        since = _last_event_id(request, highest=MAX_CURSOR)
        events = _events_filter(request)
        if isinstance(since, str):
            return error(400, "Last-Event-ID", since)
        if isinstance(events, str):
            return error(400, "events", events)

        async def open_stream(watcher: Watcher, announce: Announce) -> None:
            await self.watching.project(
                watcher, "project", project, since=since, events=events, announce=announce
            )

        return await self._serve(request, SseOutlet(request, ends_with_job=False), open_stream)

    async def _serve(
        self,
        request: web.Request,
        outlet: SseOutlet,
        open_stream: Callable[[Watcher, Announce], Awaitable[None]],
    ) -> web.StreamResponse:
        watcher = Watcher(
            buffer=self.options.watcher_buffer,
            projects=allowed_projects(request),
            transport="sse",
            grace=self.options.overflow_grace_seconds,
            abort=outlet.abort,
        )
        sender: asyncio.Task[str] | None = None

        async def announce(start: int) -> None:
            # The stream is registered: answer 200 and start sending while history loads.
            nonlocal sender
            await outlet.open(start)
            sender = asyncio.create_task(
                deliver(watcher, outlet, self.reader, heartbeat=self.options.heartbeat_seconds)
            )

        self.hub.add(watcher)
        SSE_WATCHERS.inc()
        try:
            try:
                await open_stream(watcher, announce)
            except SubscriptionError as exc:
                return error(404 if exc.field == "job_id" else 403, exc.field, exc.message)
            except _Ended as ended:
                await _cancel(sender)
                await outlet.end(ended.last)
                return outlet.response
            assert sender is not None
            if await sender == "done" and outlet.last is not None:
                await outlet.end(outlet.last)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("notifier.sse_client_gone", error=repr(exc))
        except Exception:
            # The ledger could not be read: end the stream; the client resumes by id.
            log.exception("notifier.sse_failed")
            if not outlet.response.prepared:
                return error(503, "stream", "the ledger is unavailable; try again", "unavailable")
        finally:
            await _cancel(sender)
            self.hub.remove(watcher)
            SSE_WATCHERS.dec()
        return outlet.response


async def _cancel(task: asyncio.Task[str] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class _Ended(Exception):
    """The job had ended before the stream opened: nothing more will come."""

    def __init__(self, last: Note) -> None:
        super().__init__(f"job ended at {last.seq}")
        self.last = last
