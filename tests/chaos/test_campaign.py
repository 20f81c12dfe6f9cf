"""The fault campaign: one fault at a time under continuous load, then all together.

Each test is one phase on the same running pipeline (its own RabbitMQ node and
PostgreSQL cluster): jobs are submitted at a steady rate while the fault is injected;
then every job of the phase must end in exactly one terminal state, the one its
submission calls for (valid → completed, invalid → rejected, cancelled → cancelled or
completed, failed only for an injected permanent failure), none lost, none rendered
twice in one attempt (the simulators' own record) or in two attempts, none archived
twice, the dead-letter queues must hold exactly the jobs that failed for
good, and the watchers must have seen every event of every job without a gap
(:func:`tests.support.chaos_checks.audit`). The table of all phases is printed at the
end of the run. Phases run in file order; the last test checks the campaign as a whole.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.chaos_campaign import Campaign
from tests.support.chaos_checks import CAMPAIGN, PhaseReport

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.chaos]

RENDERING = "SELECT count(*) FROM job_states WHERE state = 'rendering'"
ARCHIVING = "SELECT count(*) FROM job_states WHERE state = 'rendered'"
JUDGING = "SELECT count(*) FROM jobs WHERE request_id LIKE 'chaos-ingest-kill-%'"


def verdict(report: PhaseReport) -> None:
    assert report.lost == 0, report.problems
    assert report.duplicated == 0, report.problems
    assert report.wrong_outcomes == 0, report.problems
    assert report.watcher_gaps == 0 and report.watcher_repeats == 0, report.problems
    assert not report.problems, "\n".join(report.problems)


async def test_renderer_sigkilled_mid_render(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        for _ in range(2):
            await asyncio.sleep(1.5)
            await c.kill("renderer", faults, pause=1.0, when=RENDERING)

    verdict(await campaign.phase("renderer-kill", fault))


async def test_archiver_sigkilled_mid_write(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        for _ in range(2):
            await asyncio.sleep(1.5)
            await c.kill("archiver", faults, pause=1.0, when=ARCHIVING)

    verdict(await campaign.phase("archiver-kill", fault))


async def test_ingest_sigkilled_mid_batch(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        # A batch of 60 arrives at once; ingest dies once it has judged a few of them.
        await c.until(JUDGING, timeout=15)
        await c.kill("ingest", faults, pause=1.0)

    verdict(await campaign.phase("ingest-kill", fault, batch=60))


async def test_notifier_sigkilled_with_watchers_attached(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(2.0)
        assert c.jobs_watcher is not None
        watchers = (c.project_watcher, c.jobs_watcher)
        before = [w.reconnects for w in watchers]
        await c.kill("notifier", faults, pause=1.5)
        for _ in range(100):
            if all(w.reconnects > b for w, b in zip(watchers, before, strict=True)):
                break
            await asyncio.sleep(0.1)
        assert all(w.reconnects > b for w, b in zip(watchers, before, strict=True)), (
            "a watcher never reconnected after the notifier restart"
        )
        faults.append("watchers reconnected and resumed with since")

    report = await campaign.phase("notifier-kill", fault)
    verdict(report)


async def test_rabbitmq_stopped_and_restarted(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(2.0)
        await c.rabbit.stop_app()
        faults.append("rabbitmqctl stop_app")
        await asyncio.sleep(3.0)
        await c.rabbit.start_app()
        faults.append("rabbitmqctl start_app")

    verdict(await campaign.phase("rabbitmq-restart", fault))


async def test_postgresql_restarted(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(2.0)
        await c.postgres.stop("fast")
        faults.append("pg_ctl stop -m fast")
        await asyncio.sleep(2.0)
        await c.postgres.start()
        await c.db.expire_connections()
        faults.append("pg_ctl start")

    verdict(await campaign.phase("postgresql-restart", fault))


async def test_backend_refuses_connections_and_drops_sockets(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(1.5)
        await c.sim(0, "/_sim/refuse", {"seconds": 2.0}, faults, "refused connections 2 s")
        await c.sim(1, "/_sim/faults", {"type": "ws_drop", "count": 3}, faults, "3 dropped sockets")

    verdict(await campaign.phase("backend-refuse-drop", fault))


async def test_backend_answers_500_and_runs_out_of_memory(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(1.0)
        await c.sim(0, "/_sim/faults", {"type": "http_500", "count": 4}, faults, "4 x HTTP 500")
        await c.sim(1, "/_sim/faults", {"type": "oom", "count": 3}, faults, "3 x out of memory")

    verdict(await campaign.phase("backend-500-oom", fault))


async def test_backend_validation_errors_fail_for_good(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(1.0)
        await c.sim(
            0,
            "/_sim/faults",
            {"type": "validation_error", "count": 3},
            faults,
            "3 x validation error",
        )

    report = await campaign.phase("backend-validation", fault)
    verdict(report)
    # Permanent failures are not retried: each is a job that failed for good.
    assert report.outcomes["failed"] >= 1, report


async def test_backend_restart_forgets_its_queue(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        for index in (0, 1):
            await asyncio.sleep(2.0)
            await c.sim(
                index, "/_sim/restart", {"down_seconds": 1.0}, faults, "restart (queue lost)"
            )

    verdict(await campaign.phase("backend-restart", fault))


async def test_everything_at_once(campaign: Campaign) -> None:
    async def fault(c: Campaign, faults: list[str]) -> None:
        await asyncio.sleep(1.0)
        await c.sim(0, "/_sim/faults", {"type": "http_500", "count": 3}, faults, "3 x HTTP 500")
        await c.sim(
            1,
            "/_sim/faults",
            {"type": "validation_error", "count": 2},
            faults,
            "2 x validation error",
        )
        await c.until(RENDERING)
        await asyncio.gather(c.pipeline.kill("renderer"), c.pipeline.kill("archiver"))
        faults += ["SIGKILL renderer", "SIGKILL archiver"]
        await c.sim(1, "/_sim/restart", {"down_seconds": 1.0}, faults, "restart (queue lost)")
        await c.postgres.restart("fast")
        await c.db.expire_connections()
        faults.append("pg_ctl restart -m fast")
        await asyncio.gather(c.pipeline.start("renderer"), c.pipeline.start("archiver"))
        await c.pipeline.kill("ingest")
        await c.pipeline.kill("notifier")
        faults += ["SIGKILL ingest", "SIGKILL notifier"]
        await c.rabbit.stop_app()
        faults.append("rabbitmqctl stop_app")
        await asyncio.sleep(2.0)
        await c.rabbit.start_app()
        faults.append("rabbitmqctl start_app")
        await asyncio.gather(c.pipeline.start("ingest"), c.pipeline.start("notifier"))
        await c.sim(0, "/_sim/faults", {"type": "oom", "count": 2}, faults, "2 x out of memory")

    verdict(await campaign.phase("all-together", fault, seconds=10.0))


async def test_campaign_as_a_whole(campaign: Campaign) -> None:
    jobs = sum(r.jobs for r in CAMPAIGN)
    assert jobs >= 500, f"only {jobs} jobs under load across the campaign"
    assert sum(r.lost for r in CAMPAIGN) == 0
    assert sum(r.duplicated for r in CAMPAIGN) == 0
    assert sum(r.wrong_outcomes for r in CAMPAIGN) == 0
    # Every completed job was rendered by a backend (counted from their own record).
    assert sum(r.renders for r in CAMPAIGN) >= sum(r.outcomes["completed"] for r in CAMPAIGN)
    # Nothing in the asset root that no asset row accounts for (no second copy, no
    # orphan, no temp file left by a killed archiver).
    assert await campaign.leftovers() == []
    assert not await campaign.services_alive()
