"""Issue 12, item 6 ("CLI roughness"): job id prefixes, ids never wrapped, the projects
table's counts adding up."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from shared.db.models import Job
from shared.db.session import make_engine, make_sessionmaker
from shared.settings import Settings
from tests.integration.test_cli_dlq import as_json, cli

pytestmark = pytest.mark.integration


async def add_jobs(settings: Settings, *ids: uuid.UUID, verdict: str = "accepted") -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            for job_id in ids:
                session.add(
                    Job(
                        id=job_id,
                        request_id=f"rough-{job_id.hex}",
                        request_hash=hashlib.sha256(job_id.bytes).hexdigest(),
                        correlation_id=f"corr-{job_id.hex[:8]}",
                        project_slug="neon-skies",
                        shot="shot-rough",
                        template="txt2img",
                        verdict=verdict,
                        request={},
                        submitted_via="amqp",
                    )
                )
    finally:
        await engine.dispose()


def sibling_ids(count: int) -> list[uuid.UUID]:
    """Ids sharing their first 12 hex digits (one random prefix per test run)."""
    prefix = uuid.uuid4().hex[:12]
    return [uuid.UUID(prefix + "4" + uuid.uuid4().hex[:19]) for _ in range(count)]


async def test_jobs_show_takes_a_unique_prefix_and_names_an_ambiguous_ones_candidates(
    pipeline_settings: Settings, seeded: object
) -> None:
    first, second = sibling_ids(2)
    await add_jobs(pipeline_settings, first, second)

    short = str(first)[:8]  # what `submit --watch` shows
    ambiguous = await cli(pipeline_settings, "jobs", "show", short)
    assert ambiguous.exit_code == 2, (ambiguous.stdout, ambiguous.stderr)
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    assert str(first) in ambiguous.stderr and str(second) in ambiguous.stderr

    unique = str(first)[:16]
    shown = as_json(await cli(pipeline_settings, "jobs", "show", unique, "--json"))
    assert shown["job_id"] == str(first)
    dashless = as_json(await cli(pipeline_settings, "jobs", "show", first.hex[:16], "--json"))
    assert dashless["job_id"] == str(first)

    missing = await cli(pipeline_settings, "jobs", "show", "ffffffff0000")
    assert missing.exit_code == 1 and "no job" in missing.stderr
    garbage = await cli(pipeline_settings, "jobs", "show", "not-an-id")
    assert garbage.exit_code == 2 and len(garbage.stderr.strip().splitlines()) == 1


async def test_jobs_list_prints_whole_ids_on_one_line(
    pipeline_settings: Settings, seeded: object
) -> None:
    (job_id,) = sibling_ids(1)
    await add_jobs(pipeline_settings, job_id)
    listed = await cli(pipeline_settings, "jobs", "list", "--limit", "1000", env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.stderr
    assert any(str(job_id) in line for line in listed.stdout.splitlines()), listed.stdout


async def test_projects_counts_add_up_with_rejected_and_cancelled(
    pipeline_settings: Settings, seeded: object
) -> None:
    (rejected,) = sibling_ids(1)
    await add_jobs(pipeline_settings, rejected, verdict="rejected")
    projects = {p["slug"]: p for p in as_json(await cli(pipeline_settings, "projects", "--json"))}
    neon = projects["neon-skies"]
    assert neon["rejected"] >= 1
    for p in projects.values():
        parts = ("active", "completed", "failed", "rejected", "cancelled")
        assert p["jobs"] == sum(p[k] for k in parts), p
    table = await cli(pipeline_settings, "projects", env={"COLUMNS": "120"})
    assert table.exit_code == 0 and "rejected" in table.stdout
