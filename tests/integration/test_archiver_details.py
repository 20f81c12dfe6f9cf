"""Archive details (issue 12, item 8), on the real broker, database and disk.

Archived files are as readable as any file the process writes (not ``mkstemp``'s
0600); a final state carries only its own reason; the attempt in ``job_states`` agrees
with the events.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest

from services.archiver.main import create_app as archiver_app
from shared.events import JobCancelled, JobFailed, JobRetrying, Producer
from shared.settings import Settings
from tests.support.archive_backend import ImageBackend, make_png
from tests.support.archive_jobs import (
    accepted,
    archived,
    envelope,
    insert_job,
    publisher,
    rendered,
    spec_for,
    started,
)
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


def retrying(job_id: uuid.UUID, project: str, reason: str) -> JobRetrying:
    return JobRetrying(
        **envelope(job_id, project, Producer.RENDERER),
        attempt=1,
        next_attempt=2,
        delay_seconds=0.0,
        reason=reason,
    )


async def settled(records: Records, job_id: uuid.UUID, count: int) -> bool:
    return len(await records.events(job_id)) >= count


async def test_archived_files_are_as_readable_as_the_umask_allows(
    pipeline_settings: Settings, records: Records, tmp_path: Path
) -> None:
    # What an ordinary write by this process gets (0644 under the usual umask 022)
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    expected = stat.S_IMODE(plain.stat().st_mode)
    async with ImageBackend() as backend:
        backend.add("one.png", make_png(3))
        settings = pipeline_settings.model_copy(update={"comfyui_urls": [backend.url]})
        spec = spec_for()
        job_id = await insert_job(records.sessions, spec)
        async with running(archiver_app(settings)), publisher(settings) as bus:
            await bus.publish(rendered(job_id, spec, backend.url, ["one.png"]))
            assert await eventually(lambda: records.final_state(job_id)) == "completed"
    rows = await records.assets(job_id)
    image = settings.asset_root / rows[0].path
    # Then the image and its sidecar have that mode, not mkstemp's 0600
    for path in (image, image.with_suffix(".json")):
        assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(expected)


async def test_a_job_completed_after_a_retry_keeps_no_reason(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    project = spec.location.project
    job_id = await insert_job(records.sessions, spec)
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        # Given a job whose first attempt failed and was retried
        await bus.publish(accepted(job_id, spec))
        await bus.publish(started(job_id, project, attempt=1))
        await bus.publish(retrying(job_id, project, "backend timed out"))
        await eventually(lambda: settled(records, job_id, 3), what="retry recorded")
        row = await records.state_row(job_id)
        assert row is not None and (row.state, row.reason) == ("retrying", "backend timed out")
        # When the second attempt runs and the job is archived
        await bus.publish(started(job_id, project, attempt=2))
        await bus.publish(archived(job_id, project))
        assert await eventually(lambda: records.final_state(job_id)) == "completed"
    # Then the completed job carries no reason (the retry's stays in the ledger)
    row = await records.state_row(job_id)
    assert row is not None
    assert (row.state, row.reason, row.attempt) == ("completed", None, 2)
    events = await records.events(job_id)
    assert [e.payload.get("reason") for e in events if e.event_type == "job.retrying"] == [
        "backend timed out"
    ]


async def test_a_failure_before_any_start_shows_the_events_attempt(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    project = spec.location.project
    job_id = await insert_job(records.sessions, spec)
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        # Given an accepted job that fails validation at the renderer, attempt 1
        await bus.publish(accepted(job_id, spec))
        await bus.publish(
            JobFailed(
                **envelope(job_id, project, Producer.RENDERER),
                reason="workflow invalid: node 3 has no model",
                error_kind="validation",
                attempt=1,
            )
        )
        assert await eventually(lambda: records.final_state(job_id)) == "failed"
    # Then the state shows the attempt the event names, and the failure's reason
    row = await records.state_row(job_id)
    assert row is not None
    events = await records.events(job_id)
    assert events[-1].payload["attempt"] == row.attempt == 1
    assert row.reason == "workflow invalid: node 3 has no model"


async def test_a_cancelled_job_carries_the_cancels_reason_not_the_retrys(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    project = spec.location.project
    job_id = await insert_job(records.sessions, spec)
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        await bus.publish(accepted(job_id, spec))
        await bus.publish(started(job_id, project, attempt=1))
        await bus.publish(retrying(job_id, project, "backend timed out"))
        await eventually(lambda: settled(records, job_id, 3), what="retry recorded")
        await bus.publish(
            JobCancelled(
                **envelope(job_id, project, Producer.RENDERER),
                reason="operator stopped the shot",
                stage="queued",
            )
        )
        assert await eventually(lambda: records.final_state(job_id)) == "cancelled"
    row = await records.state_row(job_id)
    assert row is not None
    assert (row.reason, row.attempt) == ("operator stopped the shot", 1)
