"""Ctrl-C on ``anime up`` and ``anime run <service>`` stops everything cleanly: every child
process is gone, no traceback, a conventional exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from shared.settings import Settings
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ANIME = str(Path(sys.executable).with_name("anime"))


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may contain spaces, so split after the last ")"
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def healthy(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def start(settings: Settings, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        ANIME,
        *args,
        env={**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_ctrl_c_on_up_stops_every_service(pipeline_settings: Settings) -> None:
    pipeline_settings = pipeline_settings.model_copy(update={"log_level": "INFO"})
    process = await start(pipeline_settings, "up", "--no-simulator")
    output = asyncio.create_task(process.stdout.read())  # type: ignore[union-attr]
    try:
        ports = [
            getattr(pipeline_settings, f"{s}_port")
            for s in ("ingest", "renderer", "archiver", "notifier")
        ]

        async def all_healthy() -> bool:
            return all([await healthy(port) for port in ports])

        await eventually(all_healthy, timeout=60, interval=0.3, what="four services healthy")
        children = children_of(process.pid)
        assert len(children) == 4

        process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = await asyncio.wait_for(process.wait(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = (await output).decode(errors="replace")
    assert code == 130, text[-3000:]
    assert not [pid for pid in children if alive(pid)]
    assert "Traceback" not in text, text[-3000:]
    assert text.count("service.stopped") == 4, text[-3000:]


async def test_ctrl_c_on_run_stops_the_service_gracefully(pipeline_settings: Settings) -> None:
    pipeline_settings = pipeline_settings.model_copy(update={"log_level": "INFO"})
    process = await start(pipeline_settings, "run", "archiver")
    output = asyncio.create_task(process.stdout.read())  # type: ignore[union-attr]
    try:
        await eventually(
            lambda: healthy(pipeline_settings.archiver_port), timeout=60, what="archiver healthy"
        )
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = (await output).decode(errors="replace")
    assert code in (0, 130), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "service.stopped" in text
