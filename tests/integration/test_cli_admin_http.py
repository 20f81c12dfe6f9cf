"""The admin HTTP routes (``shared.queues.register_admin_routes``) and the dashboard's data
routes, on a service runtime of their own, with API keys enforced."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.notifier.dashboard import register_dashboard
from shared.auth import create_key
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.topology import Topology
from tests.integration.test_cli_dlq import declare, park, wait_depth
from tests.support.amqp import drain
from tests.support.pipeline import free_port, running
from tests.support.records import Records

pytestmark = pytest.mark.integration


async def test_admin_routes_list_replay_and_purge_with_an_admin_key(
    pipeline_settings: Settings, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"require_api_keys": True})
    topology = await declare(settings)
    spec = topology.pipeline_specs(settings)["renderer.accepted"]
    dlq = Topology.dlq_name(spec.name)
    admin, _ = await create_key(records.sessions, name="ops-admin", scopes=["admin"])
    reader, _ = await create_key(records.sessions, name="ops-reader", scopes=["read"])
    first, second = uuid.uuid4(), uuid.uuid4()
    await park(settings, first, "validation: unknown checkpoint", attempt=1)
    await park(settings, second, "timeout: gave up", attempt=4)
    await wait_depth(settings, dlq, 2)

    runtime = ServiceRuntime("ops", settings, http_port=free_port())
    register_dashboard(runtime)
    register_dashboard(runtime)  # idempotent
    base = f"http://127.0.0.1:{runtime.http_port}"

    async with running(runtime.app(description="ops")), aiohttp.ClientSession() as client:

        async def call(method: str, path: str, key: str | None, **kw: Any) -> tuple[int, Any]:
            headers = {"X-API-Key": key} if key else {}
            async with client.request(method, base + path, headers=headers, **kw) as response:
                body = (
                    await response.json()
                    if response.content_type == "application/json"
                    else await response.text()
                )
                return response.status, body

        # Keys: none → 401, read → 403, admin → 200
        assert (await call("GET", "/v1/admin/queues", None))[0] == 401
        assert (await call("GET", "/v1/admin/dlq", reader))[0] == 403
        status, report = await call("GET", "/v1/admin/queues", admin)
        assert status == 200 and report["source"] in ("management", "amqp")
        assert dlq in {q["name"] for q in report["queues"]}

        status, listed = await call("GET", "/v1/admin/dlq?queue=renderer", admin)
        assert status == 200 and listed["queue"] == dlq
        by_job = {d["job_id"]: d for d in listed["dead_letters"]}
        assert set(by_job) == {str(first), str(second)}

        # Replay one by id: it goes back to work, the other stays
        status, result = await call(
            "POST", "/v1/admin/dlq/replay", admin, json={"ids": [by_job[str(first)]["id"]]}
        )
        assert status == 200, result
        assert [d["job_id"] for d in result["replayed"]] == [str(first)] and result["kept"] == 1
        ((_, headers),) = await drain(settings, spec.name)
        assert "x-attempt" not in headers and headers["job_id"] == str(first)

        # Nothing selected, a bad body, an unknown queue: refused without touching anything
        assert (await call("POST", "/v1/admin/dlq/replay", admin, json={}))[0] == 422
        assert (await call("POST", "/v1/admin/dlq/replay", admin, data=b"nope"))[0] == 400
        status, _ = await call(
            "POST", "/v1/admin/dlq/purge", admin, json={"queue": "x", "all": True}
        )
        assert status == 404
        assert (await call("POST", "/v1/admin/dlq/purge", reader, json={"all": True}))[0] == 403

        status, purged = await call("POST", "/v1/admin/dlq/purge", admin, json={"all": True})
        assert status == 200 and [d["job_id"] for d in purged["purged"]] == [str(second)]
        await wait_depth(settings, dlq, 0)

        # The dashboard: the page is public, its data needs a read key
        async with client.get(base + "/") as response:
            assert response.status == 200 and "operations" in await response.text()
        async with client.get(base + "/dashboard/app.js") as response:
            assert response.status == 200
        assert (await call("GET", "/v1/dashboard/summary", None))[0] == 401
        status, summary = await call("GET", "/v1/dashboard/summary", reader)
        assert status == 200, summary
        assert {"queues", "backends", "jobs", "failed", "throughput", "dead_letters"} <= set(
            summary
        )
        assert summary["dead_letters"]["queue"] == dlq
        assert [b["url"] for b in summary["backends"]] == settings.comfyui_urls
        assert summary["backends"][0]["status"] == "down"  # nothing listens there
        status, _ = await call("GET", f"/v1/dashboard/thumbnails/{uuid.uuid4()}", reader)
        assert status == 404
