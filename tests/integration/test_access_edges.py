"""Access edges: ``?api_key=`` only where a browser cannot send a header, resume points
out of range refused before the database, and project-limited keys on dead letters."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest
from faststream.rabbit import RabbitBroker

from services.notifier.main import build as build_notifier
from shared.auth import create_key
from shared.messaging import park_message
from shared.settings import Settings
from shared.topology import Topology
from tests.integration.test_cli_dlq import declare, wait_depth
from tests.support.amqp import drain
from tests.support.archive_jobs import insert_job, spec_for
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.watchers import auth, notifier_url

pytestmark = pytest.mark.integration


async def test_a_query_key_opens_websockets_and_event_streams_and_nothing_else(
    pipeline_settings: Settings, records: Records
) -> None:
    settings = pipeline_settings.model_copy(update={"require_api_keys": True})
    key, _ = await create_key(records.sessions, name="browser", scopes=["read"])
    job_id = await insert_job(records.sessions, spec_for(project="mine"))
    async with running(build_notifier(settings).app), aiohttp.ClientSession() as client:
        # The WebSocket and the event streams take ?api_key= (EventSource cannot set headers)
        ws = await client.ws_connect(notifier_url(settings, f"/v1/ws?api_key={key}"))
        await ws.send_json({"action": "subscribe", "job_id": str(job_id)})
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
        await ws.close()
        for path in (f"/v1/jobs/{job_id}/events", "/v1/projects/mine/events"):
            async with client.get(notifier_url(settings, f"{path}?api_key={key}")) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")

        # Everywhere else it is refused, even next to a valid header, with a pointer
        for path in (
            "/v1/projects/mine/assets",
            f"/v1/assets/{uuid.uuid4()}",
            "/v1/dashboard/summary",
            "/v1/admin/dlq",
        ):
            for headers in ({}, auth(key)):
                async with client.get(
                    notifier_url(settings, path), params={"api_key": key}, headers=headers
                ) as r:
                    assert r.status == 401, path
                    problem = (await r.json())["errors"][0]
                    assert problem["field"] == "api_key" and problem["code"] == "unauthorized"
                    assert "Authorization: Bearer" in problem["message"]
        async with client.get(
            notifier_url(settings, "/v1/projects/mine/assets"), headers=auth(key)
        ) as r:
            assert r.status == 200


async def test_resume_points_out_of_range_are_refused_before_the_database(
    pipeline_settings: Settings, records: Records
) -> None:
    settings = pipeline_settings
    job_id = await insert_job(records.sessions, spec_for(project="mine"))
    job_url = notifier_url(settings, f"/v1/jobs/{job_id}/events")
    project_url = notifier_url(settings, "/v1/projects/mine/events")
    async with running(build_notifier(settings).app), aiohttp.ClientSession() as client:
        # SSE: a seq is an int4, a cursor a bigint; minus signs, other digits, no
        refusals: list[tuple[str, str]] = [
            (job_url, str(2**31)),
            (job_url, str(2**63)),
            (job_url, "-1"),
            (job_url, "\u00b2"),  # "²".isdigit() is True
            (project_url, str(2**63)),
            (project_url, "9" * 40),
            (project_url, "-5"),
        ]
        for url, last in refusals:
            for how in ("header", "query"):
                headers = {"Last-Event-ID": last} if how == "header" else {}
                params = {"last_event_id": last} if how == "query" else {}
                async with client.get(url, headers=headers, params=params) as r:
                    assert r.status == 400, (url, last, how)
                    problem = (await r.json())["errors"][0]
                    assert problem["field"] == "Last-Event-ID"
        # The largest values are fine (nothing after them yet)
        for url, last in ((job_url, str(2**31 - 1)), (project_url, str(2**63 - 1))):
            async with client.get(url, headers={"Last-Event-ID": last}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")

        # WebSocket: an error frame, and the socket stays usable
        ws = await client.ws_connect(notifier_url(settings, "/v1/ws"))
        bad: list[dict[str, Any]] = [
            {"job_id": str(job_id), "since": 2**31},
            {"job_id": str(job_id), "since": -1},
            {"project": "mine", "since": 2**63},
            {"project": "mine", "since": True},
            {"project": "mine", "since": "12"},
        ]
        for fields in bad:
            await ws.send_str(json.dumps({"action": "subscribe", **fields}))
            frame = await ws.receive_json(timeout=10)
            assert frame["type"] == "error", fields
            assert any(e["field"] in ("since", "frame") for e in frame["errors"]), frame
        await ws.send_json({"action": "subscribe", "project": "mine", "since": 2**63 - 1})
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
        await ws.close()


async def _park(settings: Settings, job_id: uuid.UUID, project: str | None) -> None:
    topology = Topology.from_settings(settings)
    spec = topology.pipeline_specs(settings)["renderer.accepted"]
    body: dict[str, Any] = {"event_type": "job.accepted", "job_id": str(job_id)}
    if project is not None:
        body["project"] = project
    broker = RabbitBroker(settings.amqp_url, logger=None)
    async with broker:
        await broker.connect()
        await park_message(
            broker,
            spec,
            body=json.dumps(body).encode(),
            headers={"job_id": str(job_id), "event_type": "job.accepted", "x-attempt": 1},
            correlation_id=f"corr-{job_id.hex[:8]}",
            reason="validation: unknown checkpoint",
            service="renderer",
        )


async def test_a_project_limited_admin_key_sees_and_touches_only_its_projects_dead_letters(
    pipeline_settings: Settings, records: Records
) -> None:
    settings = pipeline_settings.model_copy(update={"require_api_keys": True})
    topology = await declare(settings)
    spec = topology.pipeline_specs(settings)["renderer.accepted"]
    dlq = Topology.dlq_name(spec.name)
    limited, _ = await create_key(
        records.sessions, name="mine-admin", scopes=["admin"], projects=["mine"]
    )
    admin, _ = await create_key(records.sessions, name="admin", scopes=["admin"])
    mine, theirs, nobodys = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _park(settings, mine, "mine")
    await _park(settings, theirs, "theirs")
    await _park(settings, nobodys, None)
    await wait_depth(settings, dlq, 3)

    notifier = build_notifier(settings)
    async with running(notifier.app), aiohttp.ClientSession() as client:

        async def call(method: str, path: str, key: str, **kw: Any) -> tuple[int, Any]:
            async with client.request(
                method, notifier_url(settings, path), headers=auth(key), **kw
            ) as r:
                return r.status, await r.json()

        # Listing: the limited key sees its project's letter only; the full key all three
        status, listed = await call("GET", "/v1/admin/dlq?full=1", limited)
        assert status == 200
        assert [(d["job_id"], d["project"]) for d in listed["dead_letters"]] == [
            (str(mine), "mine")
        ]
        status, everything = await call("GET", "/v1/admin/dlq", admin)
        assert {d["job_id"] for d in everything["dead_letters"]} == {
            str(mine),
            str(theirs),
            str(nobodys),
        }
        ids = {d["job_id"]: d["id"] for d in everything["dead_letters"]}

        # Naming another project's letter (by id or job) is refused and moves nothing
        for selection in ({"ids": [ids[str(theirs)]]}, {"job": str(nobodys)}):
            for route in ("/v1/admin/dlq/replay", "/v1/admin/dlq/purge"):
                status, problem = await call("POST", route, limited, json=selection)
                assert status == 403, (route, selection)
                assert problem["errors"][0]["field"] == "selection"
        await wait_depth(settings, dlq, 3)
        # Mixed with its own: still refused as a whole
        status, _ = await call(
            "POST",
            "/v1/admin/dlq/replay",
            limited,
            json={"ids": [ids[str(mine)], ids[str(theirs)]]},
        )
        assert status == 403
        await wait_depth(settings, dlq, 3)

        # "all" from the limited key sweeps only its own project
        status, result = await call("POST", "/v1/admin/dlq/replay", limited, json={"all": True})
        assert status == 200, result
        assert [d["job_id"] for d in result["replayed"]] == [str(mine)] and result["kept"] == 2
        ((_, headers),) = await drain(settings, spec.name)
        assert headers["job_id"] == str(mine)
        status, purged = await call("POST", "/v1/admin/dlq/purge", limited, json={"all": True})
        assert status == 200 and purged["purged"] == [] and purged["kept"] == 2
        await wait_depth(settings, dlq, 2)

        # Queue figures count every project: only for keys not limited to projects
        status, problem = await call("GET", "/v1/admin/queues", limited)
        assert status == 403 and problem["errors"][0]["field"] == "api_key"
        assert (await call("GET", "/v1/admin/queues", admin))[0] == 200
        status, summary = await call("GET", "/v1/dashboard/summary", limited)
        assert status == 200 and summary["queues"]["queues"] == []
        assert summary["dead_letters"]["items"] == []
        status, summary = await call("GET", "/v1/dashboard/summary", admin)
        assert {d["job_id"] for d in summary["dead_letters"]["items"]} == {
            str(theirs),
            str(nobodys),
        }
