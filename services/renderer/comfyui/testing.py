"""``FakeComfyUI``: a small, scriptable ComfyUI stand-in for unit tests.

It speaks the real protocol (routes, reply bodies, websocket message order and
routing by clientId, history written before ``executing: null``) closely enough
to exercise the client, and lets a test inject exactly the situations the client
must survive: a canned ``POST /prompt`` reply copied from a capture, an HTTP
error on one route, a node that raises (OOM or otherwise), a dropped websocket,
a restart that loses queue and history, a paused worker.

It is deliberately not a simulator: behaviour-level tests run against
``comfysim`` (another package). Keep this one small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

#: Classes the fake treats as output nodes.
OUTPUT_CLASSES = frozenset({"SaveImage", "PreviewImage", "SaveImageWebsocket"})


def tiny_png(rgb: tuple[int, int, int] = (46, 128, 232)) -> bytes:
    """A valid 1x1 PNG (enough for magic-byte checks and Pillow)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    raw = b"\x00" + bytes(rgb)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class NodeFailure:
    """Make every node of ``class_type`` raise this during execution."""

    exception_type: str
    exception_message: str
    traceback: list[str] = field(
        default_factory=lambda: [
            '  File "/srv/comfy/ComfyUI/execution.py", line 496, in execute\n',
            '  File "/srv/comfy/ComfyUI/nodes.py", line 1647, in load\n',
        ]
    )


@dataclass
class CannedReply:
    """A reply to give instead of the normal one (status + JSON or raw text)."""

    status: int
    json_body: Any = None
    text: str | None = None

    def response(self) -> web.Response:
        if self.text is not None:
            return web.Response(status=self.status, text=self.text, content_type="text/plain")
        return web.json_response(self.json_body, status=self.status)


def _links(inputs: Mapping[str, Any]) -> list[str]:
    return [
        str(v[0])
        for v in inputs.values()
        if isinstance(v, list) and len(v) == 2 and isinstance(v[1], int)
    ]


def _execution_order(workflow: Mapping[str, Any], outputs: list[str]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen or node_id not in workflow:
            return
        seen.add(node_id)
        for dep in _links(workflow[node_id].get("inputs", {})):
            visit(dep)
        order.append(node_id)

    for out in outputs:
        visit(out)
    return order


class FakeComfyUI:
    """An in-process fake ComfyUI server on 127.0.0.1 (random port).

    Use ``async with FakeComfyUI() as fake: fake.url``. Attributes a test may set:

    * ``canned`` maps ``"POST /prompt"``-style keys to a list of
      :class:`CannedReply` served (and consumed) before normal handling;
    * ``delays`` maps the same keys to seconds to stall before answering;
    * ``failures`` maps a class_type to a :class:`NodeFailure`;
    * ``node_seconds`` is the time each node takes; ``steps`` gives classes a
      sampler-like progress bar;
    * ``paused`` (an ``asyncio.Event``): clear it to keep prompts pending;
    * ``mute_events``: execute but send no execution events (lost routing).
    """

    def __init__(self, *, node_seconds: float = 0.0, object_info: dict[str, Any] | None = None):
        self.node_seconds = node_seconds
        self.object_info: dict[str, Any] = object_info or {}
        self.steps: dict[str, int] = {"KSampler": 3}
        self.failures: dict[str, NodeFailure] = {}
        self.canned: dict[str, list[CannedReply]] = {}
        self.delays: dict[str, float] = {}
        self.mute_events = False
        self.paused = asyncio.Event()
        self.paused.set()
        self.requests: list[tuple[str, str, Any]] = []
        self.object_info_fetches = 0
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.pending: list[list[Any]] = []
        self.running: list[Any] | None = None
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.connections: list[str] = []
        self._counter = 0
        self._file_counter = 0
        self._interrupt = False
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application(middlewares=[self._canned_middleware])
        self.app.add_routes(
            [
                web.get("/ws", self._ws),
                web.post("/prompt", self._post_prompt),
                web.get("/prompt", self._get_prompt),
                web.get("/queue", self._get_queue),
                web.post("/queue", self._post_queue),
                web.get("/history/{prompt_id}", self._get_history),
                web.post("/interrupt", self._post_interrupt),
                web.post("/free", self._post_free),
                web.get("/system_stats", self._system_stats),
                web.get("/object_info", self._object_info),
                web.get("/view", self._view),
                web.post("/upload/image", self._upload),
            ]
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeComfyUI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> str:
        """Start serving; returns the base URL."""
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._worker = asyncio.create_task(self._work())
        return self.url

    async def close(self) -> None:
        """Stop the worker, close sockets and the server."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self.drop_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def drop_sockets(self) -> None:
        """Close every websocket from the server side (state is kept)."""
        for ws in list(self.sockets.values()):
            await ws.close()
        self.sockets.clear()

    async def restart(self) -> None:
        """Lose queue, history and the running prompt, like a real restart."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.pending.clear()
        self.running = None
        self.history.clear()
        self._counter = 0
        await self.drop_sockets()
        self._worker = asyncio.create_task(self._work())

    def output_bytes(self, filename: str, subfolder: str = "") -> bytes | None:
        """The bytes of an output file the fake wrote."""
        return self.files.get(("output", subfolder, filename))

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _canned_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        key = f"{request.method} {request.path}"
        body: Any = None
        if request.method == "POST" and request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                body = await request.json()
        self.requests.append((request.method, request.path, body))
        if key in self.delays:
            await asyncio.sleep(self.delays[key])
        queue = self.canned.get(key)
        if queue:
            return queue.pop(0).response()
        response: web.StreamResponse = await handler(request)
        return response

    async def _send(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        if client_id is None or self.mute_events:
            return
        ws = self.sockets.get(client_id)
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def _broadcast_status(self) -> None:
        remaining = len(self.pending) + (1 if self.running else 0)
        for ws in list(self.sockets.values()):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "status",
                            "data": {"status": {"exec_info": {"queue_remaining": remaining}}},
                        }
                    )
                )

    async def send_raw(self, client_id: str, payload: str | bytes) -> None:
        """Send an arbitrary frame to one socket (bad frames, previews)."""
        ws = self.sockets[client_id]
        if isinstance(payload, bytes):
            await ws.send_bytes(payload)
        else:
            await ws.send_str(payload)

    # ------------------------------------------------------------------ routes

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets[client_id] = ws
        self.connections.append(client_id)
        remaining = len(self.pending) + (1 if self.running else 0)
        await ws.send_str(
            json.dumps(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": remaining}},
                        "sid": client_id,
                    },
                }
            )
        )
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
        if self.sockets.get(client_id) is ws:
            del self.sockets[client_id]
        return ws

    async def _post_prompt(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        workflow = body.get("prompt")
        if not isinstance(workflow, dict):
            return web.json_response(
                {
                    "error": {
                        "type": "no_prompt",
                        "message": "No prompt provided",
                        "details": "No prompt provided",
                        "extra_info": {},
                    },
                    "node_errors": {},
                },
                status=400,
            )
        for node_id, node in workflow.items():
            cls = node.get("class_type")
            if self.object_info and cls not in self.object_info:
                return web.json_response(
                    {
                        "error": {
                            "type": "invalid_prompt",
                            "message": f"Cannot execute because node {cls} does not exist.",
                            "details": f"Node ID '#{node_id}'",
                            "extra_info": {},
                        },
                        "node_errors": {},
                    },
                    status=400,
                )
        outputs = [nid for nid, n in workflow.items() if n.get("class_type") in OUTPUT_CLASSES]
        if not outputs:
            return web.json_response(
                {
                    "error": {
                        "type": "prompt_no_outputs",
                        "message": "Prompt has no outputs",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": {},
                },
                status=400,
            )
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra: dict[str, Any] = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        number: float
        if body.get("number") is not None:
            number = float(body["number"])
        else:
            number = self._counter
            self._counter += 1
        self.pending.append([number, prompt_id, workflow, extra, outputs])
        self._wake.set()
        await self._broadcast_status()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    async def _get_prompt(self, request: web.Request) -> web.StreamResponse:
        remaining = len(self.pending) + (1 if self.running else 0)
        return web.json_response({"exec_info": {"queue_remaining": remaining}})

    async def _get_queue(self, request: web.Request) -> web.StreamResponse:
        # Heap order, not run order (trap 9): reverse insertion is a fine stand-in.
        return web.json_response(
            {
                "queue_running": [self.running] if self.running else [],
                "queue_pending": list(reversed(self.pending)),
            }
        )

    async def _post_queue(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete", []):
            self.pending = [p for p in self.pending if p[1] != prompt_id]
        await self._broadcast_status()
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _post_interrupt(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {}
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
        target = body.get("prompt_id")
        if self.running is not None and (target is None or target == self.running[1]):
            self._interrupt = True
        return web.Response(status=200)

    async def _post_free(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def _system_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 1,
                    "ram_free": 1,
                    "comfyui_version": "0.3.64",
                    "python_version": "3.11",
                    "pytorch_version": "fake",
                    "embedded_python": False,
                    "argv": ["main.py"],
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": 1,
                        "vram_free": 1,
                        "torch_vram_total": 1,
                        "torch_vram_free": 1,
                    }
                ],
            }
        )

    async def _object_info(self, request: web.Request) -> web.StreamResponse:
        self.object_info_fetches += 1
        return web.json_response(self.object_info)

    async def _view(self, request: web.Request) -> web.StreamResponse:
        key = (
            request.query.get("type", "output"),
            request.query.get("subfolder", ""),
            request.query.get("filename", ""),
        )
        data = self.files.get(key)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        image = form["image"]
        assert isinstance(image, web.FileField)
        subfolder = str(form.get("subfolder", ""))
        self.files[("input", subfolder, image.filename)] = image.file.read()
        return web.json_response({"name": image.filename, "subfolder": subfolder, "type": "input"})

    # ------------------------------------------------------------------ worker

    async def _work(self) -> None:
        while True:
            await self.paused.wait()
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.pending.sort(key=lambda p: p[0])
            record = self.pending.pop(0)
            self.running = record
            self._interrupt = False
            try:
                await self._execute(record)
            finally:
                self.running = None
            await self._broadcast_status()

    def _stamp(self) -> int:
        return int(time.time() * 1000)

    def _finish(
        self, record: list[Any], status_str: str, messages: list[Any], outputs: dict[str, Any]
    ) -> None:
        self.history[record[1]] = {
            "prompt": record,
            "outputs": outputs,
            "status": {
                "status_str": status_str,
                "completed": status_str == "success",
                "messages": messages,
            },
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in outputs
            },
        }

    async def _execute(self, record: list[Any]) -> None:
        _number, prompt_id, workflow, extra, outputs = record
        client_id = extra.get("client_id")
        start = {"prompt_id": prompt_id, "timestamp": self._stamp()}
        cached = {"nodes": [], "prompt_id": prompt_id, "timestamp": self._stamp()}
        messages: list[Any] = [["execution_start", start], ["execution_cached", cached]]
        await self._send(client_id, "execution_start", start)
        await self._send(client_id, "execution_cached", cached)
        ui_outputs: dict[str, Any] = {}
        done: list[str] = []
        states: dict[str, Any] = {}
        batch = 1
        for node in workflow.values():
            size = node.get("inputs", {}).get("batch_size")
            if isinstance(size, int):
                batch = size
        for node_id in _execution_order(workflow, outputs):
            cls = workflow[node_id]["class_type"]
            if self._interrupt:
                data = {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": cls,
                    "executed": list(done),
                    "timestamp": self._stamp(),
                }
                messages.append(["execution_interrupted", data])
                self._finish(record, "error", messages, {})
                await self._send(client_id, "execution_interrupted", data)
                await self._send(client_id, "executing", {"node": None, "prompt_id": prompt_id})
                return
            states[node_id] = {
                "value": 0,
                "max": 1,
                "state": "running",
                "node_id": node_id,
                "prompt_id": prompt_id,
            }
            await self._send(
                client_id, "progress_state", {"prompt_id": prompt_id, "nodes": dict(states)}
            )
            await self._send(
                client_id,
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
            )
            failure = self.failures.get(cls)
            if failure is not None:
                data = {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": cls,
                    "executed": list(done),
                    "exception_message": failure.exception_message,
                    "exception_type": failure.exception_type,
                    "traceback": failure.traceback,
                    "current_inputs": {},
                    "current_outputs": [],
                    "timestamp": self._stamp(),
                }
                messages.append(["execution_error", data])
                self._finish(record, "error", messages, {})
                await self._send(client_id, "execution_error", data)
                await self._send(client_id, "executing", {"node": None, "prompt_id": prompt_id})
                return
            steps = self.steps.get(cls, 0)
            for step in range(1, steps + 1):
                await asyncio.sleep(self.node_seconds / max(steps, 1))
                await self._send(
                    client_id,
                    "progress",
                    {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id},
                )
            if not steps:
                await asyncio.sleep(self.node_seconds)
            if cls == "SaveImage":
                prefix = str(workflow[node_id]["inputs"].get("filename_prefix", "ComfyUI"))
                subfolder, _, base = prefix.rpartition("/")
                images = []
                for _ in range(batch):
                    self._file_counter += 1
                    name = f"{base}_{self._file_counter:05d}_.png"
                    self.files[("output", subfolder, name)] = tiny_png()
                    images.append({"filename": name, "subfolder": subfolder, "type": "output"})
                ui_outputs[node_id] = {"images": images}
                await self._send(
                    client_id,
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": ui_outputs[node_id],
                        "prompt_id": prompt_id,
                    },
                )
            states[node_id] = {
                "value": 1,
                "max": 1,
                "state": "finished",
                "node_id": node_id,
                "prompt_id": prompt_id,
            }
            await self._send(
                client_id, "progress_state", {"prompt_id": prompt_id, "nodes": dict(states)}
            )
            done.append(node_id)
        success = {"prompt_id": prompt_id, "timestamp": self._stamp()}
        messages.append(["execution_success", success])
        # History is written before "executing: null", as on the real server.
        self._finish(record, "success", messages, ui_outputs)
        await self._send(client_id, "execution_success", success)
        await self._send(client_id, "executing", {"node": None, "prompt_id": prompt_id})
