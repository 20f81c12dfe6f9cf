"""``ComfyUIClient``: one per ComfyUI backend URL.

Typical use::

    async with ComfyUIClient("http://gpu-1:8188") as comfy:
        sub = await comfy.submit(workflow, prompt_id=derive_prompt_id(job_id, attempt))
        run = await comfy.wait(sub.prompt_id, on_progress=report)
        for image in run.outputs:
            png = await comfy.fetch_view(image)

How the protocol traps are handled is written up in ``docs/comfyui-client.md``;
the comments below say why at each place.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import structlog
from pydantic import BaseModel, ValidationError

from shared.events import OutputImage

from .errors import (
    ComfyConnectionError,
    ComfyError,
    ComfyExecutionError,
    ComfyFileNotFound,
    ComfyHTTPError,
    ComfyInterrupted,
    ComfyPromptDeleted,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyServerError,
    ComfyTimeoutError,
    ComfyTransportError,
    ComfyValidationError,
    classify_execution_error,
)
from .models import (
    ExecutionErrorData,
    ExecutionInterruptedData,
    ExecutionSuccessData,
    HistoryEntry,
    HistoryReply,
    PromptAccepted,
    PromptRejected,
    QueueReply,
    SystemStats,
    UploadedFile,
    WsExecuting,
    WsExecutionCached,
    WsExecutionError,
    WsExecutionInterrupted,
    WsExecutionSuccess,
    WsMessage,
    message_prompt_id,
    node_sort_key,
)
from .progress import ProgressTracker, ProgressUpdate, nodes_to_execute, upstream_closure
from .results import PromptLocation, PromptState, RunResult, SubmitResult
from .socket import EventSocket

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

#: ``wait(on_progress=...)``: a plain or async function taking a ProgressUpdate.
ProgressCallback = Callable[[ProgressUpdate], Awaitable[None] | None]

_Outcome = ExecutionSuccessData | ExecutionErrorData | ExecutionInterruptedData


@dataclass(frozen=True, kw_only=True, slots=True)
class ComfyTimeouts:
    """Seconds allowed per kind of call. Every HTTP call has one."""

    #: Websocket handshake, and how long ``submit`` waits for a socket.
    connect: float = 10.0
    #: Small JSON calls (queue, history, interrupt, system_stats ...).
    request: float = 30.0
    #: ``POST /prompt``: the server validates the whole graph before answering.
    submit: float = 60.0
    #: ``GET /object_info`` is ~700 KB and built on demand by the server.
    object_info: float = 120.0
    #: ``GET /view`` and ``POST /upload/image`` move whole images.
    transfer: float = 120.0


@dataclass(frozen=True, slots=True)
class _HTTPReply:
    status: int
    body: bytes
    content_type: str

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


@dataclass(eq=False)
class _PromptState:
    """What the client knows about one prompt it submitted or waits for."""

    prompt_id: str
    #: Socket generation the prompt was submitted under; ``None`` = not submitted
    #: through this client's current connection (re-attach): poll only.
    generation: int | None
    tracker: ProgressTracker
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    updates: collections.deque[ProgressUpdate] = field(
        # Bounded: if nobody waits, old progress is simply dropped.
        default_factory=lambda: collections.deque(maxlen=512)
    )
    finished: bool = False
    outcome: _Outcome | None = None
    executed_nodes: list[str] = field(default_factory=list)
    cached_nodes: list[str] = field(default_factory=list)
    waiting: bool = False
    callback_failures: int = 0

    def apply(self, message: WsMessage) -> None:
        """Fold one websocket message for this prompt into the state."""
        if isinstance(message, WsExecuting):
            node = message.data.node
            if node is None:
                # Trap 2: "executing" with node null is the end of the prompt,
                # whatever the outcome; the outcome comes from the messages below
                # or from history.
                self.finished = True
            elif node not in self.executed_nodes:
                self.executed_nodes.append(node)
        elif isinstance(message, WsExecutionCached):
            self.cached_nodes.extend(n for n in message.data.nodes if n not in self.cached_nodes)
        elif isinstance(message, WsExecutionSuccess | WsExecutionError | WsExecutionInterrupted):
            self.outcome = message.data
        update = self.tracker.feed(message)
        if update is not None:
            self.updates.append(update)
        self.changed.set()


class ComfyUIClient:
    """A trustworthy client for one ComfyUI server.

    One websocket per client, opened before anything is submitted and kept open
    by a background task that reconnects with a fresh clientId. Waiters listen to
    it and fall back to polling ``/history`` and ``/queue`` whenever it cannot
    deliver their events. Every failure is a :class:`ComfyError` whose
    ``transient`` flag says whether to retry.

    Args:
        base_url: e.g. ``http://127.0.0.1:8188`` (an ``/api`` suffix also works).
        session: an aiohttp session to use; when omitted the client owns one.
        timeouts: per-call time limits.
        poll_interval: seconds between history/queue polls while the websocket
            cannot deliver a prompt's events.
        idle_check_interval: while listening, poll anyway after this many seconds
            without an event for the prompt (guards against silently lost events).
        unreachable_grace: how long ``wait`` keeps polling an unreachable server
            before giving up with a transient error.
        transient_exception_types: ``exception_type`` values of execution errors
            to treat as transient (out-of-memory always is).
        heartbeat: websocket ping interval (the server sends none); ``None`` = off.
        reconnect_min, reconnect_max: websocket reconnect back-off bounds.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeouts: ComfyTimeouts | None = None,
        poll_interval: float = 1.0,
        idle_check_interval: float = 15.0,
        unreachable_grace: float = 60.0,
        transient_exception_types: Iterable[str] = (),
        heartbeat: float | None = 20.0,
        reconnect_min: float = 0.2,
        reconnect_max: float = 5.0,
    ) -> None:
        self.url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self.timeouts = timeouts or ComfyTimeouts()
        self.poll_interval = poll_interval
        self.idle_check_interval = idle_check_interval
        self.unreachable_grace = unreachable_grace
        self.transient_exception_types = frozenset(transient_exception_types)
        self._heartbeat = heartbeat
        self._reconnect = (reconnect_min, reconnect_max)
        self._socket: EventSocket | None = None
        self._prompts: dict[str, _PromptState] = {}
        self._interrupt_requested: set[str] = set()
        self._deleted: set[str] = set()
        self._object_info: dict[str, dict[str, Any]] | None = None
        self._object_info_lock = asyncio.Lock()
        self._closed = False

    # ================================================================== lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the websocket and wait for the first connection attempt.

        Raises :class:`ComfyConnectionError` (transient) if that attempt fails
        (refused at once, or no handshake within ``timeouts.connect``); the client
        is then closed again, and the caller decides when to try again.
        """
        if self._socket is not None:
            return
        self._closed = False
        if self._session is None:
            # No session-wide timeout: every call sets its own.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        ws_url = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/ws"
        self._socket = EventSocket(
            self._session,
            ws_url,
            on_message=self._on_message,
            on_state=self._on_socket_state,
            connect_timeout=self.timeouts.connect,
            heartbeat=self._heartbeat,
            reconnect_min=self._reconnect[0],
            reconnect_max=self._reconnect[1],
        )
        self._socket.start()
        if not await self._socket.wait_first_attempt():
            reason = self._socket.last_error or "no answer"
            await self.close()
            raise ComfyConnectionError(
                f"cannot open the websocket to {self.url}: {reason}", maybe_delivered=False
            )

    async def close(self) -> None:
        """Close the websocket (and the session, if the client created it).

        Waiters still running fail with a transient :class:`ComfyConnectionError`.
        """
        self._closed = True
        for state in self._prompts.values():
            state.changed.set()
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def client_id(self) -> str | None:
        """The websocket's current clientId (changes on every reconnect)."""
        return self._socket.client_id if self._socket else None

    @property
    def connected(self) -> bool:
        """Whether the websocket is connected right now."""
        return self._socket is not None and self._socket.connected

    async def drop_connection(self) -> None:
        """Close the websocket as if the network dropped it; it reconnects with a
        fresh clientId. For tests and operational drills."""
        if self._socket is not None:
            await self._socket.drop()

    # ================================================================== submit

    async def submit(
        self,
        workflow: Mapping[str, Any],
        *,
        prompt_id: str,
        extra_data: Mapping[str, Any] | None = None,
        number: float | None = None,
    ) -> SubmitResult:
        """Queue ``workflow`` under the caller-chosen ``prompt_id``.

        The prompt is sent with the websocket's current clientId, so its events
        reach this client. A 200 is trusted only with empty ``node_errors``.

        Raises:
            ComfyValidationError: HTTP 400, or 200 with dropped outputs (the
                partially accepted prompt is deleted/interrupted first).
            ComfyConnectionError, ComfyTimeoutError, ComfyServerError,
            ComfyProtocolError: transient transport failures. When the request may
                have reached the server, the prompt is removed best-effort so a
                retry does not run twice.
        """
        socket = self._require_socket()
        if prompt_id in self._prompts:
            raise ValueError(f"prompt {prompt_id} is already being tracked by this client")
        # Trap 1: events go only to the socket registered under client_id, so the
        # socket must be up *before* the POST.
        if not await socket.wait_connected(self.timeouts.connect):
            raise ComfyConnectionError(
                f"websocket to {self.url} is down ({socket.last_error or 'reconnecting'}); "
                "not submitting without it",
                maybe_delivered=False,
            )
        client_id, generation = socket.client_id, socket.generation
        assert client_id is not None
        output_classes = (
            {name for name, spec in self._object_info.items() if spec.get("output_node")}
            if self._object_info is not None
            else None
        )
        # Register before POSTing: a fast prompt can finish before the reply
        # arrives, and its events must not be lost.
        state = self._track(
            prompt_id,
            generation=generation,
            expected=nodes_to_execute(workflow, output_classes=output_classes),
        )
        body: dict[str, Any] = {"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        if number is not None:
            body["number"] = number
        try:
            reply = await self._call(
                "POST", "/prompt", json_body=body, timeout=self.timeouts.submit
            )
        except ComfyTransportError as exc:
            self._untrack(state)
            if exc.maybe_delivered:
                await self._discard(prompt_id, reason="ambiguous submit failure")
            raise
        try:
            accepted = self._parse_submit_reply(reply, prompt_id)
        except ComfyValidationError:
            self._untrack(state)
            raise
        except ComfyError:
            self._untrack(state)
            await self._discard(prompt_id, reason="unusable submit reply")
            raise

        if accepted.node_errors:
            # Trap 3: partial acceptance. The server dropped the invalid outputs
            # and queued the rest; a job whose outputs were silently dropped is not
            # the job we were asked for, so remove it and report a validation error.
            self._untrack(state)
            await self._discard(accepted.prompt_id, reason="partial acceptance")
            raise ComfyValidationError(
                "ComfyUI accepted only part of the workflow (outputs dropped)",
                node_errors=accepted.node_errors,
                partial=True,
                prompt_id=accepted.prompt_id,
            )
        if accepted.prompt_id != prompt_id:
            # Servers older than prompt_id support generate their own id; follow it.
            log.warning("comfyui.submit.id_replaced", sent=prompt_id, got=accepted.prompt_id)
            self._prompts.pop(prompt_id, None)
            state.prompt_id = accepted.prompt_id
            state.tracker.prompt_id = accepted.prompt_id
            self._prompts[accepted.prompt_id] = state
        log.info(
            "comfyui.submitted",
            url=self.url,
            prompt_id=accepted.prompt_id,
            number=accepted.number,
            client_id=client_id,
        )
        return SubmitResult(
            prompt_id=accepted.prompt_id, number=accepted.number, client_id=client_id
        )

    def _parse_submit_reply(self, reply: _HTTPReply, prompt_id: str) -> PromptAccepted:
        if reply.status == 200:
            return self._model(PromptAccepted, self._json(reply, "POST /prompt"), "POST /prompt")
        if reply.status == 400:
            payload = self._json(reply, "POST /prompt (400)")
            rejected = self._model(PromptRejected, payload, "POST /prompt (400)")
            # Trap 4: error.details may be empty; node_errors holds the facts.
            raise ComfyValidationError(
                f"ComfyUI rejected the workflow: {rejected.error.message or rejected.error.type}",
                error=rejected.error,
                node_errors=rejected.node_errors,
                prompt_id=prompt_id,
            )
        self._raise_for_status(reply, "POST /prompt")
        raise ComfyProtocolError(f"POST /prompt: unexpected HTTP {reply.status}")

    async def _discard(self, prompt_id: str, *, reason: str) -> None:
        """Best effort: make sure ``prompt_id`` will not run (or stops running)."""
        log.info("comfyui.discard", prompt_id=prompt_id, reason=reason)
        # Short time limit: this runs on an error path, often against a sick server.
        timeout = min(self.timeouts.request, 5.0)
        with contextlib.suppress(ComfyError):
            await self._post_quiet("/queue", {"delete": [prompt_id]}, timeout=timeout)
        # /queue delete cannot touch a running prompt; an interrupt naming the id
        # affects only that prompt, and only if it is the one running.
        with contextlib.suppress(ComfyError):
            await self._post_quiet("/interrupt", {"prompt_id": prompt_id}, timeout=timeout)

    # ================================================================== wait

    async def wait(
        self,
        prompt_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Wait until ``prompt_id`` finishes and return its outputs.

        Works both for prompts this client submitted (events over the websocket,
        history as a safety net) and for prompts submitted elsewhere or before a
        crash (polling only: their events go to another, possibly dead, socket).

        ``on_progress`` receives :class:`ProgressUpdate` s, the last one at 100 %
        on success. Its exceptions are logged and ignored: progress is advisory
        and must never fail a render.

        Raises:
            ComfyExecutionError / ComfyOutOfMemory: a node failed.
            ComfyInterrupted: the run was interrupted.
            ComfyPromptLost: the prompt vanished (server restart) (transient).
            ComfyPromptDeleted: ``delete_pending`` removed it.
            ComfyTimeoutError: ``timeout`` elapsed (the prompt keeps running).
            ComfyConnectionError: the server stayed unreachable longer than
                ``unreachable_grace``, or the client was closed.
        """
        self._require_socket()
        state = self._prompts.get(prompt_id) or self._track(prompt_id, generation=None)
        if state.waiting:
            raise RuntimeError(f"prompt {prompt_id} already has a waiter")
        state.waiting = True
        try:
            async with asyncio.timeout(timeout) as deadline:
                return await self._wait_loop(state, on_progress)
        except TimeoutError:
            if deadline.expired():
                raise ComfyTimeoutError(
                    f"prompt {prompt_id} did not finish within {timeout} s"
                ) from None
            raise
        finally:
            self._untrack(state)
            self._interrupt_requested.discard(prompt_id)
            self._deleted.discard(prompt_id)

    async def _wait_loop(
        self, state: _PromptState, on_progress: ProgressCallback | None
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        unreachable_since: float | None = None
        force_poll = False
        while True:
            # Clear first: anything arriving while we await below sets it again, so
            # no wake-up is lost.
            state.changed.clear()
            await self._flush(state, on_progress)
            if self._closed:
                raise ComfyConnectionError(f"client for {self.url} was closed while waiting")
            if state.prompt_id in self._deleted:
                raise ComfyPromptDeleted(
                    f"prompt {state.prompt_id} was deleted from the queue",
                    prompt_id=state.prompt_id,
                )
            if state.finished:
                # "executing: null" arrives after the history entry is written, so
                # one GET gives the authoritative outcome and outputs.
                try:
                    entry = await self.history(state.prompt_id)
                except ComfyTransportError:
                    entry = None
                if entry is not None:
                    return await self._finish(state, entry, on_progress)
                # Evicted, or the server went away between the two: poll it out.
                state.finished = False
                state.generation = None

            listening = self._listening(state)
            if not listening or force_poll:
                force_poll = False
                try:
                    where = await self.locate(state.prompt_id)
                    unreachable_since = None
                except ComfyTransportError as exc:
                    now = loop.time()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since >= self.unreachable_grace:
                        raise ComfyConnectionError(
                            f"{self.url} unreachable for {now - unreachable_since:.0f} s "
                            f"while waiting for {state.prompt_id}: {exc.message}"
                        ) from exc
                    where = None
                if where is not None:
                    if where.state is PromptState.FINISHED and where.history is not None:
                        return await self._finish(state, where.history, on_progress)
                    if where.state is PromptState.UNKNOWN:
                        if state.prompt_id in self._deleted:
                            continue
                        # Trap 7 / section 10: no event ever reports a prompt lost
                        # in a restart; absent from both queue and history is it.
                        raise ComfyPromptLost(
                            f"prompt {state.prompt_id} is neither queued nor in the history "
                            f"of {self.url} (server restarted, or the prompt was removed)",
                            prompt_id=state.prompt_id,
                        )
                    if where.queue_item is not None and not state.tracker.knows_total:
                        item = where.queue_item
                        state.tracker.set_expected(
                            upstream_closure(item.workflow, item.outputs_to_execute)
                        )

            interval = self.idle_check_interval if listening else self.poll_interval
            try:
                async with asyncio.timeout(interval):
                    await state.changed.wait()
            except TimeoutError:
                # Listening but silent for a long time: look at the server directly
                # (a long queue is fine; a lost registration is not).
                force_poll = listening

    async def _finish(
        self, state: _PromptState, entry: HistoryEntry, on_progress: ProgressCallback | None
    ) -> RunResult:
        result = self._result_from_history(state, entry)
        state.updates.append(state.tracker.complete())
        await self._flush(state, on_progress)
        log.info(
            "comfyui.finished",
            prompt_id=state.prompt_id,
            images=len(result.outputs),
            seconds=result.render_seconds,
        )
        return result

    def _result_from_history(self, state: _PromptState, entry: HistoryEntry) -> RunResult:
        status = entry.status
        error = status.message("execution_error") if status else None
        interrupted = status.message("execution_interrupted") if status else None
        outcome: _Outcome | None = state.outcome
        try:
            if error is not None:
                outcome = ExecutionErrorData.model_validate(error)
            elif interrupted is not None:
                outcome = ExecutionInterruptedData.model_validate(interrupted)
        except ValidationError as exc:
            raise ComfyProtocolError(
                f"history of {state.prompt_id}: bad status message: {exc}"
            ) from None

        if isinstance(outcome, ExecutionErrorData):
            raise classify_execution_error(outcome, transient_types=self.transient_exception_types)
        if isinstance(outcome, ExecutionInterruptedData):
            requested = state.prompt_id in self._interrupt_requested
            raise ComfyInterrupted(
                f"prompt {state.prompt_id} was interrupted at node {outcome.node_id} "
                f"({outcome.node_type})" + (" on request" if requested else ""),
                prompt_id=state.prompt_id,
                requested=requested,
                node_id=outcome.node_id,
                node_type=outcome.node_type,
                executed=outcome.executed,
            )
        succeeded = status is not None and (
            status.status_str == "success" or status.message("execution_success") is not None
        )
        if not succeeded and not isinstance(outcome, ExecutionSuccessData):
            raise ComfyExecutionError(
                f"prompt {state.prompt_id} ended with status "
                f"{status.status_str if status else 'missing'!r} and no error details",
                prompt_id=state.prompt_id,
                node_id=None,
                node_type="",
                exception_type="unknown",
                exception_message="history reports no success and no error",
            )

        cached = list(state.cached_nodes)
        if not cached and status is not None:
            cached_msg = status.message("execution_cached") or {}
            raw = cached_msg.get("nodes", [])
            cached = [str(n) for n in raw] if isinstance(raw, list) else []
        executed = list(state.executed_nodes)
        if not executed:
            # Not seen live (polling): the nodes upstream of the outputs that were
            # not served from cache are the ones that ran.
            ran = upstream_closure(entry.prompt.workflow, entry.prompt.outputs_to_execute)
            executed = sorted(ran - set(cached), key=node_sort_key)
        return RunResult(
            prompt_id=state.prompt_id,
            outputs=entry.images(),
            executed_nodes=executed,
            cached_nodes=cached,
            status=status.status_str if status else "success",
            started_at=entry.timestamp("execution_start"),
            finished_at=entry.timestamp("execution_success"),
            number=entry.prompt.number,
            workflow=entry.prompt.workflow,
        )

    # ================================================================== queue control

    async def locate(self, prompt_id: str) -> PromptLocation:
        """Find a prompt: pending, running, finished (with its history) or unknown.

        Checks ``/queue`` first and ``/history`` second: a prompt finishing between
        the two calls is then found in history. The other order could miss it in
        both and call a healthy prompt unknown.
        """
        queue = await self.queue()
        for item in queue.queue_running:
            if item.prompt_id == prompt_id:
                return PromptLocation(prompt_id, PromptState.RUNNING, queue_item=item)
        for position, item in enumerate(queue.pending_in_run_order()):
            if item.prompt_id == prompt_id:
                return PromptLocation(
                    prompt_id, PromptState.PENDING, position=position, queue_item=item
                )
        entry = await self.history(prompt_id)
        if entry is not None:
            return PromptLocation(prompt_id, PromptState.FINISHED, history=entry)
        return PromptLocation(prompt_id, PromptState.UNKNOWN)

    async def delete_pending(self, prompt_id: str) -> PromptLocation:
        """Remove a *pending* prompt from the queue and report where it is now.

        The server answers 200 with an empty body whatever happened and cannot
        delete a running prompt, so the result is checked: ``UNKNOWN`` means it is
        gone, ``RUNNING`` means it had already started (use :meth:`interrupt`),
        ``FINISHED`` means it was already done. A ``wait()`` on a deleted prompt
        raises :class:`ComfyPromptDeleted`.
        """
        await self._post_quiet("/queue", {"delete": [prompt_id]})
        where = await self.locate(prompt_id)
        if where.state is PromptState.UNKNOWN:
            self._deleted.add(prompt_id)
            state = self._prompts.get(prompt_id)
            if state is not None:
                state.changed.set()
        return where

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the one running; otherwise nothing happens.

        Naming the prompt matters: a bare ``POST /interrupt`` would stop whatever
        runs, possibly another job. The interrupt takes effect at the next node
        boundary or progress step, not immediately (trap 6). The resulting
        :class:`ComfyInterrupted` has ``requested=True`` (permanent).
        """
        self._interrupt_requested.add(prompt_id)
        await self._post_quiet("/interrupt", {"prompt_id": prompt_id})

    async def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        """Ask the server to unload models / free memory once it is idle (after OOM)."""
        await self._post_quiet(
            "/free", {"unload_models": unload_models, "free_memory": free_memory}
        )

    # ================================================================== reads

    async def queue(self) -> QueueReply:
        """``GET /queue``: running and pending prompts."""
        reply = await self._get("/queue")
        return self._model(QueueReply, self._json(reply, "GET /queue"), "GET /queue")

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """``GET /history/{id}``: the entry, or ``None`` while queued/running/unknown
        (the server answers ``{}`` then, never 404: trap 5)."""
        reply = await self._get(f"/history/{prompt_id}")
        payload = self._json(reply, "GET /history")
        return self._model(HistoryReply, payload, "GET /history").entry(prompt_id)

    async def system_stats(self) -> SystemStats:
        """``GET /system_stats``: versions, RAM and devices; a cheap health probe."""
        reply = await self._get("/system_stats")
        return self._model(SystemStats, self._json(reply, "GET /system_stats"), "GET /system_stats")

    async def object_info(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """``GET /object_info``: every node class with its input spec.

        The reply is large (~700 KB), so it is fetched once and cached. The cache
        is dropped when the websocket reconnects, because a reconnect may mean a
        restarted server with new models or custom nodes.
        """
        async with self._object_info_lock:
            if self._object_info is None or refresh:
                reply = await self._get("/object_info", timeout=self.timeouts.object_info)
                payload = self._json(reply, "GET /object_info")
                if not isinstance(payload, dict) or not all(
                    isinstance(v, dict) for v in payload.values()
                ):
                    raise ComfyProtocolError("GET /object_info: expected an object of node classes")
                self._object_info = payload
            return self._object_info

    async def fetch_view(self, image: OutputImage) -> bytes:
        """Download an output image with ``GET /view``.

        Raises :class:`ComfyFileNotFound` (permanent) on 404.
        """
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        reply = await self._call("GET", "/view", params=params, timeout=self.timeouts.transfer)
        if reply.status == 404:
            raise ComfyFileNotFound(
                f"{image.type}/{image.subfolder}/{image.filename} not found on {self.url}",
                status=404,
            )
        self._raise_for_status(reply, "GET /view")
        return reply.body

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", overwrite: bool = True
    ) -> UploadedFile:
        """Upload an input image (``POST /upload/image``), e.g. a reference image.

        Use a content-addressed ``filename`` (the sha256) with ``overwrite=True``:
        re-uploading the same reference is then idempotent instead of creating
        ``name (1).png`` copies.
        """
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true" if overwrite else "false")
        reply = await self._call("POST", "/upload/image", data=form, timeout=self.timeouts.transfer)
        self._raise_for_status(reply, "POST /upload/image")
        return self._model(
            UploadedFile, self._json(reply, "POST /upload/image"), "POST /upload/image"
        )

    # ================================================================== internals: routing

    def _require_socket(self) -> EventSocket:
        if self._socket is None or self._closed:
            raise RuntimeError("ComfyUIClient is not started (use 'async with' or start())")
        return self._socket

    def _track(
        self, prompt_id: str, *, generation: int | None, expected: Iterable[str] | None = None
    ) -> _PromptState:
        state = _PromptState(
            prompt_id=prompt_id,
            generation=generation,
            tracker=ProgressTracker(prompt_id, expected),
        )
        self._prompts[prompt_id] = state
        return state

    def _untrack(self, state: _PromptState) -> None:
        if self._prompts.get(state.prompt_id) is state:
            del self._prompts[state.prompt_id]

    def _listening(self, state: _PromptState) -> bool:
        # Events for a prompt only ever go to the clientId it was submitted with;
        # after a reconnect (new generation) they go nowhere we can hear.
        socket = self._socket
        return (
            socket is not None
            and socket.connected
            and state.generation is not None
            and state.generation == socket.generation
        )

    def _on_message(self, message: WsMessage) -> None:
        prompt_id = message_prompt_id(message)
        if prompt_id is None:
            return
        state = self._prompts.get(prompt_id)
        if state is not None:
            state.apply(message)

    def _on_socket_state(self, connected: bool) -> None:
        if connected:
            # A reconnect can be a restarted server with other models installed.
            self._object_info = None
        # Wake every waiter so it re-decides between listening and polling.
        for state in self._prompts.values():
            state.changed.set()

    async def _flush(self, state: _PromptState, callback: ProgressCallback | None) -> None:
        while state.updates:
            update = state.updates.popleft()
            if callback is None:
                continue
            try:
                result = callback(update)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                state.callback_failures += 1
                # One traceback per prompt is enough; a broken callback would
                # otherwise log once per sampler step.
                if state.callback_failures == 1:
                    log.exception("comfyui.progress_callback_failed", prompt_id=state.prompt_id)

    # ================================================================== internals: HTTP

    async def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> _HTTPReply:
        """One HTTP exchange with a hard time limit, errors mapped to ComfyError."""
        if self._session is None or self._session.closed:
            if self._closed:
                raise ComfyConnectionError(
                    f"client for {self.url} is closed", maybe_delivered=False
                )
            raise RuntimeError("ComfyUIClient is not started (use 'async with' or start())")
        try:
            async with (
                asyncio.timeout(timeout),
                self._session.request(
                    method, self.url + path, json=json_body, params=params, data=data
                ) as resp,
            ):
                body = await resp.read()
                return _HTTPReply(resp.status, body, resp.content_type)
        except TimeoutError:
            raise ComfyTimeoutError(
                f"{method} {path} on {self.url} timed out after {timeout} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            # The connection was never established: the request cannot have arrived.
            raise ComfyConnectionError(
                f"cannot connect to {self.url}: {exc.os_error or exc}", maybe_delivered=False
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ComfyConnectionError(
                f"{method} {path} on {self.url} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _get(self, path: str, *, timeout: float | None = None) -> _HTTPReply:
        reply = await self._call("GET", path, timeout=timeout or self.timeouts.request)
        self._raise_for_status(reply, f"GET {path}")
        return reply

    async def _post_quiet(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> None:
        """POST to an endpoint that answers 200 with an empty body."""
        reply = await self._call(
            "POST", path, json_body=body, timeout=timeout or self.timeouts.request
        )
        self._raise_for_status(reply, f"POST {path}")

    def _raise_for_status(self, reply: _HTTPReply, what: str) -> None:
        if 200 <= reply.status < 300:
            return
        if reply.status >= 500 or reply.status in (408, 429):
            # Includes trap 12: a body that is not JSON gets 500 text/plain.
            raise ComfyServerError(
                f"{what} on {self.url}: HTTP {reply.status}: {reply.text(200)!r}",
                status=reply.status,
                body=reply.text(),
            )
        raise ComfyHTTPError(
            f"{what} on {self.url}: HTTP {reply.status}: {reply.text(200)!r}",
            status=reply.status,
            body=reply.text(),
        )

    def _json(self, reply: _HTTPReply, what: str) -> Any:
        try:
            return json.loads(reply.body)
        except ValueError:
            raise ComfyProtocolError(
                f"{what}: reply is not JSON (HTTP {reply.status}, {reply.content_type}): "
                f"{reply.text(200)!r}"
            ) from None

    def _model(self, model: type[M], payload: Any, what: str) -> M:
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise ComfyProtocolError(f"{what}: unexpected reply shape: {problems}") from None
