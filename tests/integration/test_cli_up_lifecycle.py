"""``anime up``'s process lifecycle: SIGTERM stops every child; a taken port or a child
that dies ends ``up`` with one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from shared.settings import Settings
from tests.integration.test_cli_up import alive, children_of, healthy, start
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PORTS = ("ingest", "renderer", "archiver", "notifier")


async def _up_and_healthy(settings: Settings) -> tuple[asyncio.subprocess.Process, set[int]]:
    process = await start(settings, "up", "--no-simulator")
    ports = [getattr(settings, f"{s}_port") for s in PORTS]

    async def all_healthy() -> bool:
        return all([await healthy(port) for port in ports])

    await eventually(all_healthy, timeout=60, interval=0.3, what="four services healthy")
    return process, children_of(process.pid)


async def test_sigterm_on_up_stops_every_child(pipeline_settings: Settings) -> None:
    process, children = await _up_and_healthy(pipeline_settings)
    output = asyncio.create_task(process.stdout.read())  # type: ignore[union-attr]
    try:
        assert len(children) == 4
        process.send_signal(signal.SIGTERM)  # what systemd, `timeout` and CI send
        code = await asyncio.wait_for(process.wait(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = (await output).decode(errors="replace")
    assert code == 128 + signal.SIGTERM, text[-3000:]
    assert not [pid for pid in children if alive(pid)]
    assert "Traceback" not in text, text[-3000:]


async def test_a_taken_port_is_one_line_and_exit_1(pipeline_settings: Settings) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", pipeline_settings.archiver_port))
        holder.listen()
        process = await start(pipeline_settings, "up", "--no-simulator")
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode(errors="replace").strip()
    assert process.returncode == 1, text
    assert "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    assert f"archiver port {pipeline_settings.archiver_port}" in text, text
    assert f"pid {os.getpid()}" in text, text  # the holder is named
    assert not children_of(process.pid)


async def test_a_child_that_dies_ends_up_naming_it(pipeline_settings: Settings) -> None:
    process, children = await _up_and_healthy(pipeline_settings)
    output = asyncio.create_task(process.stdout.read())  # type: ignore[union-attr]
    try:
        pid = await healthz_pid_of(pipeline_settings.renderer_port)
        assert pid in children
        os.kill(pid, signal.SIGKILL)
        code = await asyncio.wait_for(process.wait(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = (await output).decode(errors="replace")
    assert code == 1, text[-3000:]
    assert "renderer exited unexpectedly" in text, text[-3000:]
    assert "renderer.log" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert not [pid for pid in children if alive(pid)]


async def healthz_pid_of(port: int) -> int:
    from cli.processes import healthz_pid

    pid = await healthz_pid(f"http://127.0.0.1:{port}/healthz")
    assert pid is not None
    return pid
