"""The ComfyUI HTTP and websocket routes of the simulator.

Every ComfyUI route is served twice, as ``/x`` and ``/api/x``. The handlers
follow ComfyUI 0.3.64's ``server.py`` closely (same status codes, bodies and
content types, including a ``text/plain`` 500 for a body that is not JSON).
Simulator-only control routes (``/_sim/``) are in :mod:`comfysim.control`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import sys
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from comfysim.control import ControlRoutes
from comfysim.engine import SENSITIVE_EXTRA_DATA_KEYS, Engine, QueueItem
from comfysim.events import SERVER_FEATURES, Hub
from comfysim.faults import (
    SUBMIT_FAULTS,
    FaultSpec,
    FaultSpecError,
    parse_fault_list,
)
from comfysim.files import dir_by_type, store_upload, view_file
from comfysim.objectinfo import MODEL_FOLDERS
from comfysim.validation import validate_prompt

if TYPE_CHECKING:
    from comfysim.server import Simulator

__all__ = ["create_app"]

log = logging.getLogger("comfysim.routes")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Versions reported by ``GET /system_stats`` (those of the captured server).
COMFYUI_VERSION = "0.3.64"
_SYSTEM_VERSIONS = {
    "comfyui_version": COMFYUI_VERSION,
    "required_frontend_version": "1.27.10",
    "installed_templates_version": "0.1.95",
    "required_templates_version": "0.1.95",
}
_PYTORCH_VERSION = "2.13.0+cpu"
_CRASH_BODY = "500 Internal Server Error\n\nServer got itself in trouble"


def _ram() -> tuple[int, int]:
    """(total, available) RAM in bytes."""
    total = free = 0
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                value = int(rest.split()[0]) * 1024
                if key == "MemTotal":
                    total = value
                elif key == "MemAvailable":
                    free = value
    except (OSError, ValueError, IndexError):
        pass
    return total, free


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _crash_response() -> web.Response:
    """The exact reply aiohttp gives when a ComfyUI handler raises."""
    resp = web.Response(status=500, text=_CRASH_BODY, content_type="text/plain")
    resp.force_close()
    return resp


def create_app(sim: Simulator) -> web.Application:
    """Build the aiohttp application serving ``sim``."""
    routes = _Routes(sim)

    @web.middleware
    async def down_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A request over a connection opened before the outage: cut it.
        if sim.is_down():
            if request.protocol is not None:
                request.protocol.force_close()
            return web.Response(status=503)
        return await handler(request)

    @web.middleware
    async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # ComfyUI's CSRF guard: loopback Host with a different Origin gets 403.
        if "Host" in request.headers and "Origin" in request.headers:
            host_domain: str | None = request.headers["Host"].lower()
            parsed = urllib.parse.urlparse(request.headers["Origin"])
            origin_domain: str | None = parsed.netloc.lower()
            host_parsed = urllib.parse.urlsplit("//" + (host_domain or ""))
            loopback = _is_loopback(host_parsed.hostname)
            if parsed.port is None:
                host_domain = host_parsed.hostname
            if host_parsed.port is None:
                origin_domain = parsed.hostname
            if loopback and host_domain and origin_domain and host_domain != origin_domain:
                log.warning("request with non matching host and origin, returning 403")
                return web.Response(status=403)
        return await handler(request)

    app = web.Application(
        client_max_size=SERVER_FEATURES["max_upload_size"],
        middlewares=[down_middleware, origin_middleware],
    )
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/ws", routes.websocket),
        ("POST", "/prompt", routes.post_prompt),
        ("GET", "/prompt", routes.get_prompt),
        ("GET", "/queue", routes.get_queue),
        ("POST", "/queue", routes.post_queue),
        ("POST", "/interrupt", routes.post_interrupt),
        ("POST", "/free", routes.post_free),
        ("GET", "/history", routes.get_history),
        ("GET", "/history/{prompt_id}", routes.get_history_item),
        ("POST", "/history", routes.post_history),
        ("GET", "/view", routes.view),
        ("POST", "/upload/image", routes.upload_image),
        ("GET", "/system_stats", routes.system_stats),
        ("GET", "/object_info", routes.object_info),
        ("GET", "/object_info/{node_class}", routes.object_info_one),
        ("GET", "/features", routes.features),
        ("GET", "/models", routes.models),
        ("GET", "/models/{folder}", routes.models_folder),
        ("GET", "/embeddings", routes.embeddings),
        ("GET", "/extensions", routes.extensions),
    ]
    table += ControlRoutes(sim).table()
    for method, path, handler in table:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    return app


class _Routes:
    """Request handlers (``sim.engine`` is looked up per request: restarts replace it)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    @property
    def engine(self) -> Engine:
        return self.sim.engine

    @property
    def hub(self) -> Hub:
        return self.sim.hub

    # ------------------------------------------------------------------ websocket

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``/ws?clientId=...``: status first, optional feature-flag handshake."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if not sid:
            sid = uuid.uuid4().hex
        hub = self.hub
        hub.register(sid, ws, request)
        try:
            await hub.send_now("status", {"status": self.engine.queue_info(), "sid": sid}, sid)
            if hub.client_id == sid and hub.last_node_id is not None:
                await hub.send_now("executing", {"node": hub.last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    log.warning("ws connection closed with exception %s", ws.exception())
                elif msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                        if first_message and data.get("type") == "feature_flags":
                            hub.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                            await hub.send_now("feature_flags", dict(SERVER_FEATURES), sid)
                        first_message = False
                    except json.JSONDecodeError:
                        log.warning("Invalid JSON received from client %s", sid)
                    except Exception as exc:
                        log.error("Error processing WebSocket message: %s", exc)
        finally:
            hub.unregister(sid, ws)
        return ws

    # ------------------------------------------------------------------ prompt

    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        """``POST /prompt``: counter, validation, queueing (and submit-time faults)."""
        log.info("got prompt")
        json_data: Any = await request.json()
        sim = self.sim
        engine = self.engine

        prompt_faults: list[FaultSpec] = []
        render_seconds: float | None = None
        option_error: str | None = None
        extra_raw = json_data.get("extra_data") if isinstance(json_data, dict) else None
        if isinstance(extra_raw, dict):
            try:
                prompt_faults = parse_fault_list(extra_raw.get("sim_fault"))
                if "sim_render_seconds" in extra_raw:
                    render_seconds = float(extra_raw["sim_render_seconds"])
                    if render_seconds < 0:
                        raise ValueError("sim_render_seconds must be >= 0")
            except (FaultSpecError, TypeError, ValueError) as exc:
                option_error = str(exc)
            prompt_faults = [f for f in prompt_faults if sim.faults.roll(f.probability)]
        submit_faults = sim.faults.take(SUBMIT_FAULTS) + [
            f for f in prompt_faults if f.type in SUBMIT_FAULTS
        ]
        if any(f.type == "http_500" for f in submit_faults):
            log.warning("injecting fault http_500")
            return _crash_response()

        if "number" in json_data:
            number: int | float = float(json_data["number"])
        else:
            number = engine.number
            if json_data.get("front"):
                number = -number
            engine.number += 1

        if option_error is not None:
            error = {
                "type": "invalid_prompt",
                "message": "comfysim: invalid sim_fault / sim_render_seconds",
                "details": option_error,
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        if "prompt" in json_data:
            prompt = json_data["prompt"]
            prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
            partial = None
            if "partial_execution_targets" in json_data:
                partial = json_data["partial_execution_targets"]
            valid = validate_prompt(prompt, partial, sim.object_info, sim.dirs)
            extra_data: Any = {}
            if "extra_data" in json_data:
                extra_data = json_data["extra_data"]
            if "client_id" in json_data:
                extra_data["client_id"] = json_data["client_id"]
            injected = [f for f in submit_faults if f.type == "validation_error"]
            if valid.ok and injected:
                log.warning("injecting fault validation_error")
                return web.json_response(
                    _injected_validation_error(prompt, valid.good_outputs, injected[0]),
                    status=400,
                )
            if valid.ok:
                sensitive = {}
                for key in SENSITIVE_EXTRA_DATA_KEYS:
                    if key in extra_data:
                        sensitive[key] = extra_data.pop(key)
                engine.queue.put(
                    QueueItem(
                        number=number,
                        prompt_id=prompt_id,
                        prompt=prompt,
                        extra_data=extra_data,
                        outputs=valid.good_outputs,
                        sensitive=sensitive,
                        seq=engine.next_seq(),
                        faults=[f for f in prompt_faults if f.type not in SUBMIT_FAULTS],
                        render_seconds=render_seconds,
                    )
                )
                return web.json_response(
                    {"prompt_id": prompt_id, "number": number, "node_errors": valid.node_errors}
                )
            log.warning("invalid prompt: %s", valid.error)
            return web.json_response(
                {"error": valid.error, "node_errors": valid.node_errors}, status=400
            )
        error = {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        }
        return web.json_response({"error": error, "node_errors": {}}, status=400)

    async def get_prompt(self, request: web.Request) -> web.StreamResponse:
        """``GET /prompt``: queue_remaining."""
        return web.json_response(self.engine.queue_info())

    # ------------------------------------------------------------------ queue

    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        """``GET /queue``: running and pending (heap order)."""
        running, pending = self.engine.queue.get_current_queue()
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request: web.Request) -> web.StreamResponse:
        """``POST /queue {"clear": true}`` / ``{"delete": [ids]}``: pending only."""
        json_data: Any = await request.json()
        queue = self.engine.queue
        if json_data.get("clear"):
            queue.wipe_queue()
        if "delete" in json_data:
            for id_to_delete in json_data["delete"]:
                queue.delete_queue_item(_prompt_id_is(id_to_delete))
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.StreamResponse:
        """``POST /interrupt`` (optional ``prompt_id``); acts at the next boundary/tick."""
        try:
            json_data: Any = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        self.engine.interrupt(json_data.get("prompt_id"))
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.StreamResponse:
        """``POST /free``; ``free_memory`` empties the execution cache."""
        json_data: Any = await request.json()
        self.engine.free(
            bool(json_data.get("unload_models", False)), bool(json_data.get("free_memory", False))
        )
        return web.Response(status=200)

    # ------------------------------------------------------------------ history

    async def get_history(self, request: web.Request) -> web.StreamResponse:
        """``GET /history?max_items=N&offset=K``."""
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        return web.json_response(self.engine.queue.get_history(max_items=max_items, offset=offset))

    async def get_history_item(self, request: web.Request) -> web.StreamResponse:
        """``GET /history/{id}``: ``{}`` while queued/running and for unknown ids."""
        prompt_id = request.match_info["prompt_id"]
        return web.json_response(self.engine.queue.get_history(prompt_id=prompt_id))

    async def post_history(self, request: web.Request) -> web.StreamResponse:
        """``POST /history {"clear": true}`` / ``{"delete": [ids]}``."""
        json_data: Any = await request.json()
        queue = self.engine.queue
        if json_data.get("clear"):
            queue.wipe_history()
        if "delete" in json_data:
            for id_to_delete in json_data["delete"]:
                queue.delete_history_item(id_to_delete)
        return web.Response(status=200)

    # ------------------------------------------------------------------ files

    async def view(self, request: web.Request) -> web.StreamResponse:
        """``GET /view``: 404 missing, 400 bad name/type, 403 subfolder escape."""
        return await asyncio.to_thread(view_file, self.sim.dirs, dict(request.rel_url.query))

    async def upload_image(self, request: web.Request) -> web.StreamResponse:
        """``POST /upload/image`` (multipart ``image``, ``type``, ``subfolder``, ``overwrite``)."""
        post = await request.post()
        image = post.get("image")
        upload_type_raw = post.get("type")
        upload_type = str(upload_type_raw) if upload_type_raw is not None else "input"
        if not isinstance(image, web.FileField) or not image.filename:
            if dir_by_type(self.sim.dirs, upload_type) is None:
                raise RuntimeError(f"unknown upload type {upload_type!r}")  # 500, as ComfyUI
            return web.Response(status=400)
        data = image.file.read()
        overwrite = post.get("overwrite")
        return await asyncio.to_thread(
            store_upload,
            self.sim.dirs,
            upload_type,
            str(post.get("subfolder", "")),
            image.filename,
            data,
            overwrite is not None and str(overwrite) in ("true", "1"),
        )

    # ------------------------------------------------------------------ introspection

    async def system_stats(self, request: web.Request) -> web.StreamResponse:
        """``GET /system_stats`` (CPU device; vram fields show RAM)."""
        total, free = _ram()
        return web.json_response(
            {
                "system": {
                    "os": os.name,
                    "ram_total": total,
                    "ram_free": free,
                    **_SYSTEM_VERSIONS,
                    "python_version": sys.version,
                    "pytorch_version": _PYTORCH_VERSION,
                    "embedded_python": False,
                    "argv": list(sys.argv),
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": total,
                        "vram_free": free,
                        "torch_vram_total": total,
                        "torch_vram_free": free,
                    }
                ],
            }
        )

    async def object_info(self, request: web.Request) -> web.StreamResponse:
        """``GET /object_info``: the captured catalogue with live combos."""
        body = await asyncio.to_thread(lambda: json.dumps(self.sim.object_info.full()))
        return web.Response(text=body, content_type="application/json")

    async def object_info_one(self, request: web.Request) -> web.StreamResponse:
        """``GET /object_info/{class}``: ``{}`` for unknown classes."""
        node_class = request.match_info["node_class"]
        entry = self.sim.object_info.get(node_class)
        return web.json_response({node_class: entry} if entry is not None else {})

    async def features(self, request: web.Request) -> web.StreamResponse:
        """``GET /features``."""
        return web.json_response(dict(SERVER_FEATURES))

    async def models(self, request: web.Request) -> web.StreamResponse:
        """``GET /models``: model folder names."""
        return web.json_response(list(MODEL_FOLDERS))

    async def models_folder(self, request: web.Request) -> web.StreamResponse:
        """``GET /models/{folder}``: file names (404 for an unknown folder)."""
        files = self.sim.object_info.model_folder(request.match_info["folder"])
        if files is None:
            return web.Response(status=404)
        return web.json_response(files)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """``GET /embeddings``: none."""
        return web.json_response([])

    async def extensions(self, request: web.Request) -> web.StreamResponse:
        """``GET /extensions``: no frontend extensions."""
        return web.json_response([])


def _prompt_id_is(prompt_id: Any) -> Callable[[QueueItem], bool]:
    def predicate(item: QueueItem) -> bool:
        return bool(item.prompt_id == prompt_id)

    return predicate


def _injected_validation_error(
    prompt: dict[str, Any], outputs: list[Any], fault: FaultSpec
) -> dict[str, Any]:
    output_id = outputs[0]
    node = prompt[output_id]
    input_name = next(iter(node.get("inputs", {})), "")
    details = f"{input_name} - {fault.message or 'comfysim injected validation failure'}"
    error = {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": details,
        "extra_info": {"input_name": input_name},
    }
    return {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": f"Custom validation failed for node: {details}",
            "extra_info": {},
        },
        "node_errors": {
            output_id: {
                "errors": [error],
                "dependent_outputs": [output_id],
                "class_type": node["class_type"],
            }
        },
    }
