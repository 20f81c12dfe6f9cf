"""The ops dashboard, served by the notifier at ``/``.

One page (``static/index.html`` + ``app.js`` + ``style.css``, no external assets) that
polls ``GET /v1/dashboard/summary`` every few seconds and follows the notifier's own
WebSocket (``/v1/ws``, every event) for live progress:

* queue depths of every pipeline queue, work, retry and dead-letter, with consumers and
  rates (``shared.queues.inspect_queues``: management API, else passive declares);
* throughput (jobs completed and failed in the last minute, 5 minutes, hour);
* ComfyUI backends: reachable or not, running and pending prompts (asked of each
  backend), busy and mean render time when the renderer's ``/metrics`` has them;
* recent jobs with live progress bars and thumbnails of their archived images;
* failed jobs with their reasons, and the renderer's dead letters with a replay button
  (``POST /v1/admin/dlq/replay``, admin key).

The API key is typed into the page, kept in localStorage, and sent as ``X-API-Key``
(``?api_key=`` for the WebSocket only; thumbnails are fetched with the header). Data
routes need ``read``; the page itself and its static files are public (they hold no
data). A key limited to projects sees only its projects' jobs and dead letters, and no
queue figures (they count every project's messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from shared.auth import principal_of, requires
from shared.db.models import Asset, Job, JobEvent, JobState
from shared.logging import get_logger
from shared.queues import (
    ADMIN_KEY,
    QUEUES_NOT_FOR_LIMITED_KEYS,
    DeadLetters,
    QueueError,
    inspect_queues,
    register_admin_routes,
    resolve_dlq,
)

log = get_logger(__name__)

STATIC_ROOT = Path(__file__).parent / "static"
THUMBNAIL_SIZE = 192
FINAL_STATES = ("completed", "failed", "cancelled", "rejected")


class Dashboard:
    def __init__(
        self,
        runtime: Any,
        *,
        renderer_urls: list[str] | None = None,
        recent_jobs: int = 30,
        cache_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        host = (
            settings.http_host if settings.http_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        )
        self.renderer_urls = [
            u.rstrip("/") for u in (renderer_urls or [f"http://{host}:{settings.renderer_port}"])
        ]
        self.recent_jobs = recent_jobs
        self.cache_seconds = cache_seconds
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self._thumbnails: OrderedDict[uuid.UUID, bytes] = OrderedDict()

    # ------------------------------------------------------------------ routes

    async def index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_ROOT / "index.html", headers={"Cache-Control": "no-cache"})

    async def summary(self, request: web.Request) -> web.Response:
        """Everything the page shows, in one document (cached for a second)."""
        async with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] > self.cache_seconds:
                self._cache = (now, await self._collect())
            document = self._cache[1]
        principal = principal_of(request)
        if principal is not None and principal.projects is not None:
            allowed = principal.projects
            dead = document["dead_letters"]
            document = {
                **document,
                "jobs": [j for j in document["jobs"] if j["project"] in allowed],
                "failed": [j for j in document["failed"] if j["project"] in allowed],
                # Queue depths count every project's messages: not shown to this key.
                "queues": {"source": None, "note": QUEUES_NOT_FOR_LIMITED_KEYS, "queues": []},
                "dead_letters": {
                    **dead,
                    "items": [d for d in dead["items"] if d.get("project") in allowed],
                },
            }
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        """A small PNG of an archived image (the page fetches it with the key in a header)."""
        try:
            asset_id = uuid.UUID(request.match_info["asset_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        async with self.runtime.sessions() as session:
            asset = await session.get(Asset, asset_id)
        principal = principal_of(request)
        if asset is None or (principal is not None and not principal.may_see(asset.project_slug)):
            raise web.HTTPNotFound()
        data = self._thumbnails.get(asset_id)
        if data is None:
            found = await asyncio.to_thread(
                _thumbnail_png, Path(self.runtime.settings.asset_root), asset.path
            )
            if found is None:
                raise web.HTTPNotFound()
            data = self._thumbnails[asset_id] = found
            while len(self._thumbnails) > 512:
                self._thumbnails.popitem(last=False)
        return web.Response(
            body=data, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    # ------------------------------------------------------------------ data

    async def _collect(self) -> dict[str, Any]:
        queues, backends, jobs, dead = await asyncio.gather(
            self._queues(), self._backends(), self._jobs(), self._dead_letters()
        )
        return {
            "taken_at": datetime.now(UTC).isoformat(),
            "queues": queues,
            "backends": backends["backends"],
            "renderer": backends["renderer"],
            "throughput": jobs["throughput"],
            "jobs": jobs["recent"],
            "failed": jobs["failed"],
            "dead_letters": dead,
        }

    async def _queues(self) -> dict[str, Any]:
        try:
            connection = await self.runtime.http[ADMIN_KEY].get()
            report = await inspect_queues(
                self.runtime.settings, http=self.runtime.client, connection=connection
            )
            return report.as_dict()
        except (QueueError, OSError, aiohttp.ClientError) as exc:
            return {"source": None, "note": str(exc), "queues": []}

    async def _dead_letters(self) -> dict[str, Any]:
        settings = self.runtime.settings
        ref = resolve_dlq(settings, None)
        try:
            connection = await self.runtime.http[ADMIN_KEY].get()
            letters = await DeadLetters(settings, connection).list(ref.name, limit=50)
        except (QueueError, OSError) as exc:
            return {"queue": ref.name, "items": [], "error": str(exc)}
        return {"queue": ref.name, "items": [d.summary() for d in letters]}

    async def _backends(self) -> dict[str, Any]:
        client = self.runtime.client
        urls = list(self.runtime.settings.comfyui_urls)
        renderer: dict[str, Any] = {"ready": None, "problems": {}, "metrics": False}
        token = self.runtime.settings.metrics_token
        scrape = {"Authorization": f"Bearer {token}"} if token else {}
        busy: dict[str, float] = {}
        up: dict[str, float] = {}
        render: dict[str, tuple[float, float]] = {}

        async def probe(url: str) -> dict[str, Any]:
            entry: dict[str, Any] = {
                "url": url,
                "reachable": False,
                "running": None,
                "pending": None,
            }
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with client.get(f"{url}/queue", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        body = await r.json()
                        entry["reachable"] = True
                        entry["running"] = len(body.get("queue_running") or [])
                        entry["pending"] = len(body.get("queue_pending") or [])
            return entry

        async def from_renderer(base: str) -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with client.get(
                    f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    body = await r.json()
                    renderer["ready"] = bool(body.get("ready")) and renderer["ready"] is not False
                    renderer["problems"].update(body.get("problems") or {})
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with client.get(
                    f"{base}/metrics", headers=scrape, timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    r.raise_for_status()
                    text = await r.text()
                renderer["metrics"] = True
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        backend = sample.labels.get("backend")
                        if backend is None:
                            continue
                        if sample.name == "anime_backend_busy":
                            busy[backend] = max(busy.get(backend, 0.0), sample.value)
                        elif sample.name == "anime_backend_up":
                            up[backend] = max(up.get(backend, 0.0), sample.value)
                        elif sample.name in (
                            "anime_render_seconds_sum",
                            "anime_render_seconds_count",
                        ):
                            total, count = render.get(backend, (0.0, 0.0))
                            if sample.name.endswith("_sum"):
                                total += sample.value
                            else:
                                count += sample.value
                            render[backend] = (total, count)

        probes, *_ = await asyncio.gather(
            asyncio.gather(*(probe(u) for u in urls)),
            *(from_renderer(base) for base in self.renderer_urls),
        )
        for entry in probes:
            url = entry["url"]
            entry["busy"] = (
                bool(busy[url])
                if url in busy
                else (bool(entry["running"]) if entry["running"] is not None else None)
            )
            entry["renderer_sees_up"] = bool(up[url]) if url in up else None
            total, count = render.get(url, (0.0, 0.0))
            entry["renders"] = int(count)
            entry["mean_render_seconds"] = round(total / count, 3) if count else None
            entry["status"] = (
                "down" if not entry["reachable"] else ("busy" if entry["busy"] else "idle")
            )
        return {"backends": probes, "renderer": renderer}

    async def _jobs(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        state_of = func.coalesce(JobState.state, "submitted")
        async with self.runtime.sessions() as session:
            recent = (
                await session.execute(
                    select(Job, JobState)
                    .join(JobState, JobState.job_id == Job.id, isouter=True)
                    .order_by(Job.created_at.desc())
                    .limit(self.recent_jobs)
                )
            ).all()
            failed = (
                await session.execute(
                    select(Job, JobState)
                    .join(JobState, JobState.job_id == Job.id)
                    .where(JobState.state == "failed")
                    .order_by(JobState.updated_at.desc())
                    .limit(20)
                )
            ).all()
            ids = [job.id for job, _ in recent]
            failed_ids = sorted(
                {job.id for job, state in [*recent, *failed] if state and state.state == "failed"}
            )
            failures = {
                event.job_id: event.payload
                for event in (
                    await session.scalars(
                        select(JobEvent)
                        .where(JobEvent.job_id.in_(failed_ids), JobEvent.event_type == "job.failed")
                        .order_by(JobEvent.job_id, JobEvent.seq)
                    )
                    if failed_ids
                    else []
                )
            }
            assets = (
                (
                    await session.execute(
                        select(Asset.job_id, Asset.id)
                        .where(Asset.job_id.in_(ids))
                        .order_by(Asset.index)
                    )
                ).all()
                if ids
                else []
            )
            windows = {
                "1m": timedelta(minutes=1),
                "5m": timedelta(minutes=5),
                "1h": timedelta(hours=1),
            }
            throughput: dict[str, dict[str, int]] = {}
            for outcome in ("completed", "failed"):
                counts = (
                    await session.execute(
                        select(
                            *(
                                func.count().filter(JobState.finished_at >= now - span)
                                for span in windows.values()
                            )
                        ).where(
                            JobState.state == outcome, JobState.finished_at >= now - windows["1h"]
                        )
                    )
                ).one()
                throughput[outcome] = dict(zip(windows, (int(c) for c in counts), strict=True))
            active = await session.scalar(
                select(func.count()).select_from(JobState).where(state_of.not_in(FINAL_STATES))
            )
        throughput["active"] = {"now": int(active or 0)}
        first_asset: dict[uuid.UUID, list[str]] = {}
        for job_id, asset_id in assets:
            first_asset.setdefault(job_id, []).append(str(asset_id))
        return {
            "throughput": throughput,
            "recent": [
                _job_row(job, state, first_asset.get(job.id, []), failures.get(job.id))
                for job, state in recent
            ],
            "failed": [_job_row(job, state, [], failures.get(job.id)) for job, state in failed],
        }


DASHBOARD_KEY: web.AppKey[Dashboard] = web.AppKey("anime_dashboard", Dashboard)


def _job_row(
    job: Job, state: JobState | None, assets: list[str], failure: dict[str, Any] | None = None
) -> dict[str, Any]:
    current = state.state if state else ("rejected" if job.verdict == "rejected" else "submitted")
    progress = state.progress if state else 0.0
    if current == "completed":
        progress = 100.0
    return {
        "job_id": str(job.id),
        "project": job.project_slug,
        "shot": "/".join(p for p in (job.episode, job.scene, job.shot) if p),
        "state": current,
        "progress": progress,
        "attempt": state.attempt if state else 0,
        "backend": state.backend if state else None,
        "reason": state.reason
        if state
        else ("; ".join(str(p.get("message")) for p in job.problems or []) or None),
        "created_at": job.created_at.isoformat(),
        "updated_at": (state.updated_at if state else job.created_at).isoformat(),
        "assets": assets,
        # A failed job's structured problems (its job.failed), shown on its card.
        "problems": (failure or {}).get("problems", []) if current == "failed" else [],
    }


def _thumbnail_png(asset_root: Path, relative: str) -> bytes | None:
    """A PNG thumbnail of an asset file; None if it is missing or outside the root."""
    from PIL import Image

    root = asset_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    with Image.open(path) as image:
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        out = io.BytesIO()
        image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(out, "PNG")
        return out.getvalue()


def register_dashboard(runtime: Any, *, renderer_urls: list[str] | None = None) -> Dashboard:
    """Serve the ops dashboard on ``runtime``'s HTTP server (the notifier's).

    Adds ``/`` (the page), ``/dashboard/*`` (its static files),
    ``GET /v1/dashboard/summary`` and ``GET /v1/dashboard/thumbnails/{asset_id}`` (read
    scope), and the admin routes of :func:`shared.queues.register_admin_routes` that the
    replay button calls. ``renderer_urls`` are the renderers' HTTP bases for backend
    metrics (default: this host's ``renderer_port``). Idempotent.
    """
    app: web.Application = runtime.http
    existing = app.get(DASHBOARD_KEY)
    if existing is not None:
        return existing
    register_admin_routes(runtime)
    dashboard = Dashboard(runtime, renderer_urls=renderer_urls)
    app[DASHBOARD_KEY] = dashboard
    app.router.add_get("/", dashboard.index)
    app.router.add_static("/dashboard/", STATIC_ROOT, append_version=False)
    app.router.add_get("/v1/dashboard/summary", _read(dashboard.summary))
    app.router.add_get("/v1/dashboard/thumbnails/{asset_id}", _read(dashboard.thumbnail))
    return dashboard


def _read(handler: Any) -> Any:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = await handler(request)
        return result

    endpoint.__doc__ = handler.__doc__
    return requires("read")(endpoint)
