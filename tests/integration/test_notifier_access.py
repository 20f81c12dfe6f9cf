"""Watching needs a key with the ``read`` scope, and a key limited to projects sees only those."""

from __future__ import annotations

import aiohttp
import pytest

from services.archiver.main import create_app as archiver_app
from services.notifier.main import build as build_notifier
from shared.auth import create_key
from shared.settings import Settings
from tests.support.archive_jobs import accepted, insert_job, progress, publisher, spec_for, started
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.watchers import auth, connect, notifier_url, sse

pytestmark = pytest.mark.integration


async def test_watchers_need_a_read_key_and_see_only_their_projects(
    pipeline_settings: Settings, records: Records
) -> None:
    settings = pipeline_settings.model_copy(update={"require_api_keys": True})
    limited, _ = await create_key(records.sessions, name="mine", scopes=["read"], projects=["mine"])
    submit_only, _ = await create_key(records.sessions, name="submitter", scopes=["submit"])
    mine, other = spec_for(project="mine"), spec_for(project="other")
    mine_id = await insert_job(records.sessions, mine)
    other_id = await insert_job(records.sessions, other)
    async with (
        running(archiver_app(settings)),
        running(build_notifier(settings).app),
        publisher(settings) as bus,
        aiohttp.ClientSession() as client,
    ):
        # No key: 401; a key without the read scope: 403 (WebSocket and SSE alike)
        for key, status in ((None, 401), (submit_only, 403)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await connect(client, settings, key=key)
            assert refused.value.status == status
            with pytest.raises(PermissionError) as denied:
                await anext(
                    sse(client, notifier_url(settings, "/v1/projects/mine/events"), key=key)
                )
            assert denied.value.args[0] == status

        # A key limited to "mine" may not watch "other", by project or by job
        watcher = await connect(client, settings, key=limited)
        refusal = await watcher.subscribe(project="other")
        assert refusal["type"] == "error" and refusal["errors"][0]["field"] == "project"
        refusal = await watcher.subscribe(job_id=str(other_id))
        assert refusal["type"] == "error" and refusal["errors"][0]["field"] == "job_id"
        for path, status in (
            ("/v1/projects/other/events", 403),
            (f"/v1/jobs/{other_id}/events", 404),
        ):
            async with client.get(notifier_url(settings, path), headers=auth(limited)) as r:
                assert r.status == status

        # And a pattern over every project delivers only what the key may see
        assert (await watcher.subscribe(events="job.#"))["type"] == "subscribed"
        await bus.publish_all([accepted(other_id, other), started(other_id, "other")])
        await bus.publish_all([accepted(mine_id, mine), progress(mine_id, "mine", 1)])
        await bus.publish(started(mine_id, "mine"))
        frames = await watcher.events_until(lambda f: f["project"] == "mine" and f["seq"] == 3)
        await watcher.close()
    assert {f["project"] for f in frames} == {"mine"}
