"""Following jobs live on the notifier's WebSocket, with a rich progress bar per job."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cli.common import api_headers, notifier_base
from cli.failures import failure_lines, print_wrapped
from shared.settings import Settings

FINAL_STATES = frozenset({"completed", "failed", "cancelled", "rejected"})
STATE_STYLE = {
    "completed": "green",
    "failed": "red",
    "rejected": "red",
    "cancelled": "yellow",
    "retrying": "yellow",
}


@dataclasses.dataclass
class JobProgress:
    job_id: uuid.UUID
    state: str = "submitted"
    last_event: str = ""
    percent: float = 0.0
    reason: str | None = None
    #: A failure's structured problems (``job.failed``'s ``problems``) and its lines.
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    details: list[str] = dataclasses.field(default_factory=list)
    assets: list[str] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def apply(self, frame: dict[str, Any], asset_root: Path) -> None:
        event = frame.get("event") or {}
        self.state = str(frame.get("state") or self.state)
        self.last_event = str(frame.get("event_type") or "")
        if self.last_event == "job.progress" and isinstance(event.get("percent"), int | float):
            self.percent = max(self.percent, float(event["percent"]))
        elif self.last_event == "job.started":
            self.percent = 0.0
        elif self.last_event in ("job.rendered", "job.archived"):
            self.percent = 100.0
        if self.last_event in ("job.failed", "job.retrying", "job.cancelled"):
            self.reason = str(event.get("reason") or "") or None
        if self.last_event == "job.failed":
            self.problems = list(event.get("problems") or [])
            self.details = [str(d) for d in event.get("details") or []]
        if self.last_event == "job.rejected":
            problems = event.get("problems") or []
            self.reason = "; ".join(f"{p.get('field')}: {p.get('message')}" for p in problems)
        if self.last_event == "job.archived":
            self.assets = [str(asset_root / a["path"]) for a in event.get("assets", [])]

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "state": self.state,
            "reason": self.reason,
            "problems": self.problems,
            "details": self.details,
            "assets": self.assets,
        }


async def check_can_watch(settings: Settings) -> None:
    """Open (and close) the notifier's WebSocket with the API key: a refused key or an
    unreachable notifier raises here, before anything is published."""
    async with (
        aiohttp.ClientSession() as client,
        client.ws_connect(f"{notifier_base(settings)}/v1/ws", headers=api_headers(settings)),
    ):
        pass


async def follow_jobs(
    settings: Settings,
    job_ids: Iterable[uuid.UUID],
    on_frame: Callable[[JobProgress, dict[str, Any]], None],
    *,
    timeout: float = 600.0,
) -> dict[uuid.UUID, JobProgress]:
    """Watch jobs until each reaches a final state (ledger replay first, then live)."""
    jobs = {job_id: JobProgress(job_id) for job_id in job_ids}
    url = f"{notifier_base(settings)}/v1/ws"
    asset_root = Path(settings.asset_root)
    async with (
        aiohttp.ClientSession() as client,
        client.ws_connect(url, heartbeat=20, headers=api_headers(settings)) as ws,
    ):
        for job_id in jobs:
            await ws.send_json({"action": "subscribe", "job_id": str(job_id), "since": 0})
        async with asyncio.timeout(timeout):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame.get("type") == "error":
                    raise RuntimeError(f"the notifier refused the subscription: {frame}")
                if frame.get("type") != "event":
                    continue
                try:
                    progress = jobs[uuid.UUID(frame["job_id"])]
                except (KeyError, ValueError):
                    continue
                progress.apply(frame, asset_root)
                on_frame(progress, frame)
                if all(p.done for p in jobs.values()):
                    return jobs
    raise ConnectionError("the notifier closed the connection before the jobs finished")


async def watch_with_progress(
    settings: Settings,
    job_ids: list[uuid.UUID],
    console: Console,
    *,
    timeout: float = 600.0,
    quiet: bool = False,
) -> dict[uuid.UUID, JobProgress]:
    """A progress bar per job, until all have ended; then the archived paths."""
    if quiet:
        return await follow_jobs(settings, job_ids, lambda *_: None, timeout=timeout)
    with Progress(
        TextColumn("{task.fields[job]}"),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    ) as bars:
        tasks: dict[uuid.UUID, TaskID] = {
            job_id: bars.add_task("submitted", total=100, job=str(job_id)[:8]) for job_id in job_ids
        }

        def show(progress: JobProgress, _: dict[str, Any]) -> None:
            style = STATE_STYLE.get(progress.state, "cyan")
            bars.update(
                tasks[progress.job_id],
                description=f"[{style}]{progress.state:<10}[/] {progress.last_event:<14}",
                completed=progress.percent,
            )

        jobs = await follow_jobs(settings, job_ids, show, timeout=timeout)
    for progress in jobs.values():
        style = STATE_STYLE.get(progress.state, "white")
        console.print(f"job {progress.job_id} [{style}]{progress.state}[/]", soft_wrap=True)
        if progress.state != "completed":
            print_wrapped(
                console, failure_lines(progress.reason, progress.problems, progress.details)
            )
        for path in progress.assets:
            console.print(f"  archived: [bold green]{path}[/]", highlight=False, soft_wrap=True)
    return jobs
