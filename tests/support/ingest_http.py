"""Talking to a running ingest over HTTP in tests, and making the things tests need."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aiohttp
from prometheus_client import REGISTRY

from services.ingest.main import create_app
from shared.settings import Settings
from tests.support.pipeline import running


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = self.json["errors"]
        return errors

    def codes(self) -> set[str]:
        return {e["code"] for e in self.errors}

    def fields(self) -> set[str]:
        return {e["field"] for e in self.errors}

    def problem(self, field: str) -> dict[str, Any]:
        for error in self.errors:
            if error["field"] == field:
                return error
        raise AssertionError(f"no problem for {field!r} in {self.errors}")


class IngestClient:
    """An aiohttp client for one ingest; ``key`` is sent as a Bearer token."""

    def __init__(self, settings: Settings, *, key: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{settings.ingest_port}"
        self.key = key
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> IngestClient:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    def with_key(self, key: str | None) -> IngestClient:
        other = IngestClient.__new__(IngestClient)
        other.base, other.key, other._session = self.base, key, self._session
        return other

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        assert self._session is not None, "use 'async with IngestClient(...)'"
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        if json_body is not None:
            data = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self._session.request(
            method, self.base + path, data=data, headers=sent, params=params
        ) as response:
            return Reply(response.status, dict(response.headers), await response.read())

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, json_body=body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, json_body=body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)


@asynccontextmanager
async def ingest(settings: Settings, *, key: str | None = None) -> AsyncIterator[IngestClient]:
    """Ingest running in this process, and a client for it."""
    polls = _queue_polls()
    async with running(create_app(settings)), IngestClient(settings, key=key) as client:
        await _first_queue_poll(polls)
        yield client


def _queue_polls() -> float:
    values = (
        REGISTRY.get_sample_value("anime_queue_polls_total", {"service": "ingest", "outcome": o})
        for o in ("ok", "error")
    )
    return sum(v or 0.0 for v in values)


async def _first_queue_poll(before: float, *, limit: float = 5.0) -> None:
    """Wait (bounded) until the runtime's queue-depth poller finished its first poll.

    Work-around: ``QueueDepthPoller.stop()`` (shared/metrics.py) can hang when it cancels
    a poll in flight (aiormq turns the cancellation into an ordinary exception, which the
    poll loop swallows). Stopping a service between polls avoids that race.
    """
    for _ in range(int(limit / 0.01)):
        if _queue_polls() > before:
            return
        await asyncio.sleep(0.01)


def unique_slug(prefix: str = "proj") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unique_name(prefix: str = "Test Character") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def definition(**overrides: Any) -> dict[str, Any]:
    return {
        "appearance": "tall woman, short blue hair",
        "outfit": "pilot suit",
        "personality": "calm",
        "prompt_fragments": ["1girl", "solo"],
        "trigger_words": ["testpilot"],
        "negative_fragments": ["extra fingers"],
        "lora": None,
        "default_seed": 99,
        **overrides,
    }


async def make_project(client: IngestClient, slug: str | None = None) -> str:
    slug = slug or unique_slug()
    reply = await client.post("/v1/projects", {"slug": slug, "name": f"Project {slug}"})
    assert reply.status == 201, reply.raw
    return slug


async def make_character(
    client: IngestClient,
    *,
    project: str | None,
    name: str | None = None,
    versions: list[dict[str, Any]] | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A character with the given versions (the last one current); its document."""
    versions = versions or [definition()]
    reply = await client.post(
        "/v1/characters",
        {
            "name": name or unique_name(),
            "project": project,
            "definition": versions[0],
            "attributes": attributes or {},
        },
    )
    assert reply.status == 201, reply.raw
    document: dict[str, Any] = reply.json
    for later in versions[1:]:
        added = await client.post(
            f"/v1/characters/{document['id']}/versions", {"definition": later}
        )
        assert added.status == 201, added.raw
    if len(versions) > 1:
        document = (await client.get(f"/v1/characters/{document['id']}")).json
    return document


def shot(project: str, characters: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "project": project,
        "episode": "ep01",
        "scene": "hangar",
        "shot": "shot-001",
        "characters": characters,
        "prompt": "standing in a hangar",
        "template": "model-free",
        **overrides,
    }


@dataclasses.dataclass(frozen=True)
class Published:
    job_id: uuid.UUID
    correlation_id: str


async def publish_body(
    settings: Settings,
    body: bytes,
    *,
    correlation_id: str,
    routing_key: str = "job.submitted.x",
    headers: dict[str, Any] | None = None,
    content_type: str | None = None,
    channel: aio_pika.abc.AbstractChannel | None = None,
) -> None:
    """Publish raw bytes as a ``job.submitted`` (persistent, confirmed)."""
    message = aio_pika.Message(
        body,
        headers=headers or {"event_type": "job.submitted"},
        content_type=content_type,
        correlation_id=correlation_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    if channel is not None:
        exchange = await channel.get_exchange(settings.exchange)
        await exchange.publish(message, routing_key=routing_key)
        return
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        await exchange.publish(message, routing_key=routing_key)


def envelope(body: Any, *, job_id: uuid.UUID, correlation_id: str) -> Any:
    """``body`` with the event envelope a ``job.submitted`` carries (dicts only)."""
    if not isinstance(body, dict):
        return body
    return {
        "event_type": "job.submitted",
        "job_id": str(job_id),
        "correlation_id": correlation_id,
        "producer": "external",
        **body,
    }


async def publish_shot(settings: Settings, body: Any) -> Published:
    """Publish a ``job.submitted`` whose body may be invalid (unlike ``publish_submission``)."""
    sent = Published(uuid.uuid4(), uuid.uuid4().hex)
    await publish_body(
        settings,
        json.dumps(envelope(body, job_id=sent.job_id, correlation_id=sent.correlation_id)).encode(),
        correlation_id=sent.correlation_id,
        headers={"job_id": str(sent.job_id), "event_type": "job.submitted"},
    )
    return sent
