"""``anime submit/watch/jobs/projects/queues/dlq`` against the running pipeline (services as
OS processes, a ComfyUI simulator whose first prompt fails validation)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from shared.auth import create_key
from shared.settings import Settings
from shared.topology import Topology
from tests.integration.test_cli_dlq import as_json, cli
from tests.support.amqp import publish_submission
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def shot(name: str) -> dict[str, object]:
    return {
        "request_id": f"cli-{name}-{uuid.uuid4().hex[:8]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "rooftop-dusk",
        "shot": name,
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
    }


async def test_operating_the_pipeline_from_the_command_line(
    pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(
        update={"reference_root": seeded, "require_api_keys": True}
    )
    key, _ = await create_key(records.sessions, name="cli-test", scopes=["admin"])
    reader, _ = await create_key(records.sessions, name="cli-reader", scopes=["submit"])
    failing_file = tmp_path / "failing.yaml"
    failing_file.write_text(yaml.safe_dump(shot("shot-001")))
    shots_file = tmp_path / "shots.json"
    shots_file.write_text(yaml.safe_dump({"jobs": [shot("shot-002"), shot("shot-003")]}))

    async with pipeline_processes(
        settings, tmp_path, sim_args=["--fault", "validation_error:count=1"]
    ) as pipeline:
        ops = pipeline.settings.model_copy(update={"api_key": key})

        # A job the backend refuses: --watch ends with exit 1 and the reason
        failed = await cli(ops, "submit", str(failing_file), "--watch", "--json")
        assert failed.exit_code == 1, (failed.stdout, failed.stderr)
        (failed_job,) = json.loads(failed.stdout)["jobs"]
        assert failed_job["state"] == "failed" and failed_job["reason"]

        # Two good shots from one file: progress bars, then the archived files, exit 0
        watched = await cli(ops, "submit", str(shots_file), "--watch")
        assert watched.exit_code == 0, (watched.stdout, watched.stderr)
        archived = [
            line.split("archived:", 1)[1].strip()
            for line in watched.stdout.splitlines()
            if "archived:" in line
        ]
        assert len(archived) == 2 and all(Path(p).is_file() for p in archived)
        assert "completed" in watched.stdout

        ours = {
            line.split("submitted job ", 1)[1].split()[0]
            for line in watched.stdout.splitlines()
            if "submitted job " in line
        }
        assert len(ours) == 2

        # jobs list: newest first, filtered by state; JSON for scripts (the database is
        # shared by the test run, so look at this test's jobs only)
        listed = as_json(await cli(ops, "jobs", "list", "--json", "--project", "neon-skies"))
        states = {row["job_id"]: row["state"] for row in listed}
        assert states[failed_job["job_id"]] == "failed"
        assert {states[j] for j in ours} == {"completed"}
        completed = as_json(
            await cli(ops, "jobs", "list", "--state", "completed", "--json", "--limit", "1000")
        )
        assert {r["state"] for r in completed} == {"completed"}
        assert ours <= {r["job_id"] for r in completed}
        assert failed_job["job_id"] not in {r["job_id"] for r in completed}
        job_id = sorted(ours)[0]

        # jobs show: the whole story and the files
        shown = as_json(await cli(ops, "jobs", "show", job_id, "--json"))
        assert shown["state"] == "completed"
        assert shown["events"][0]["event_type"] == "job.accepted"
        assert shown["events"][-1]["event_type"] == "job.archived"
        assert Path(shown["assets"][0]["path"]).is_file()
        assert shown["character_versions"][0]["name"] == "Kai Nakamura"
        human = await cli(ops, "jobs", "show", job_id)
        assert human.exit_code == 0 and "job.archived" in human.stdout
        assert (await cli(ops, "jobs", "show", str(uuid.uuid4()))).exit_code == 1

        # watch a finished job: its history is replayed, exit 0 (completed) / 1 (failed)
        again = as_json(await cli(ops, "watch", job_id, "--json"))
        assert again["jobs"][0]["state"] == "completed" and again["jobs"][0]["assets"]
        assert (await cli(ops, "watch", failed_job["job_id"], "--json")).exit_code == 1

        # projects: counts per outcome
        projects = {p["slug"]: p for p in as_json(await cli(ops, "projects", "--json"))}
        assert projects["neon-skies"]["completed"] >= 2
        assert projects["neon-skies"]["failed"] >= 1

        # The failed job waits in the renderer's DLQ; the queue check says so (exit 1)
        letters = as_json(await cli(ops, "dlq", "list", "--json"))["dead_letters"]
        assert failed_job["job_id"] in {d["job_id"] for d in letters}
        check = await cli(ops, "queues", "--check", "--json", "--amqp")
        assert check.exit_code == 1
        topology = Topology.from_settings(ops)
        dlq = topology.dlq_name(topology.pipeline_specs(ops)["renderer.accepted"].name)
        assert any(dlq in p for p in json.loads(check.stdout)["problems"])

        # Replaying it redrives the job (job.redriven, fresh attempts): it completes now
        replayed = as_json(await cli(ops, "dlq", "replay", "--job", failed_job["job_id"], "--json"))
        assert [d["job_id"] for d in replayed["replayed"]] == [failed_job["job_id"]]

        async def redriven_and_completed() -> bool:
            return await records.state(uuid.UUID(failed_job["job_id"])) == "completed"

        await eventually(redriven_and_completed, timeout=30, what="the replayed job completed")
        kinds = await records.event_types(uuid.UUID(failed_job["job_id"]))
        assert kinds.index("job.failed") < kinds.index("job.redriven") < kinds.index("job.archived")
        assert as_json(await cli(ops, "dlq", "list", "--json"))["dead_letters"] == []

        # cancel: refused for a job that has ended …
        refused = await cli(ops, "jobs", "cancel", job_id)
        assert refused.exit_code == 1 and "already ended" in refused.stderr
        # … published for one that waits (the renderer is stopped, so it stays accepted)
        await pipeline.stop("renderer")
        waiting = await publish_submission(ops, shot("shot-004"))
        await eventually(lambda: records.state(waiting.job_id), timeout=20, what="the job accepted")
        cancelled = as_json(await cli(ops, "jobs", "cancel", str(waiting.job_id), "--json"))
        assert cancelled["job_id"] == str(waiting.job_id)

        async def cancel_recorded() -> bool:
            return "job.cancel_requested" in await records.event_types(waiting.job_id)

        await eventually(cancel_recorded, timeout=20, what="job.cancel_requested in the ledger")

        # Keys: none → exit 4; a key without the read scope → exit 4
        for api_key in ("", reader):
            refused = await cli(ops, "watch", job_id, env={"ANIME_API_KEY": api_key})
            assert refused.exit_code == 4, (refused.stdout, refused.stderr)
            assert "API key" in refused.stderr and "Traceback" not in refused.stderr

        # The notifier is down: exit 3
        await pipeline.stop("notifier")
        down = await cli(ops, "watch", job_id)
        assert down.exit_code == 3 and "Traceback" not in down.stderr


async def test_usage_errors_exit_2(pipeline_settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    result = await cli(pipeline_settings, "submit", str(bad))
    assert result.exit_code == 2 and "must hold a request" in result.stderr
    result = await cli(pipeline_settings, "submit")
    assert result.exit_code == 2 and "character" in result.stderr
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"project": "Not A Slug", "characters": []}')
    result = await cli(pipeline_settings, "submit", str(invalid))
    assert result.exit_code == 2 and "invalid request" in result.stderr
    assert (await cli(pipeline_settings, "jobs", "show", "not-a-uuid")).exit_code == 2
    assert (await cli(pipeline_settings, "run", "painter")).exit_code == 2
