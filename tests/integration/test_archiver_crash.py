"""An archiver SIGKILLed in the middle of a batch: no partial file, finished after restart."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from cli.processes import Supervisor, service_argv
from shared.settings import REPO_ROOT, Settings
from shared.storage import PARTIAL_PREFIX, host_tag, partial_prefix
from tests.support.archive_backend import ImageBackend, make_png
from tests.support.archive_jobs import insert_job, publisher, rendered, spec_for
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    processes = Supervisor()
    try:
        yield processes
    finally:
        await processes.stop_all(timeout=10)


def complete_png(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:
        return False


async def test_an_archiver_killed_mid_batch_leaves_no_partial_file_and_finishes_after_restart(
    pipeline_settings: Settings, records: Records, supervisor: Supervisor
) -> None:
    async with ImageBackend() as backend:
        names = [f"crash_0000{i}_.png" for i in range(1, 5)]
        for shade, name in enumerate(names, start=1):
            backend.add(name, make_png(shade * 30, size=(512, 512)))
        # The third image is held back: the archiver will be waiting for it when killed
        gate = backend.gate(names[2])
        settings = pipeline_settings.model_copy(update={"comfyui_urls": [backend.url]})
        spec = spec_for(batch_size=4)
        job_id = await insert_job(records.sessions, spec)
        ready = f"http://127.0.0.1:{settings.archiver_port}/readyz"
        process = await supervisor.start(
            "archiver", service_argv("archiver"), env=settings.as_env(), ready_url=ready,
            cwd=REPO_ROOT,
        )  # fmt: skip
        assert process.process is not None
        killed_pid = process.process.pid
        async with publisher(settings) as bus:
            await bus.publish(rendered(job_id, spec, backend.url, names))

        async def fetching_third() -> bool:
            return gate.arrived.is_set()

        await eventually(fetching_third, what="archiver fetching image 3")
        folder = settings.asset_root / "neon-skies" / "ep01" / "rooftop-dusk" / "shot-012"
        folder = folder / str(job_id)
        # A write cut short leaves a temp file behind; plant one as the killed process would
        leftover = folder / f"{partial_prefix(killed_pid, 'deadbeef', host_tag())}x1y2z3.png"

        # When the archiver is SIGKILLed mid-batch
        await supervisor.kill("archiver")
        leftover.write_bytes(make_png(1)[:100])

        # Then every file under a final name is complete, and no row exists yet
        finals = [p for p in folder.iterdir() if not p.name.startswith(PARTIAL_PREFIX)]
        assert {p.name for p in finals} == {"01.png", "01.json", "02.png", "02.json"}
        assert all(complete_png(p) for p in finals if p.suffix == ".png")
        assert await records.assets(job_id) == []

        # When it restarts (and the backend answers again)
        gate.released.set()
        await supervisor.restart("archiver")
        state = await eventually(lambda: records.final_state(job_id), what="final state")

    # Then the batch is finished: four complete images, four rows, no temp file anywhere
    assert state == "completed"
    rows = await records.assets(job_id)
    assert [r.index for r in rows] == [0, 1, 2, 3]
    for row in rows:
        path = settings.asset_root / row.path
        assert complete_png(path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256
    assert sorted(p.name for p in folder.iterdir()) == [
        f"0{i}.{ext}" for i in range(1, 5) for ext in ("json", "png")
    ]
    assert not list(settings.asset_root.rglob(f"{PARTIAL_PREFIX}*"))
