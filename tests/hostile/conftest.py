"""One pipeline (four service processes and a simulator) for every hostile-input test,
on the shared broker and database (an exchange, queue prefix and database of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from shared.settings import REPO_ROOT, Settings
from tests.support.amqp import publish_submission
from tests.support.chaos_campaign import SERVICES, robust_pipeline
from tests.support.chaos_checks import disk_leftovers
from tests.support.chaos_hostile import MARKER, TALLY
from tests.support.pipeline import delete_topology, isolated_settings
from tests.support.procs import Pipeline

FINAL = ("completed", "failed", "rejected", "cancelled")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY.total:
        terminalreporter.write_sep("=", "hostile inputs")
        terminalreporter.write_line(TALLY.table())
        for example in TALLY.plain_examples[:8]:
            terminalreporter.write_line(f"  plain-text refusal: {example}")
        for failure in TALLY.failures[:30]:
            terminalreporter.write_line(f"  NOT REFUSED: {failure}")


def valid_shot(tag: str) -> dict[str, Any]:
    return {
        "request_id": f"valid-{tag}-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "between",
        "shot": "shot-001",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "valid traffic between hostile inputs",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
    }


def _listing(root: Path, *, skip: frozenset[str] = frozenset(), depth: int = 2) -> set[str]:
    """Entries under ``root`` down to ``depth`` levels (names relative to root)."""
    found: set[str] = set()
    if not root.exists():
        return found

    def walk(folder: Path, level: int) -> None:
        with contextlib.suppress(OSError):
            for entry in folder.iterdir():
                relative = entry.relative_to(root).as_posix()
                if relative.split("/")[0] in skip:
                    continue
                found.add(relative)
                if level < depth and entry.is_dir() and not entry.is_symlink():
                    walk(entry, level + 1)

    walk(root, 1)
    return found


@dataclasses.dataclass
class HostileEnv:
    settings: Settings
    pipeline: Pipeline
    db: asyncpg.Pool
    http: aiohttp.ClientSession
    tmp: Path
    valid: list[uuid.UUID] = dataclasses.field(default_factory=list)
    before: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    @property
    def ingest(self) -> str:
        return f"http://127.0.0.1:{self.settings.ingest_port}"

    @property
    def notifier(self) -> str:
        return f"http://127.0.0.1:{self.settings.notifier_port}"

    def base(self, service: str) -> str:
        return self.ingest if service == "ingest" else self.notifier

    async def valid_traffic(self, tag: str, *, via: str = "http") -> None:
        """One valid job in between hostile ones: it must be accepted (and complete)."""
        if via == "http":
            async with self.http.post(f"{self.ingest}/v1/jobs", json=valid_shot(tag)) as reply:
                body = await reply.json()
                assert reply.status == 202, body
                self.valid.append(uuid.UUID(body["job_id"]))
        else:
            event = await publish_submission(self.settings, valid_shot(tag))
            self.valid.append(event.job_id)

    def outside(self) -> dict[str, set[str]]:
        """What exists outside the roots the services may write to."""
        return {
            "tmp": _listing(
                self.tmp, skip=frozenset({"assets", "references", "logs", "comfyui-0"})
            ),
            "/tmp": _listing(Path("/tmp"), depth=1),
            "repo": _listing(
                REPO_ROOT,
                skip=frozenset(
                    {".venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "bench"}
                ),
                depth=1,
            ),
            "repo/var": _listing(REPO_ROOT / "var", depth=3),
        }

    async def aftermath(self, *, timeout: float = 150.0) -> None:
        """No crash, valid traffic completed, nothing written outside the asset root."""
        for service in SERVICES:
            process = self.pipeline.supervisor.processes[service].process
            assert process is not None and process.returncode is None, f"{service} died"
            async with self.http.get(f"{self.pipeline.ready_url(service)}") as reply:
                assert reply.status == 200, (service, await reply.text())
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.db.fetch(
                "SELECT job_id, state FROM job_states WHERE job_id = ANY($1)", self.valid
            )
            states = {r["job_id"]: r["state"] for r in rows}
            if len(states) == len(self.valid) and all(s in FINAL for s in states.values()):
                break
            assert time.monotonic() < deadline, (
                f"valid traffic not finished: {len(states)}/{len(self.valid)} recorded, "
                f"{sum(s in FINAL for s in states.values())} final"
            )
            await asyncio.sleep(0.5)
        assert set(states.values()) == {"completed"}, states
        now = self.outside()
        for area, entries in now.items():
            new = entries - self.before.get(area, set())
            mine = {e for e in new if MARKER in e}
            assert not mine, f"written outside the asset root ({area}): {sorted(mine)}"
            if area == "tmp":
                assert not new, f"new files outside the asset root ({area}): {sorted(new)[:10]}"
        paths = {r["path"] for r in await self.db.fetch("SELECT path FROM assets")}
        assert disk_leftovers(self.settings, paths) == []
        for root in (self.tmp, REPO_ROOT, Path("/tmp")):
            hits = marked(root)
            assert not hits, hits


def marked(root: Path, *, max_depth: int = 6) -> list[str]:
    """Paths under ``root`` whose name carries the hostile marker (big trees pruned)."""
    hits = []
    base = len(root.parts)
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).parts) - base
        dirs[:] = [
            d
            for d in dirs
            if depth < max_depth
            and d not in {".venv", ".git", "node_modules", "proc"}
            and not d.startswith("pytest-of-")
        ]
        hits += [str(Path(folder) / n) for n in dirs + files if MARKER in n]
    return hits


@pytest_asyncio.fixture(scope="package")
async def hostile(
    amqp_url: str, database_url: str, seeded: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HostileEnv]:
    tmp = tmp_path_factory.mktemp("hostile")
    settings = isolated_settings(
        amqp_url=amqp_url, database_url=database_url, tmp=tmp, reference_root=seeded
    )
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        async with robust_pipeline(settings, tmp, render_seconds=0.05, simulators=1) as pipeline:
            db = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                env = HostileEnv(pipeline.settings, pipeline, db, http, tmp)
                env.before = env.outside()
                try:
                    yield env
                finally:
                    await db.close()
    finally:
        with contextlib.suppress(Exception):
            await delete_topology(amqp_url, settings)


@pytest.fixture(scope="package")
def concurrency() -> int:
    return int(os.environ.get("HOSTILE_CONCURRENCY", "24"))
