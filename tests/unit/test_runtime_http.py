"""Every service's own routes: /readyz names what is down without leaking why; /metrics
takes an optional bearer token; /healthz stays open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.runtime import ServiceRuntime
from shared.settings import Settings


async def _down() -> str | None:
    raise ConnectionRefusedError(
        "connection to server at 'db.internal' (10.0.0.7), user 'anime_admin' refused"
    )


async def _up() -> str | None:
    return None


def _runtime(**settings: object) -> ServiceRuntime:
    runtime = ServiceRuntime("ingest", Settings(**settings), http_port=0)  # type: ignore[arg-type]
    runtime.readiness_checks = {"broker": _up, "database": _up}
    return runtime


@pytest_asyncio.fixture
async def open_service() -> AsyncIterator[
    tuple[ServiceRuntime, TestClient[web.Request, web.Application]]
]:
    runtime = _runtime()
    async with TestClient(TestServer(runtime.http)) as client:
        yield runtime, client


async def test_readyz_names_the_dependency_that_is_down_without_its_error_text(
    open_service: tuple[ServiceRuntime, TestClient[web.Request, web.Application]],
) -> None:
    runtime, client = open_service
    assert (await client.get("/readyz")).status == 200
    runtime.readiness_checks["database"] = _down
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["problems"] == {"database": "database unavailable"}
    text = await response.text()
    assert "db.internal" not in text and "anime_admin" not in text and "10.0.0.7" not in text


async def test_healthz_and_metrics_are_open_without_a_metrics_token(
    open_service: tuple[ServiceRuntime, TestClient[web.Request, web.Application]],
) -> None:
    _, client = open_service
    assert (await client.get("/healthz")).status == 200
    metrics = await client.get("/metrics")
    assert metrics.status == 200
    assert "anime_messages_consumed_total" in await metrics.text()


async def test_a_metrics_token_is_required_once_set_and_healthz_stays_open() -> None:
    runtime = _runtime(metrics_token="scrape-me")
    async with TestClient(TestServer(runtime.http)) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "scrape-me"}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status == 401
            problem = (await refused.json())["errors"][0]
            assert problem["code"] == "unauthorized" and "Bearer" in problem["message"]
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert allowed.status == 200
        assert "anime_messages_consumed_total" in await allowed.text()
        assert (await client.get("/healthz")).status == 200
