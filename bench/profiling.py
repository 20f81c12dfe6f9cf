"""Sampling profiles of running service processes with py-spy, summarised as text.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;… count``). The
summary names where the CPU time of a process goes: the functions with the most
samples on top of the stack (self), and the project functions with the most samples
anywhere on the stack (inclusive), as fractions of all non-idle samples.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
PROJECT_DIRS = ("services/", "shared/", "comfysim/")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def record(pid: int, out: Path, *, seconds: float, rate: int = 100) -> bool:
    """Sample ``pid`` for ``seconds``; False when py-spy is missing or failed."""
    exe = py_spy()
    if exe is None:
        return False
    process = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "-o",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait() == 0 and await asyncio.to_thread(out.exists)


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


@dataclass
class Summary:
    samples: int
    self_top: list[tuple[str, float]]
    inclusive_top: list[tuple[str, float]]
    by_area: list[tuple[str, float]]


AREAS = (
    ("sqlalchemy", "SQLAlchemy (ORM/Core, compile, result rows)"),
    ("asyncpg", "asyncpg (protocol, encode/decode)"),
    ("pydantic", "pydantic (validate/serialise)"),
    ("aio_pika", "aio-pika/aiormq (AMQP)"),
    ("aiormq", "aio-pika/aiormq (AMQP)"),
    ("pamqp", "aio-pika/aiormq (AMQP)"),
    ("faststream", "FastStream (subscriber/publisher plumbing)"),
    ("fast_depends", "FastStream (subscriber/publisher plumbing)"),
    ("structlog", "logging (structlog/stdlib)"),
    ("logging/", "logging (structlog/stdlib)"),
    ("PIL", "Pillow (PNG decode/encode)"),
    ("zlib", "Pillow (PNG decode/encode)"),
    ("aiohttp", "aiohttp (HTTP client/server)"),
    ("prometheus_client", "prometheus-client (metrics)"),
    ("json/", "json (stdlib)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
)


def _area(frames: list[str]) -> str:
    """The library the leaf frame belongs to (else the project module)."""
    leaf = frames[-1]
    for marker, label in AREAS:
        if marker in leaf:
            return label
    for frame in reversed(frames):
        for marker, label in AREAS:
            if marker in frame:
                return label
        if any(d in frame for d in PROJECT_DIRS):
            return "project code"
    return "other"


def summarise(raw: Path, *, top: int = 15) -> Summary:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        self_counts[_short(frames[-1])] += count
        seen = set()
        for frame in frames:
            name = _short(frame)
            if name in seen:
                continue
            seen.add(name)
            if any(d in frame for d in PROJECT_DIRS):
                inclusive[name] += count
        areas[_area(frames)] += count
    share = (lambda c: round(c / total, 4)) if total else (lambda c: 0.0)
    return Summary(
        samples=total,
        self_top=[(n, share(c)) for n, c in self_counts.most_common(top)],
        inclusive_top=[(n, share(c)) for n, c in inclusive.most_common(top)],
        by_area=[(n, share(c)) for n, c in areas.most_common()],
    )


def render(name: str, summary: Summary) -> str:
    lines = [f"== {name}: {summary.samples} samples"]
    lines.append("  by library (leaf frame):")
    lines += [f"    {share:6.1%}  {area}" for area, share in summary.by_area[:10]]
    lines.append("  project functions, inclusive:")
    lines += [f"    {share:6.1%}  {fn}" for fn, share in summary.inclusive_top]
    lines.append("  self (leaf) functions:")
    lines += [f"    {share:6.1%}  {fn}" for fn, share in summary.self_top]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(render(Path(arg).stem, summarise(Path(arg))))
