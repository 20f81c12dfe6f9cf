"""The job ledger on the real broker and database: numbered once, never moving backwards."""

from __future__ import annotations

import uuid
from functools import partial

import pytest

from services.archiver.main import create_app as archiver_app
from services.archiver.states import JobStatus
from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import drain
from tests.support.archive_jobs import (
    accepted,
    archived,
    insert_job,
    progress,
    publisher,
    spec_for,
    started,
)
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

#: How far along each state is; the ledger's states must never go down this order.
RANK = {
    JobStatus.SUBMITTED: 0,
    JobStatus.ACCEPTED: 1,
    JobStatus.RENDERING: 2,
    JobStatus.RETRYING: 2,
    JobStatus.RENDERED: 3,
    JobStatus.COMPLETED: 4,
}


async def recorded(records: Records, job_id: uuid.UUID, count: int) -> bool:
    return len(await records.events(job_id)) >= count


async def test_events_arriving_out_of_order_never_move_a_job_backwards(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    job_id = await insert_job(records.sessions, spec)
    project = spec.location.project
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        # Given a job whose job.archived overtook everything else
        await bus.publish(archived(job_id, project))
        await eventually(lambda: recorded(records, job_id, 1), what="archived recorded")
        assert await records.state(job_id) == "completed"
        # When the late events arrive afterwards, one of them twice
        late_progress = progress(job_id, project, 40)
        for event in (
            started(job_id, project),
            late_progress,
            late_progress,
            accepted(job_id, spec),
        ):
            await bus.publish(event)
        await eventually(lambda: recorded(records, job_id, 4), what="late events recorded")

    # Then every distinct event is in the ledger once, numbered 1..4 without a gap
    events = await records.events(job_id)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert len({e.event_id for e in events}) == 4
    assert sorted(e.event_type for e in events[1:]) == [
        "job.accepted",
        "job.progress",
        "job.started",
    ]
    # And the job stayed completed after each of them
    assert [e.state for e in events] == ["completed"] * 4
    row = await records.state_row(job_id)
    assert row is not None
    assert (row.state, row.last_seq, row.progress) == ("completed", 4, 100.0)
    assert row.finished_at is not None


async def test_a_burst_of_events_is_numbered_without_gaps_and_states_only_advance(
    pipeline_settings: Settings, records: Records
) -> None:
    spec = spec_for()
    project = spec.location.project
    jobs = [await insert_job(records.sessions, spec) for _ in range(3)]
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        # When three jobs' events are published interleaved, as fast as possible
        for step in range(12):
            for job_id in jobs:
                if step == 0:
                    await bus.publish(accepted(job_id, spec))
                elif step == 1:
                    await bus.publish(started(job_id, project))
                elif step < 11:
                    await bus.publish(progress(job_id, project, step))
                else:
                    await bus.publish(archived(job_id, project))
        for job_id in jobs:
            await eventually(partial(recorded, records, job_id, 12), what="all recorded")

    for job_id in jobs:
        events = await records.events(job_id)
        # Then each job's ledger is 1..12 and its state never went down the lifecycle
        assert [e.seq for e in events] == list(range(1, 13))
        ranks = [RANK[JobStatus(e.state)] for e in events]
        assert ranks == sorted(ranks)
        assert await records.state(job_id) == "completed"


async def test_an_event_for_a_job_never_submitted_is_parked_with_the_reason(
    pipeline_settings: Settings,
) -> None:
    topology = Topology.from_settings(pipeline_settings)
    dlq = topology.dlq_name(topology.pipeline_specs(pipeline_settings)["archiver.ledger"].name)
    stranger = uuid.uuid4()
    async with running(archiver_app(pipeline_settings)), publisher(pipeline_settings) as bus:
        await bus.publish(started(stranger, "neon-skies"))

        async def parked() -> list[tuple[bytes, dict[str, object]]]:
            return await drain(pipeline_settings, dlq)

        messages = await eventually(parked, what="parked event")
    assert str(stranger) in str(messages[0][1]["x-park-reason"])
