"""With the renderer idle, a ComfyUI backend going away (SIGKILL) turns ``/readyz`` to 503
and ``anime_backend_up`` to 0 within seconds, and its coming back turns both again.

The renderer runs in this process against the real broker and database; the backend is
the simulator as a real OS process, killed and restarted on the same port.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from cli.processes import Supervisor, simulator_argv
from services.renderer.main import create_app
from shared.settings import Settings
from tests.support.pipeline import free_port, running
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


async def readyz(settings: Settings) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{settings.renderer_port}/readyz"
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        return response.status, await response.json()


async def backend_up(settings: Settings, backend: str) -> float | None:
    url = f"http://127.0.0.1:{settings.renderer_port}/metrics"
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(f'anime_backend_up{{backend="{backend}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_idle_renderer_notices_a_backend_going_away_and_coming_back(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    backend = f"http://127.0.0.1:{port}"
    settings = pipeline_settings.model_copy(
        update={"comfyui_urls": [backend], "backend_probe_interval": 0.5}
    )
    supervisor = Supervisor(log_dir=tmp_path / "logs")
    try:
        await supervisor.start(
            "comfyui-sim",
            simulator_argv(port=port, root=tmp_path / "comfy", render_seconds=0),
            ready_url=f"{backend}/system_stats",
        )
        async with running(create_app(settings)):
            # Given an idle renderer whose one backend answers
            async def ready() -> bool:
                return (await readyz(settings))[0] == 200

            await eventually(ready, timeout=10, what="200 from /readyz")
            assert await backend_up(settings, backend) == 1.0

            # When the backend dies while no job runs on it
            await supervisor.kill("comfyui-sim")

            # Then readiness and the gauge say so within seconds, without any job failing
            async def not_ready() -> dict[str, object] | None:
                status, body = await readyz(settings)
                return body if status == 503 else None

            body = await eventually(not_ready, timeout=5, what="503 from /readyz")
            assert "backends" in body["problems"]  # type: ignore[operator]

            async def gauge_down() -> bool:
                return await backend_up(settings, backend) == 0.0

            await eventually(gauge_down, timeout=5, what="anime_backend_up 0")

            # When it comes back, both turn again
            await supervisor.restart("comfyui-sim")
            await eventually(ready, timeout=10, what="200 from /readyz after the restart")

            async def gauge_up() -> bool:
                return await backend_up(settings, backend) == 1.0

            await eventually(gauge_up, timeout=5, what="anime_backend_up 1")
    finally:
        await supervisor.stop_all()
