"""The ops dashboard in a real browser (Debian's chromium driven by Playwright), against the
whole pipeline running as OS processes with real jobs: one that fails, two that complete.

Checks what a person sees: the numbers in the queue table and the tiles, the live
progress bars and thumbnails of the jobs, the failed job with its reason, and the replay
button putting the dead letter back to work. Saves a screenshot in the test's tmp dir
and a copy in docs/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from shared.auth import create_key
from shared.settings import REPO_ROOT, Settings
from shared.topology import Topology
from tests.support.amqp import publish_submission, queue_depth
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.services import IN_CI
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no browser download)")
    if not Path(CHROMIUM).exists():
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def shot(name: str) -> dict[str, Any]:
    return {
        "request_id": f"dash-{name}-{uuid.uuid4().hex[:8]}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "rooftop-dusk",
        "shot": name,
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        "params": {"width": 128, "height": 96},
    }


async def test_dashboard_shows_queues_jobs_failures_and_replays(
    browser: Any, pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(
        update={"reference_root": seeded, "require_api_keys": True}
    )
    key, _ = await create_key(records.sessions, name="dashboard", scopes=["admin"])
    topology = Topology.from_settings(settings)
    dlq = topology.dlq_name(topology.pipeline_specs(settings)["renderer.accepted"].name)

    # The simulator refuses the first prompt; renders take long enough to watch.
    async with pipeline_processes(
        settings, tmp_path, render_seconds=2.0, sim_args=["--fault", "validation_error:count=1"]
    ) as pipeline:
        settings = pipeline.settings
        # The notifier with the dashboard registered (a no-op once main.py wires it in)
        await pipeline.supervisor.stop("notifier")
        await pipeline.supervisor.start(
            "notifier",
            [sys.executable, "-m", "tests.browser.notifier_with_dashboard"],
            env=settings.as_env(),
            ready_url=pipeline.ready_url("notifier"),
            cwd=REPO_ROOT,
        )
        base = f"http://127.0.0.1:{settings.notifier_port}"

        page = await browser.new_page(viewport={"width": 1400, "height": 1300})
        await page.goto(base + "/")
        # Without a key the page asks for one
        await page.wait_for_selector("[data-testid=banner]:not([hidden])")
        assert "API key" in await page.inner_text("[data-testid=banner]")
        # When the operator enters an admin key
        await page.fill("#api-key", key)
        await page.click("#key-form button")
        await page.wait_for_selector("[data-testid=banner]", state="hidden")
        await page.wait_for_selector("#ws-status.on")
        # (the database is shared by this test run: count from what the page shows now)
        await page.wait_for_function(
            "() => document.querySelector('[data-testid=completed-1h]').textContent !== '\u2013'"
        )
        completed_before = int(await page.inner_text("[data-testid=completed-1h]"))
        failed_before = int(await page.inner_text("[data-testid=failed-1h]"))

        # Given a job that failed and was parked in the renderer's DLQ
        failing = await publish_submission(settings, shot("shot-001"))
        assert await eventually(lambda: records.final_state(failing.job_id), timeout=30) == "failed"

        # Then the failed job is listed with its reason, and its dead letter can be replayed
        failed_row = page.locator(f"[data-testid=failed-job][data-job-id='{failing.job_id}']")
        await failed_row.wait_for()
        assert "validation" in (await failed_row.inner_text()).lower()
        # with ComfyUI's node errors as problems, on the row and on the job's card
        assert "node" in await failed_row.locator("[data-testid=problem]").first.inner_text()
        card_problem = page.locator(
            f"[data-testid=job][data-job-id='{failing.job_id}'] [data-testid=problem]"
        )
        await card_problem.first.wait_for()
        assert "node" in await card_problem.first.inner_text()
        letter = page.locator("[data-testid=dead-letter]")
        await letter.first.wait_for()
        assert await letter.count() == 1
        assert str(failing.job_id)[:8] in await letter.first.inner_text()
        dlq_row = page.locator(f"#queues tr[data-queue='{dlq}']")
        await dlq_row.wait_for()

        async def dlq_cell_is(text: str) -> bool:
            return (await dlq_row.locator("td.ready").inner_text()).strip() == text

        await eventually(lambda: dlq_cell_is("1"), timeout=20, what="DLQ ready 1 on the page")
        assert await page.inner_text("[data-testid=dead-letters]") == "1"
        assert int(await page.inner_text("[data-testid=failed-1h]")) == failed_before + 1

        # When two shots are submitted, their bars move live and end at 100 % with thumbnails
        jobs = [await publish_submission(settings, shot(f"shot-00{i}")) for i in (2, 3)]
        first = page.locator(f"[data-testid=job][data-job-id='{jobs[0].job_id}']")
        await first.wait_for()

        async def in_flight() -> bool:
            progress = await first.get_attribute("data-progress")
            state = await first.get_attribute("data-state")
            return state == "rendering" and progress is not None and 0 < int(progress) < 100

        await eventually(in_flight, timeout=30, interval=0.05, what="a live progress bar")
        await page.screenshot(path=str(tmp_path / "dashboard-rendering.png"), full_page=True)
        for job in jobs:
            card = page.locator(f"[data-testid=job][data-job-id='{job.job_id}']")
            await card.locator("xpath=self::*[@data-state='completed']").wait_for(timeout=40_000)
            assert await card.get_attribute("data-progress") == "100"
            thumb = card.locator("img.thumb")
            await page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=await thumb.element_handle()
            )
        assert await records.final_state(jobs[1].job_id) == "completed"

        async def tile(name: str, expected: str) -> bool:
            return (await page.inner_text(f"[data-testid={name}]")) == expected

        await eventually(
            lambda: tile("completed-1h", str(completed_before + 2)), timeout=10, what="2 more"
        )
        # The backend the jobs rendered on is shown as reachable
        backend = page.locator(f"#backends tr[data-backend='{settings.comfyui_urls[0]}']")
        assert (await backend.locator("td.status").inner_text()).strip() in ("idle", "busy")
        # The work queues show their consumers
        ingest_queue = topology.pipeline_specs(settings)["ingest.submitted"].name
        consumers = page.locator(f"#queues tr[data-queue='{ingest_queue}'] td.consumers")
        assert int(await consumers.inner_text()) >= 1

        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        shutil.copyfile(tmp_path / "dashboard.png", REPO_ROOT / "docs" / "dashboard.png")

        # When the replay button is pressed, the dead letter goes back to work
        await letter.first.locator("[data-testid=replay]").click()
        await page.wait_for_function(
            "() => document.querySelector('[data-testid=replay-result]').textContent"
            ".startsWith('Replayed 1')"
        )
        await eventually(
            lambda: _empty(queue_depth(settings, dlq)), timeout=20, what="the DLQ emptied"
        )
        await page.locator("[data-testid=dead-letter]").first.wait_for(state="detached")
        assert "renderer" in await page.inner_text("[data-testid=replay-result]")
        # … and the redriven job renders again: its card ends completed with a thumbnail
        card = page.locator(f"[data-testid=job][data-job-id='{failing.job_id}']")
        await card.locator("xpath=self::*[@data-state='completed']").wait_for(timeout=40_000)
        await page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0",
            arg=await card.locator("img.thumb").element_handle(),
        )
        await page.screenshot(path=str(tmp_path / "dashboard-replayed.png"), full_page=True)


async def _empty(depth: Any) -> bool:
    return await depth == 0
