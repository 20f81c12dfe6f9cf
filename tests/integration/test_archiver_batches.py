"""The ledger records in batches, with two archivers at once, gap-free and once.

And it believes the database, not the message: an event that names another project
than the one ingest recorded for its job is parked as forged and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy import text

from services.archiver.main import create_app as archiver_app
from services.notifier.history import LedgerReader
from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import drain
from tests.support.archive_jobs import (
    accepted,
    insert_job,
    progress,
    publisher,
    spec_for,
    started,
)
from tests.support.pipeline import free_port, running
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

PROGRESS_PER_JOB = 6


async def ledger_rows(records: Records, job_ids: list[uuid.UUID]) -> int:
    async with records.sessions() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM job_events WHERE job_id = ANY(:ids)"), {"ids": job_ids}
        )
    return int(count or 0)


async def transactions(records: Records, job_ids: list[uuid.UUID]) -> int:
    """How many transactions recorded these jobs' rows (position >> 16 is the txid)."""
    async with records.sessions() as session:
        count = await session.scalar(
            text("SELECT count(DISTINCT position >> 16) FROM job_events WHERE job_id = ANY(:ids)"),
            {"ids": job_ids},
        )
    return int(count or 0)


async def test_two_archivers_record_one_burst_of_one_project_in_batches_gap_free_and_once(
    pipeline_settings: Settings, records: Records
) -> None:
    # Given 30 jobs of one project
    spec = spec_for()
    project = spec.location.project
    job_ids = [await insert_job(records.sessions, spec) for _ in range(30)]
    events = []
    for job_id in job_ids:
        events += [accepted(job_id, spec), started(job_id, project)]
        events += [progress(job_id, project, n) for n in range(1, PROGRESS_PER_JOB + 1)]
    expected = len(events)
    # And a project stream that follows the ledger while it is written
    reader = LedgerReader(records.sessions)
    position = await reader.project_head(project)
    seen: list[tuple[uuid.UUID, int]] = []

    async def follow() -> None:
        nonlocal position
        while len(seen) < expected:
            for note in await reader.project_after(project, position, limit=7):
                assert note.cursor is not None and note.cursor > position
                position = note.cursor
                seen.append((note.entry.job_id, note.entry.seq))
            await asyncio.sleep(0.01)

    async with (
        running(archiver_app(pipeline_settings)),
        running(archiver_app(pipeline_settings.model_copy(update={"archiver_port": free_port()}))),
        publisher(pipeline_settings) as bus,
    ):
        follower = asyncio.create_task(follow())
        # When the whole burst arrives at once, every event twice (a redelivery storm)
        await bus.publish_all(events + events)

        async def all_recorded() -> bool:
            return await ledger_rows(records, job_ids) >= expected

        await eventually(all_recorded, what="burst recorded", timeout=60)
        await asyncio.wait_for(follower, timeout=60)

    # Then every job has each of its events once, numbered 1..n without a gap
    per_job = 2 + PROGRESS_PER_JOB
    for job_id in job_ids:
        rows = await records.events(job_id)
        assert [r.seq for r in rows] == list(range(1, per_job + 1))
        assert len({r.event_id for r in rows}) == per_job
        # And within a job, later entries have later positions (commit order)
        positions = [r.position for r in rows]
        assert positions == sorted(positions)
    # And the events were recorded in batches: fewer transactions than rows
    assert await transactions(records, job_ids) < expected
    # And the project stream, reading in small pages while two archivers wrote, saw
    # every entry exactly once
    assert sorted(seen) == sorted(
        (job_id, seq) for job_id in job_ids for seq in range(1, per_job + 1)
    )


async def test_an_event_naming_another_project_than_the_jobs_is_parked_as_forged(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    job_id = await insert_job(records.sessions, spec)
    dlq = Topology.from_settings(pipeline_settings).queue_name("archiver", "ledger.dlq")
    forged = progress(job_id, "other-project", 50)
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        # Given a genuine job with its first event recorded
        await bus.publish(accepted(job_id, spec))
        await eventually(lambda: records.events(job_id), what="accepted recorded")
        # When a message about it claims another project
        await bus.publish(forged)
        # Then it is parked, with the reason (the positive marker that it was seen)
        parked = await eventually(lambda: drain(pipeline_settings, dlq), what="forged event parked")
        # And a genuine event after it is recorded as the next entry
        await bus.publish(started(job_id, spec.location.project))
        await eventually(lambda: _count(records, job_id, 2), what="started recorded")

    body, headers = parked[0]
    assert json.loads(body)["project"] == "other-project"
    assert str(headers["x-park-reason"]).startswith("forged: ")
    rows = await records.events(job_id)
    assert [(r.seq, r.event_type, r.project_slug) for r in rows] == [
        (1, "job.accepted", "neon-skies"),
        (2, "job.started", "neon-skies"),
    ]


async def _count(records: Records, job_id: uuid.UUID, count: int) -> bool:
    return len(await records.events(job_id)) >= count
