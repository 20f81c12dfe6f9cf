"""``anime demo``: one shot of Kai Nakamura through the whole pipeline, end to end.

Migrates and seeds the database, starts the ComfyUI simulator (unless real ComfyUI URLs
are configured) and the four services as separate processes, submits the shot as
another system would (a ``job.submitted`` event), shows its progress from the notifier,
prints the archived file and the job's row, and stops everything.

The demo watches with an API key of its own: ``read`` only, limited to the demo's
project, and revoked when the demo ends (however it ends), so no key is left behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.ops import job_assets, job_row, load_seed, migrate, publish_submission, watch_job
from cli.processes import (
    SERVICES,
    Supervisor,
    healthz_pid,
    port_taken,
    service_argv,
    simulator_argv,
)
from cli.simulator import simulator_models
from shared.auth import create_key, revoke_key
from shared.broker_access import provision_services, service_env
from shared.db.session import make_engine, make_sessionmaker
from shared.settings import REPO_ROOT, Settings

#: The name of the key each demo run mints (and revokes when it ends).
DEMO_KEY_NAME = "anime demo (revoked when the demo ends)"


def demo_request() -> dict[str, Any]:
    return {
        "request_id": f"demo-{int(time.time())}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "rooftop-dusk",
        "shot": "shot-012",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "standing on a rooftop at dusk, city lights below, wind in his hair",
        "negative_prompt": "lowres, watermark",
        "template": "txt2img",
        "params": {
            "steps": 12,
            "cfg": 6.5,
            "width": 512,
            "height": 512,
        },
        "priority": 5,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _own_ports(settings: Settings, console: Console) -> Settings:
    """The settings with a free port for every service whose configured one is taken."""
    update: dict[str, Any] = {}
    for service in SERVICES:
        port = getattr(settings, f"{service}_port")
        holder = port_taken(settings.http_host, port)
        if holder is not None:
            update[f"{service}_port"] = _free_port()
            console.print(f"{service}: port {port} is {holder}; using {update[f'{service}_port']}")
    if "ingest_port" in update and settings.public_ingest_url.endswith(f":{settings.ingest_port}"):
        update["public_ingest_url"] = f"http://127.0.0.1:{update['ingest_port']}"
    return settings.model_copy(update=update) if update else settings


async def run_demo(settings: Settings, console: Console, *, render_seconds: float = 2.0) -> int:
    console.rule("[bold]anime-production: one shot, end to end")
    await migrate(settings)
    seeded = await load_seed(settings)
    console.print(f"database migrated and seeded: {seeded['characters']}")
    request = demo_request()
    key, key_id = await _demo_key(settings, request["project"])
    try:
        return await _run(
            settings.model_copy(update={"api_key": key}), console, request, render_seconds
        )
    finally:
        await _revoke(settings, key_id)


async def _demo_key(settings: Settings, project: str) -> tuple[str, str]:
    """A key to watch the demo's job with: read-only, one project; returns key and id."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        key, row = await create_key(
            make_sessionmaker(engine), name=DEMO_KEY_NAME, scopes=["read"], projects=[project]
        )
    finally:
        await engine.dispose()
    return key, str(row.id)


async def _revoke(settings: Settings, key_id: str) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        await revoke_key(make_sessionmaker(engine), key_id)
    finally:
        await engine.dispose()


async def _run(
    settings: Settings, console: Console, request: dict[str, Any], render_seconds: float
) -> int:
    log_dir = REPO_ROOT / "var" / "logs" / time.strftime("demo-%Y%m%d-%H%M%S")
    supervisor = Supervisor(log_dir=log_dir)
    try:
        if "ANIME_COMFYUI_URLS" not in os.environ:
            port = _free_port()
            settings = settings.model_copy(update={"comfyui_urls": [f"http://127.0.0.1:{port}"]})
            await supervisor.start(
                "comfyui-sim",
                simulator_argv(
                    port=port,
                    root=REPO_ROOT / "var" / "comfyui",
                    render_seconds=render_seconds,
                    extra=simulator_models(settings.templates_dir).argv(),
                ),
                ready_url=f"http://127.0.0.1:{port}/system_stats",
            )
            console.print(f"ComfyUI simulator on port {port}")
        settings = _own_ports(settings, console)
        # Each service as its own least-privileged broker user where the account may
        # provision them (guest on a development broker may); otherwise as the account.
        urls = await provision_services(settings)
        env = {s: service_env(settings, urls, s) if urls else settings.as_env() for s in SERVICES}
        ports = {
            "ingest": settings.ingest_port,
            "renderer": settings.renderer_port,
            "archiver": settings.archiver_port,
            "notifier": settings.notifier_port,
        }
        for service in ("archiver", "notifier", "renderer", "ingest"):
            await supervisor.start(
                service,
                service_argv(service),
                env=env[service],
                ready_url=f"http://{settings.http_host}:{ports[service]}/readyz",
            )
            # Ready answered by the process we started, not another stack on that port.
            host = (
                "127.0.0.1" if settings.http_host in ("0.0.0.0", "", "::") else settings.http_host
            )
            pid = await healthz_pid(f"http://{host}:{ports[service]}/healthz")
            own = supervisor.processes[service].process
            if own is None or pid != own.pid:
                console.print(
                    f"[red]port {ports[service]} is answered by pid {pid}, not the demo's "
                    f"{service}[/] (logs: {log_dir})"
                )
                return 1
            console.print(f"{service} ready on port {ports[service]} (pid {pid})")
        assert set(SERVICES) <= set(supervisor.processes)

        event = await publish_submission(settings, request)
        console.print(
            f"submitted job [bold]{event.job_id}[/] over AMQP (request {request['request_id']})"
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task("submitted", total=100)

            def show(frame: dict[str, Any]) -> None:
                body = frame["event"]
                percent = body.get("percent")
                if frame["event_type"] == "job.archived":
                    percent = 100
                progress.update(
                    bar,
                    description=f"{frame['event_type']:<14} {frame['state']}",
                    completed=percent if percent is not None else progress.tasks[0].completed,
                )

            final = await watch_job(settings, event.job_id, show, timeout=180)
        row = await job_row(settings, event.job_id)
        if final != "completed":
            console.print(f"[red]job ended {final}[/]: {json.dumps(row, indent=2)}")
            return 1
        for asset in await job_assets(settings, event.job_id):
            path = Path(settings.asset_root) / asset.path
            # soft_wrap: a path cut over two lines cannot be pasted.
            console.print(
                f"archived: [bold green]{path}[/] ({asset.width}x{asset.height}, {asset.bytes} bytes)",
                soft_wrap=True,
            )
        console.print("job row:")
        console.print_json(json.dumps(row))
        console.print(f"service logs: {log_dir}", soft_wrap=True)
        return 0
    finally:
        await supervisor.stop_all()
        console.print("all processes stopped")
