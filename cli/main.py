"""``anime``: the command line of anime-production.

Exit codes: 0 success, 1 the job or check failed, 2 bad usage, 3 a service (RabbitMQ,
PostgreSQL, the pipeline) could not be reached, 4 a service refused the credentials.
See docs/operations.md.
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

from cli.broker_cmd import broker_app
from cli.characters import characters_app
from cli.keys import keys_app
from shared.settings import REPO_ROOT, get_settings

app = typer.Typer(
    name="anime",
    help="Run and operate the anime-production pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
docs_app = typer.Typer(help="Generated documents (AsyncAPI, JSON Schemas).", no_args_is_help=True)
app.add_typer(docs_app, name="docs")
app.add_typer(keys_app, name="keys")
app.add_typer(characters_app, name="characters")
app.add_typer(broker_app, name="broker")
console = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 1, 2, 3, 4


@app.callback()
def _every_command(ctx: typer.Context) -> None:
    """Run and operate the anime-production pipeline."""
    from cli import common

    common.quiet_libraries = ctx.invoked_subcommand not in ("run", "up")


SERVICE_NAMES = ("ingest", "renderer", "archiver", "notifier")


def _run(coro: Any) -> Any:
    """Run a coroutine, turning unreachable services and refused credentials into a clear
    message and exit 3 or 4 (see cli/common.py)."""
    from cli.common import run_async

    return run_async(coro)


@app.command()
def demo(
    render_seconds: Annotated[float, typer.Option(help="Simulated render time.")] = 2.0,
) -> None:
    """Render one shot of Kai Nakamura through all four services and print the result.

    Example: anime demo
    """
    from cli.demo import run_demo

    raise typer.Exit(_run(run_demo(get_settings(), console, render_seconds=render_seconds)))


@app.command()
def migrate() -> None:
    """Create the database if needed and apply every migration (alembic upgrade head)."""
    from cli.ops import migrate as do_migrate

    _run(do_migrate(get_settings()))
    console.print("database at the latest migration")


@app.command()
def seed(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Load the demo project and the studio's characters (idempotent)."""
    from cli.ops import load_seed

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

    from cli.processes import serve_app

    try:
        module = importlib.import_module(f"services.{service}.main")
        raise typer.Exit(_run(serve_app(module.create_app())))
    except KeyboardInterrupt:  # Ctrl-C before the event loop's handlers are in
        raise typer.Exit(130) from None


@app.command()
def up(
    simulator: Annotated[bool, typer.Option(help="Start the ComfyUI simulator.")] = True,
    render_seconds: Annotated[float, typer.Option(help="Simulator render time.")] = 2.0,
) -> None:
    """Start all four services (and the ComfyUI simulator) with interleaved logs; Ctrl-C stops.

    The simulator is started unless ANIME_COMFYUI_URLS names real ComfyUI servers.
    """
    import os
    import signal
    import time

    from cli.processes import Supervisor, port_taken, service_argv, simulator_argv
    from cli.simulator import simulator_models
    from shared.broker_access import provision_services, service_env

    colours = {"ingest": "cyan", "renderer": "magenta", "archiver": "green", "notifier": "yellow"}

    def sink(name: str, line: str) -> None:
        console.print(
            f"[{colours.get(name, 'white')}]{name:>10}[/] {line}", markup=True, highlight=False
        )

    async def main() -> int:
        settings = get_settings()
        log_dir = REPO_ROOT / "var" / "logs" / time.strftime("up-%Y%m%d-%H%M%S")
        supervisor = Supervisor(sink=sink, log_dir=log_dir)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[int] = []
        stopping = False

        def on_signal(sig: signal.Signals) -> None:
            # The first signal interrupts whatever `up` is doing; stopping the children
            # (in `finally`) is never interrupted.
            if not received and not stopping and task is not None:
                task.cancel()
            received.append(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        sim_url = None
        if simulator and "ANIME_COMFYUI_URLS" not in os.environ:
            sim_url = settings.comfyui_urls[0]
        ports = {f"{s} port": getattr(settings, f"{s}_port") for s in SERVICE_NAMES}
        if sim_url is not None:
            ports["simulator port"] = int(sim_url.rsplit(":", 1)[1])
        for what, port in ports.items():
            holder = port_taken(settings.http_host, port)
            if holder is not None:
                err.print(f"[red]error:[/] {what} {port} is {holder}", highlight=False)
                return EXIT_FAILED
        try:
            env = {s: settings.as_env() for s in SERVICE_NAMES}
            # Each service as its own least-privileged broker user where the account may
            # provision them (guest on a development broker may); otherwise as the account.
            urls = await provision_services(settings)
            if urls is not None:
                env = {s: service_env(settings, urls, s) for s in SERVICE_NAMES}
            if sim_url is not None:
                await supervisor.start(
                    "comfyui-sim",
                    simulator_argv(
                        port=ports["simulator port"],
                        root=REPO_ROOT / "var" / "comfyui",
                        render_seconds=render_seconds,
                        # The same set-up as the demo's: every model the jobs can name.
                        extra=simulator_models(settings.templates_dir).argv(),
                    ),
                    ready_url=f"{sim_url}/system_stats",
                )
            for service in ("archiver", "notifier", "renderer", "ingest"):
                await supervisor.start(service, service_argv(service), env=env[service])
            name, code = await supervisor.first_exit()
            err.print(
                f"[red]error:[/] {name} exited unexpectedly with code {code}; "
                f"its log: {log_dir / (name + '.log')}",
                highlight=False,
            )
            return EXIT_FAILED
        except asyncio.CancelledError:
            if not received or task is None:
                raise
            task.uncancel()
            return 128 + received[0]
        except RuntimeError as exc:  # a child died while starting (Supervisor.wait_ready)
            err.print(f"[red]error:[/] {exc}; logs in {log_dir}", highlight=False)
            return EXIT_FAILED
        finally:
            stopping = True
            await supervisor.stop_all()

    try:
        code = _run(main())
    except KeyboardInterrupt:  # Ctrl-C before the event loop's handlers are in
        code = 130
    raise typer.Exit(code)


def _requests_from(file: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        loaded = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {file}: {exc}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("jobs"), list):
        loaded = loaded["jobs"]
    items = loaded if isinstance(loaded, list) else [loaded]
    if not items or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"{file} must hold a request object, a list of them, or {{jobs: [...]}}")
    return [{"request_id": f"cli-{uuid.uuid4().hex[:12]}", **item} for item in items]


@app.command()
def submit(
    file: Annotated[
        Path | None, typer.Argument(help="JSON or YAML file: one request or a list of them.")
    ] = None,
    character: Annotated[
        list[str] | None, typer.Option("--character", "-c", help="Character name (repeat).")
    ] = None,
    project: Annotated[str, typer.Option(help="Project slug.")] = "neon-skies",
    episode: Annotated[str | None, typer.Option(help="Episode slug.")] = None,
    scene: Annotated[str | None, typer.Option(help="Scene slug.")] = None,
    shot: Annotated[str | None, typer.Option(help="Shot slug.")] = None,
    prompt: Annotated[str, typer.Option(help="Shot prompt.")] = "",
    template: Annotated[str, typer.Option(help="Workflow template.")] = "txt2img",
    negative_prompt: Annotated[str | None, typer.Option(help="Negative prompt.")] = None,
    priority: Annotated[int | None, typer.Option(help="Priority 0-9 (9 most urgent).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Job parameter KEY=VALUE (repeat): seed, steps, cfg, width, height, "
            "batch_size, sampler, scheduler, checkpoint. Also applied over a file's requests.",
        ),
    ] = None,
    file_option: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Request file (same as the FILE argument)."),
    ] = None,
    watch: Annotated[
        bool, typer.Option(help="Show a progress bar per job until all end; then the files.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --watch: give up after seconds.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Submit shots as job.submitted events (the AMQP door of ingest).

    With --watch, exit 0 only if every job completed (1 otherwise).

    Examples: anime submit -c "Kai Nakamura" --prompt "rooftop at dusk" --watch;
    anime submit -c "Kai Nakamura" --prompt "rooftop at dusk" -p steps=30 -p width=768;
    anime submit shots.yaml --watch --json; anime submit --file request.json
    """
    from cli.ops import publish_submission
    from cli.submitting import parse_params

    try:
        if file is not None and file_option is not None:
            raise ValueError("give the request file once (FILE or --file)")
        file = file or file_option
        params = parse_params(param or [])
        if file is not None:
            requests = _requests_from(file)
            overrides: dict[str, Any] = {"negative_prompt": negative_prompt, "priority": priority}
            for item in requests:
                item.update({k: v for k, v in overrides.items() if v is not None})
                if params:
                    given = item.get("params") or {}
                    if not isinstance(given, dict):
                        raise ValueError("a request's params must be an object")
                    item["params"] = {**given, **params}
        else:
            if not character:
                raise ValueError("name at least one character (-c NAME) or give a request file")
            request: dict[str, Any] = {
                "request_id": f"cli-{uuid.uuid4().hex[:12]}",
                "project": project,
                "characters": [{"name": c} for c in character],
                "prompt": prompt,
                "template": template,
            }
            request.update(
                {k: v for k, v in (("episode", episode), ("scene", scene), ("shot", shot)) if v}
            )
            if negative_prompt is not None:
                request["negative_prompt"] = negative_prompt
            if priority is not None:
                request["priority"] = priority
            if params:
                request["params"] = params
            requests = [request]
        settings = get_settings()

        async def publish_all() -> list[Any]:
            if watch:  # a refused key must refuse before the jobs exist, not after
                from cli.watching import check_can_watch

                await check_can_watch(settings)
            return [await publish_submission(settings, r) for r in requests]

        events = _run(publish_all())
    except ValueError as exc:
        err.print(f"[red]invalid request:[/] {str(exc)[:2000]}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    submitted = [
        {"job_id": str(e.job_id), "request_id": e.request_id, "correlation_id": e.correlation_id}
        for e in events
    ]
    if not watch:
        if as_json:
            print(json.dumps({"jobs": submitted}, indent=2))
        else:
            for item in submitted:
                console.print(f"submitted job {item['job_id']} (request {item['request_id']})")
        return
    if not as_json:
        for item in submitted:
            console.print(f"submitted job {item['job_id']} (request {item['request_id']})")
    _watch_and_exit(settings, [e.job_id for e in events], timeout=timeout, as_json=as_json)


def _watch_and_exit(
    settings: Any, job_ids: list[uuid.UUID], *, timeout: float, as_json: bool
) -> None:
    from cli.watching import watch_with_progress

    jobs = _run(watch_with_progress(settings, job_ids, console, timeout=timeout, quiet=as_json))
    if as_json:
        print(json.dumps({"jobs": [p.as_dict() for p in jobs.values()]}, indent=2))
    ok = all(p.state == "completed" for p in jobs.values())
    raise typer.Exit(0 if ok else EXIT_FAILED)


@app.command("watch")
def watch_cmd(
    job_ids: Annotated[
        list[str], typer.Argument(help="One or more job ids (or unique prefixes of them).")
    ],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Follow jobs live (progress bars) until they end; exit 0 if all completed, else 1.

    Replays each job's history first, so watching a finished job prints its outcome.

    Examples: anime watch 3f2a9c1e-…; anime watch <id1> <id2> --json
    """
    from cli.jobs import resolve_job_id

    settings = get_settings()

    async def resolve() -> list[uuid.UUID]:
        return [await resolve_job_id(settings, given) for given in job_ids]

    _watch_and_exit(settings, _run(resolve()), timeout=timeout, as_json=as_json)


@docs_app.command("generate")
def docs_generate(
    out: Annotated[Path, typer.Option(help="Docs folder.")] = REPO_ROOT / "docs",
) -> None:
    """Regenerate docs/asyncapi.json and docs/schemas/*.json from the code."""
    from shared.contract import write_documents

    for path in write_documents(out):
        console.print(f"wrote {path}")


# Operating commands (cli/jobs.py, cli/queues_cmd.py).
from cli.jobs import jobs_app, projects  # noqa: E402
from cli.queues_cmd import dlq_app, queues  # noqa: E402

app.add_typer(jobs_app, name="jobs")
app.add_typer(dlq_app, name="dlq")
app.command("queues")(queues)
app.command("projects")(projects)


def main() -> None:  # pragma: no cover
    sys.exit(app())
