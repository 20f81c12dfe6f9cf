"""Command line: ``python -m comfysim --port 8190 --root /tmp/x [options]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from comfysim.config import PREVIEW_METHODS, SimConfig
from comfysim.faults import FaultSpec, FaultSpecError, parse_cli_fault
from comfysim.server import Simulator


def _names(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        out.extend(name.strip() for name in value.split(",") if name.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    """The CLI definition."""
    parser = argparse.ArgumentParser(
        prog="python -m comfysim",
        description="ComfyUI-compatible simulator (no GPU, no models needed).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8188, help="port to bind (8188; 0 = any)")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder holding input/, output/ and temp/ (default: a new temporary folder)",
    )
    parser.add_argument(
        "--render-seconds",
        type=float,
        default=0.0,
        help="simulated execution time per prompt, spread over sampler steps or nodes",
    )
    parser.add_argument(
        "--models",
        action="append",
        metavar="A.safetensors,B.safetensors",
        help="checkpoint names offered by CheckpointLoaderSimple (repeatable, comma list)",
    )
    parser.add_argument(
        "--loras", action="append", metavar="X.safetensors", help="LoRA names (like --models)"
    )
    parser.add_argument(
        "--preview-method",
        choices=PREVIEW_METHODS,
        default="none",
        help="sampler preview frames (none, as ComfyUI's default)",
    )
    parser.add_argument("--cache-none", action="store_true", help="disable the execution cache")
    parser.add_argument(
        "--ws-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay every websocket frame (slow socket)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="TYPE[:k=v,...]",
        help="arm a fault, e.g. oom:count=2 or http_500:probability=0.1,count=inf "
        "(repeatable; see docs/comfysim.md)",
    )
    parser.add_argument("--fault-seed", type=int, default=None, help="seed for fault dice")
    parser.add_argument("--log-level", default="INFO", help="logging level (INFO)")
    return parser


async def _serve(config: SimConfig) -> None:
    sim = Simulator(config)
    await sim.start()
    sys.stdout.write(f"comfysim listening on {sim.url} (root {sim.root})\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        faults: list[FaultSpec] = [parse_cli_fault(text) for text in args.fault]
    except FaultSpecError as exc:
        sys.stderr.write(f"bad --fault: {exc}\n")
        return 2
    root = args.root
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="comfysim-"))
    config = SimConfig(
        root=root,
        host=args.host,
        port=args.port,
        render_seconds=args.render_seconds,
        models=_names(args.models),
        loras=_names(args.loras),
        preview_method=args.preview_method,
        cache=not args.cache_none,
        ws_delay_seconds=args.ws_delay,
        faults=faults,
        fault_seed=args.fault_seed,
    )
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
