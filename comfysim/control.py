"""Simulator control API: ``/_sim/faults``, ``/_sim/restart``, ``/_sim/refuse``,
``/_sim/stats`` and ``/_sim/config`` (not part of ComfyUI)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from comfysim.config import PREVIEW_METHODS
from comfysim.faults import IMMEDIATE_FAULTS, FaultSpecError, parse_fault_list

if TYPE_CHECKING:
    from comfysim.server import Simulator

__all__ = ["ControlRoutes", "apply_config"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]


class ControlRoutes:
    """Handlers of the ``/_sim/*`` routes."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def table(self) -> list[Route]:
        """(method, path, handler) of every control route."""
        return [
            ("GET", "/_sim/stats", self.sim_stats),
            ("POST", "/_sim/stats/reset", self.sim_stats_reset),
            ("GET", "/_sim/faults", self.sim_faults),
            ("POST", "/_sim/faults", self.sim_faults_post),
            ("DELETE", "/_sim/faults", self.sim_faults_clear),
            ("POST", "/_sim/restart", self.sim_restart),
            ("POST", "/_sim/refuse", self.sim_refuse),
            ("GET", "/_sim/config", self.sim_config),
            ("POST", "/_sim/config", self.sim_config_post),
        ]

    async def sim_stats(self, request: web.Request) -> web.StreamResponse:
        """``GET /_sim/stats``: busy/idle seconds, prompt counts, running prompt."""
        body = self.sim.stats.snapshot(self.sim.engine.queue.get_tasks_remaining())
        body["port"] = self.sim.port
        return web.json_response(body)

    async def sim_stats_reset(self, request: web.Request) -> web.StreamResponse:
        """``POST /_sim/stats/reset``."""
        self.sim.stats.reset()
        return await self.sim_stats(request)

    def _faults_body(self) -> dict[str, Any]:
        return {"faults": [f.to_json() for f in self.sim.faults.armed()]}

    async def sim_faults(self, request: web.Request) -> web.StreamResponse:
        """``GET /_sim/faults``: armed faults."""
        return web.json_response(self._faults_body())

    async def sim_faults_post(self, request: web.Request) -> web.StreamResponse:
        """``POST /_sim/faults``: arm faults (``{"faults": [...]}``, one spec, or a list).

        ``{"clear": true}`` disarms everything first. ``refuse_connections`` acts at once.
        """
        try:
            body: Any = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        raw: Any = body
        if isinstance(body, dict) and ("faults" in body or "clear" in body):
            if body.get("clear"):
                self.sim.faults.clear()
            raw = body.get("faults", [])
        try:
            specs = parse_fault_list(raw)
        except FaultSpecError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        refuse: float | None = None
        for spec in specs:
            if spec.type in IMMEDIATE_FAULTS:
                refuse = max(refuse or 0.0, spec.seconds or 1.0)
            else:
                self.sim.faults.arm(spec)
        resp = web.json_response(self._faults_body())
        if refuse is not None:
            await self.sim.refuse_connections(refuse, keep=request)
            resp.force_close()
        return resp

    async def sim_faults_clear(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /_sim/faults``: disarm everything."""
        self.sim.faults.clear()
        return web.json_response(self._faults_body())

    async def _json_object(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text="body must be a JSON object") from exc
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def sim_restart(self, request: web.Request) -> web.StreamResponse:
        """``POST /_sim/restart {"down_seconds": 0}``: lose queue, history, counter."""
        body = await self._json_object(request)
        down = float(body.get("down_seconds", 0.0))
        await self.sim.restart(down, keep=request)
        resp = web.json_response({"restarted": True, "down_seconds": down})
        resp.force_close()
        return resp

    async def sim_refuse(self, request: web.Request) -> web.StreamResponse:
        """``POST /_sim/refuse {"seconds": 2}``: stop listening for a while."""
        body = await self._json_object(request)
        seconds = float(body.get("seconds", 1.0))
        await self.sim.refuse_connections(seconds, keep=request)
        resp = web.json_response({"refusing_seconds": seconds})
        resp.force_close()
        return resp

    async def sim_config(self, request: web.Request) -> web.StreamResponse:
        """``GET /_sim/config``."""
        return web.json_response(self.sim.config.to_json())

    async def sim_config_post(self, request: web.Request) -> web.StreamResponse:
        """``POST /_sim/config``: change render_seconds, ws_delay_seconds, models, ..."""
        body = await self._json_object(request)
        try:
            apply_config(self.sim, body)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.sim.config.to_json())


def apply_config(sim: Simulator, changes: dict[str, Any]) -> None:
    """Apply runtime-adjustable settings to a running simulator."""
    config = sim.config
    known = {"render_seconds", "ws_delay_seconds", "models", "loras", "cache", "preview_method"}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    if "render_seconds" in changes:
        value = float(changes["render_seconds"])
        if value < 0:
            raise ValueError("render_seconds must be >= 0")
        config.render_seconds = value
    if "ws_delay_seconds" in changes:
        value = float(changes["ws_delay_seconds"])
        if value < 0:
            raise ValueError("ws_delay_seconds must be >= 0")
        config.ws_delay_seconds = value
        sim.hub.global_delay = value
    if "models" in changes:
        config.models = [str(m) for m in changes["models"]]
        sim.object_info.models = sorted(set(config.models))
    if "loras" in changes:
        config.loras = [str(m) for m in changes["loras"]]
        sim.object_info.loras = sorted(set(config.loras))
    if "cache" in changes:
        config.cache = bool(changes["cache"])
        sim.engine.cache.enabled = config.cache
        if not config.cache:
            sim.engine.cache.clear()
    if "preview_method" in changes:
        method = str(changes["preview_method"])
        if method not in PREVIEW_METHODS:
            raise ValueError(f"preview_method must be one of {PREVIEW_METHODS}")
        config.preview_method = method
