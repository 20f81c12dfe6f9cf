"""``anime``: the command line of anime-production.

Exit codes: 0 success, 1 the job or check failed, 2 bad usage, 3 a service (RabbitMQ,
PostgreSQL, the pipeline) could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from shared.settings import REPO_ROOT, get_settings

app = typer.Typer(
    name="anime",
    help="Run and operate the anime-production pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
docs_app = typer.Typer(help="Generated documents (AsyncAPI, JSON Schemas).", no_args_is_help=True)
app.add_typer(docs_app, name="docs")
console = Console()
err = Console(stderr=True)

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
SERVICE_NAMES = ("ingest", "renderer", "archiver", "notifier")


def _run(coro: Any) -> Any:
    """Run a coroutine, turning unreachable services into a clear message and exit 3."""
    try:
        return asyncio.run(coro)
    except (ConnectionError, OSError) as exc:
        err.print(f"[red]cannot reach a service:[/] {exc}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def demo(
    render_seconds: Annotated[float, typer.Option(help="Simulated render time.")] = 2.0,
) -> None:
    """Render one shot of Kai Nakamura through all four services and print the result.

    Example: anime demo
    """
    from shared.cli.demo import run_demo

    raise typer.Exit(_run(run_demo(get_settings(), console, render_seconds=render_seconds)))


@app.command()
def migrate() -> None:
    """Create the database if needed and apply every migration (alembic upgrade head)."""
    from shared.cli.ops import migrate as do_migrate

    _run(do_migrate(get_settings()))
    console.print("database at the latest migration")


@app.command()
def seed(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Load the demo project and the studio's characters (idempotent)."""
    from shared.cli.ops import load_seed

    result = _run(load_seed(get_settings()))
    console.print_json(json.dumps(result)) if as_json else console.print(f"seeded {result}")


@app.command()
def run(
    service: Annotated[str, typer.Argument(help="ingest, renderer, archiver or notifier")],
) -> None:
    """Run one service in the foreground (for process managers and containers).

    Example: anime run renderer
    """
    if service not in SERVICE_NAMES:
        err.print(f"[red]unknown service {service!r}[/]; choose one of {', '.join(SERVICE_NAMES)}")
        raise typer.Exit(EXIT_USAGE)
    import importlib

    module = importlib.import_module(f"services.{service}.main")
    _run(module.create_app().run())


@app.command()
def up(
    simulator: Annotated[bool, typer.Option(help="Start the ComfyUI simulator.")] = True,
    render_seconds: Annotated[float, typer.Option(help="Simulator render time.")] = 2.0,
) -> None:
    """Start all four services (and the ComfyUI simulator) with interleaved logs; Ctrl-C stops.

    The simulator is started unless ANIME_COMFYUI_URLS names real ComfyUI servers.
    """
    import os

    from shared.cli.processes import Supervisor, service_argv, simulator_argv

    colours = {"ingest": "cyan", "renderer": "magenta", "archiver": "green", "notifier": "yellow"}

    def sink(name: str, line: str) -> None:
        console.print(
            f"[{colours.get(name, 'white')}]{name:>10}[/] {line}", markup=True, highlight=False
        )

    async def main() -> None:
        settings = get_settings()
        supervisor = Supervisor(sink=sink)
        env = settings.as_env()
        try:
            if simulator and "ANIME_COMFYUI_URLS" not in os.environ:
                url = settings.comfyui_urls[0]
                port = int(url.rsplit(":", 1)[1])
                await supervisor.start(
                    "comfyui-sim",
                    simulator_argv(
                        port=port, root=REPO_ROOT / "var" / "comfyui", render_seconds=render_seconds
                    ),
                    ready_url=f"{url}/system_stats",
                )
            for service in ("archiver", "notifier", "renderer", "ingest"):
                await supervisor.start(service, service_argv(service), env=env)
            await asyncio.Event().wait()
        finally:
            await supervisor.stop_all()

    _run(main())


@app.command()
def submit(
    file: Annotated[Path | None, typer.Argument(help="JSON or YAML request file.")] = None,
    character: Annotated[
        list[str] | None, typer.Option("--character", "-c", help="Character name (repeat).")
    ] = None,
    project: Annotated[str, typer.Option(help="Project slug.")] = "neon-skies",
    prompt: Annotated[str, typer.Option(help="Shot prompt.")] = "",
    template: Annotated[str, typer.Option(help="Workflow template.")] = "txt2img",
    watch: Annotated[bool, typer.Option(help="Follow progress until the job ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Submit a shot as a job.submitted event.

    Examples: anime submit -c "Kai Nakamura" --prompt "rooftop at dusk" --watch;
    anime submit shot.yaml --json
    """
    from shared.cli.ops import publish_submission, watch_job

    if file is not None:
        import yaml

        request = yaml.safe_load(file.read_text())
    else:
        request = {
            "request_id": f"cli-{uuid.uuid4().hex[:12]}",
            "project": project,
            "characters": [{"name": c} for c in (character or [])],
            "prompt": prompt,
            "template": template,
        }
    settings = get_settings()
    try:
        event = _run(publish_submission(settings, request))
    except ValueError as exc:
        err.print(f"[red]invalid request:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if as_json:
        print(json.dumps({"job_id": str(event.job_id), "correlation_id": event.correlation_id}))
    else:
        console.print(f"submitted job {event.job_id}")
    if watch:
        state = _run(
            watch_job(
                settings,
                event.job_id,
                lambda f: console.print(f"{f['seq']:>3} {f['event_type']:<22} {f['state']}"),
            )
        )
        raise typer.Exit(0 if state == "completed" else EXIT_FAILED)


@app.command("watch")
def watch_cmd(job_id: uuid.UUID) -> None:
    """Follow a job's events until it ends (exit 0 if completed)."""
    from shared.cli.ops import watch_job

    state = _run(
        watch_job(
            get_settings(),
            job_id,
            lambda f: console.print(f"{f['seq']:>3} {f['event_type']:<22} {f['state']}"),
        )
    )
    raise typer.Exit(0 if state == "completed" else EXIT_FAILED)


@docs_app.command("generate")
def docs_generate(
    out: Annotated[Path, typer.Option(help="Docs folder.")] = REPO_ROOT / "docs",
) -> None:
    """Regenerate docs/asyncapi.json and docs/schemas/*.json from the code."""
    from shared.contract import write_documents

    for path in write_documents(out):
        console.print(f"wrote {path}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
