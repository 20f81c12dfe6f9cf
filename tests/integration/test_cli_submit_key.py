"""``anime submit --watch`` checks the API key before publishing (issue 12, item 6)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from cli import ops as cli_ops
from shared.settings import Settings
from tests.integration.test_cli_dlq import cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def refusing_notifier() -> AsyncIterator[int]:
    """A notifier stand-in that refuses every key with 401."""

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=401, text="unauthorized")

    app = web.Application()
    app.router.add_get("/v1/ws", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield port
    await runner.cleanup()


async def test_a_refused_key_publishes_nothing(
    pipeline_settings: Settings, refusing_notifier: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[object] = []

    async def record(_: Settings, request: dict[str, object]) -> object:
        published.append(request)
        raise AssertionError("published before the key was checked")

    monkeypatch.setattr(cli_ops, "publish_submission", record)
    settings = pipeline_settings.model_copy(
        update={"notifier_port": refusing_notifier, "http_host": "127.0.0.1", "api_key": "nope"}
    )
    result = await cli(settings, "submit", "-c", "Kai Nakamura", "--prompt", "x", "--watch")
    assert result.exit_code == 4, (result.stdout, result.stderr)
    assert "API key" in result.stderr
    assert published == []
