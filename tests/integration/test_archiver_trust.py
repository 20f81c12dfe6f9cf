"""The archiver believes the job's row, not a job.rendered: forged renders do no harm.

Each attack from the trust-boundary issue, against a genuine job in flight: a render
filed under another project, one that names a backend nobody configured (which used to
fail the genuine job), one whose spec or prompt is not the job's. Each is parked with
its reason (the positive marker that the archiver saw it), fetches nothing, writes no
file or row, publishes nothing; the genuine render afterwards is archived as usual.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.archiver.main import create_app as archiver_app
from shared.events import JobRendered
from shared.settings import Settings
from shared.topology import Topology
from shared.workflows import derive_prompt_id
from tests.support.amqp import drain
from tests.support.archive_backend import ImageBackend, make_png
from tests.support.archive_jobs import (
    accepted,
    insert_job,
    listening,
    publisher,
    rendered,
    spec_for,
)
from tests.support.pipeline import running
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


def files_of(root: Path, job_id: uuid.UUID) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and str(job_id) in p.parts)


def forgeries(genuine: JobRendered) -> dict[str, JobRendered]:
    spec = genuine.spec
    elsewhere = spec.model_copy(
        update={"location": spec.location.model_copy(update={"project": "other-project"})}
    )
    return {
        "another project": genuine.model_copy(
            update={"project": "other-project", "spec": elsewhere}
        ),
        "an unconfigured backend": genuine.model_copy(update={"backend": "http://127.0.0.1:9"}),
        "another spec": genuine.model_copy(
            update={"spec": spec.model_copy(update={"prompt": "something else"})}
        ),
        "another prompt": genuine.model_copy(
            update={"prompt_id": derive_prompt_id(uuid.uuid4(), 1)}
        ),
    }


async def test_forged_renders_of_a_genuine_job_are_parked_and_change_nothing(
    pipeline_settings: Settings, records: Records
) -> None:
    async with ImageBackend() as backend:
        backend.add("job_00001_.png", make_png(80))
        settings = pipeline_settings.model_copy(update={"comfyui_urls": [backend.url]})
        spec = spec_for()
        job_id = await insert_job(records.sessions, spec)
        genuine = rendered(job_id, spec, backend.url, ["job_00001_.png"])
        dlq = Topology.from_settings(settings).queue_name("archiver", "job.rendered.dlq")
        async with (
            running(archiver_app(settings)),
            publisher(settings) as bus,
            listening(settings, "job.failed.#") as failures,
            listening(settings, "job.archived.#") as archived,
        ):
            await bus.publish(accepted(job_id, spec))
            # When every forgery arrives before the genuine render
            forged = forgeries(genuine)
            for event in forged.values():
                await bus.publish(event)
            parked: list[tuple[bytes, dict[str, object]]] = []

            async def all_parked() -> bool:
                parked.extend(await drain(settings, dlq))
                return len(parked) >= len(forged)

            await eventually(all_parked, what="every forgery parked")
            # Then nothing was fetched, written or recorded for them
            assert backend.requests == {}
            assert files_of(settings.asset_root, job_id) == []
            assert await records.assets(job_id) == []
            assert failures.empty() and archived.empty()
            # And the genuine render, arriving last, is archived under the job's project
            await bus.publish(genuine)
            state = await eventually(lambda: records.final_state(job_id), what="final state")

        assert state == "completed"
        assert failures.empty()
        reasons = sorted(str(headers["x-park-reason"]) for _, headers in parked)
        assert all(r.startswith("forged: ") for r in reasons), reasons
        rows = await records.assets(job_id)
        assert [r.project_slug for r in rows] == ["neon-skies"]
        assert all(p.parts[-6] == "neon-skies" for p in files_of(settings.asset_root, job_id))
        assert backend.requests["job_00001_.png"] == 1
