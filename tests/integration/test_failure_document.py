"""Issue 12, item 2: a failure is a document (reason + structured problems) that reaches
every place a user reads it: the HTTP job document, ``anime jobs show/list``,
``anime dlq list`` (whole words) and the job stream's ``job.failed`` frame."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cli.watching import JobProgress, follow_jobs
from shared.settings import Settings
from tests.integration.test_cli_dlq import as_json, cli
from tests.integration.test_renderer_reliability import final, shot
from tests.support.amqp import publish_submission
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

MISSING = "sd15-anime.safetensors"


def _is_the_missing_checkpoint(problem: dict[str, Any]) -> bool:
    return (
        problem.get("node") is not None
        and problem.get("node_class") == "CheckpointLoaderSimple"
        and problem.get("input") == "ckpt_name"
        and problem.get("value") == MISSING
        and problem.get("allowed") == []
        and problem.get("allowed_total") == 0
        and bool(problem.get("hint"))
    )


@pytest.fixture
def settings(pipeline_settings: Settings, seeded: Path) -> Settings:
    return pipeline_settings.model_copy(update={"reference_root": seeded})


async def test_a_missing_checkpoint_reaches_every_place_a_user_reads_a_failure(
    settings: Settings, records: Records, tmp_path: Path
) -> None:
    async with pipeline_processes(settings, tmp_path) as pipeline:
        ops = pipeline.settings
        job = await publish_submission(
            ops, shot(template="txt2img", params={"checkpoint": MISSING})
        )
        assert await final(records, job.job_id) == "failed"

        # The HTTP job document carries the failure document
        url = f"http://127.0.0.1:{ops.ingest_port}/v1/jobs/{job.job_id}"
        headers = {"Authorization": f"Bearer {ops.api_key}"} if ops.api_key else {}
        async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            document = await reply.json()
        assert document["problems"] == []  # those are a rejection's
        failure = document["failure"]
        assert "does not fit backend" in failure["reason"]
        assert failure["error_kind"] == "validation"
        assert any(_is_the_missing_checkpoint(p) for p in failure["problems"]), failure
        assert any(MISSING in line for line in failure["details"])

        # anime jobs show: the reason and each problem, the value whole
        shown = await cli(ops, "jobs", "show", str(job.job_id))
        assert shown.exit_code == 0, (shown.stdout, shown.stderr)
        assert "CheckpointLoaderSimple" in shown.stdout and "ckpt_name" in shown.stdout
        assert f"'{MISSING}'" in shown.stdout
        assert "hint:" in shown.stdout
        as_doc = as_json(await cli(ops, "jobs", "show", str(job.job_id), "--json"))
        assert any(_is_the_missing_checkpoint(p) for p in as_doc["failure"]["problems"])

        # anime jobs list: the reason column holds the problems too
        listed = await cli(ops, "jobs", "list", "--state", "failed", "--json")
        (row,) = [r for r in as_json(listed) if r["job_id"] == str(job.job_id)]
        assert any(_is_the_missing_checkpoint(p) for p in row["problems"])

        # anime dlq list: the whole reason, wrapped at word boundaries
        letters = await eventually(
            lambda: _letters_of(ops, job.job_id), what="the dead letter of the failed job"
        )
        assert MISSING in letters[0]["reason"]
        table = await cli(ops, "dlq", "list")
        assert table.exit_code == 0, (table.stdout, table.stderr)
        assert f"'{MISSING}'" in table.stdout
        assert "CheckpointLoaderSimple" in table.stdout and "ckpt_name:" in table.stdout
        assert "installed on it?)" in table.stdout  # the end of the line, not cut

        # The job stream's job.failed frame carries the same document
        frames: list[dict[str, Any]] = []

        def keep(_: JobProgress, frame: dict[str, Any]) -> None:
            frames.append(frame)

        watched = await follow_jobs(ops, [job.job_id], keep, timeout=30)
        assert watched[job.job_id].state == "failed"
        (failed,) = [f for f in frames if f.get("event_type") == "job.failed"]
        assert any(_is_the_missing_checkpoint(p) for p in failed["event"]["problems"])
        assert any(_is_the_missing_checkpoint(p) for p in watched[job.job_id].problems)

        # And so does the job's server-sent event stream
        sse = await _sse_failed_frame(ops, job.job_id)
        assert any(_is_the_missing_checkpoint(p) for p in sse["event"]["problems"])


async def _letters_of(settings: Settings, job_id: uuid.UUID) -> list[dict[str, Any]] | None:
    listed = as_json(await cli(settings, "dlq", "list", "--json"))
    mine = [d for d in listed["dead_letters"] if d["job_id"] == str(job_id)]
    return mine or None


async def _sse_failed_frame(settings: Settings, job_id: uuid.UUID) -> dict[str, Any]:
    """The ``job.failed`` frame of ``GET /v1/jobs/{id}/events`` (the ledger replays it)."""
    url = f"http://127.0.0.1:{settings.notifier_port}/v1/jobs/{job_id}/events?since=0"
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as client,
        client.get(url, headers=headers) as reply,
    ):
        assert reply.status == 200, await reply.text()
        async for raw in reply.content:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            frame: dict[str, Any] = json.loads(line[5:])
            if frame.get("event_type") == "job.failed":
                return frame
    raise AssertionError("the event stream ended without job.failed")
