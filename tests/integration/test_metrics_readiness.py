"""``/readyz`` answers 503 while the broker is unreachable, and 200 again once it is back.

The shared RabbitMQ cannot be stopped, so the service talks to it through a TCP
forwarder this test owns; closing the forwarder (listener and every open connection)
is, for the service, the broker going away.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from services.archiver.main import create_app
from shared.settings import Settings
from tests.support.pipeline import running
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


class TcpForwarder:
    """Forwards 127.0.0.1:<port> to a target; can drop everything and come back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()
        self.server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()
            self.writers.discard(sink)


async def readyz(settings: Settings) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{settings.archiver_port}/readyz"
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        return response.status, await response.json()


async def test_readiness_fails_while_the_broker_is_unreachable(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    amqp = urlsplit(pipeline_settings.amqp_url)
    forwarder = TcpForwarder(amqp.hostname or "127.0.0.1", amqp.port or 5672)
    await forwarder.start()
    url = f"{amqp.scheme}://{amqp.username}:{amqp.password}@127.0.0.1:{forwarder.port}{amqp.path}"
    settings = pipeline_settings.model_copy(update={"amqp_url": url})
    try:
        async with running(create_app(settings)):
            # Given a service that is up and ready
            status, body = await readyz(settings)
            assert status == 200, body

            # When the broker becomes unreachable, the service is not ready, and says why
            await forwarder.stop()

            async def not_ready() -> dict[str, object] | None:
                status, body = await readyz(settings)
                return body if status == 503 else None

            body = await eventually(not_ready, timeout=20, what="503 from /readyz")
            assert body["ready"] is False
            assert "broker" in body["problems"]  # type: ignore[operator]
            # … while /healthz (the process lives) still answers
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://127.0.0.1:{settings.archiver_port}/healthz") as response,
            ):
                assert response.status == 200

            # When the broker is reachable again, the service reconnects and is ready
            await forwarder.start()

            async def ready() -> bool:
                return (await readyz(settings))[0] == 200

            await eventually(ready, timeout=30, what="200 from /readyz after reconnecting")
    finally:
        if forwarder.server is not None:
            await forwarder.stop()
