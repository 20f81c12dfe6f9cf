"""CPU time of processes from /proc: where a benchmark's CPU seconds went."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def snapshot() -> dict[tuple[int, str], float]:
    """CPU seconds of every process on the machine, keyed by (pid, command name)."""
    out: dict[tuple[int, str], float] = {}
    for path in Path("/proc").iterdir():
        entry = path.name
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            out[(int(entry), name)] = cpu_seconds(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _family(name: str) -> str:
    # "postgres: 15/main: …" backends, kernel workers "kworker/1:2" …
    return name.split(":")[0].split("/")[0].split()[0] if name else "?"


def spent(
    before: Mapping[tuple[int, str], float],
    after: Mapping[tuple[int, str], float],
    labels: Mapping[int, str],
) -> dict[str, float]:
    """CPU seconds spent between two snapshots, by label (pid → label) or command family."""
    totals: dict[str, float] = {}
    for key, seconds in after.items():
        delta = seconds - before.get(key, 0.0)
        if delta <= 0:
            continue
        label = labels.get(key[0]) or _family(key[1])
        totals[label] = totals.get(label, 0.0) + delta
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": _version(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"]),
        "postgresql": _version(["psql", "--version"]),
        "load_average_at_start": os.getloadavg(),
    }


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
