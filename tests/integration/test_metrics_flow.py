"""``/metrics`` of every service moves as jobs flow: consumed, published, dead-lettered,
handler latency, queue depth and consumers (polled by each service)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import publish_submission
from tests.support.procs import pipeline_processes
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SERVICES = ("ingest", "renderer", "archiver", "notifier")

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def shot(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": f"metrics-{uuid.uuid4().hex[:10]}",
        "project": "neon-skies",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": "rooftop at dusk",
        "template": "model-free",
        "params": {"width": 64, "height": 64},
        **overrides,
    }


async def scrape(settings: Settings, service: str) -> tuple[Samples, set[str]]:
    port = getattr(settings, f"{service}_port")
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    samples: Samples = defaultdict(dict)
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[sample.name][frozenset(sample.labels.items())] = sample.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))


async def test_metrics_move_as_jobs_flow(
    pipeline_settings: Settings, seeded: Path, records: Records, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"reference_root": seeded})
    topology = Topology.from_settings(settings)
    specs = topology.pipeline_specs(settings)
    renderer_dlq = topology.dlq_name(specs["renderer.accepted"].name)
    # The simulator refuses the first prompt (validation error): that job fails and parks.
    async with pipeline_processes(
        settings, tmp_path, sim_args=["--fault", "validation_error:count=1"]
    ) as pipeline:
        settings = pipeline.settings
        before = {s: (await scrape(settings, s))[0] for s in SERVICES}

        failing = await publish_submission(settings, shot())
        assert await eventually(lambda: records.final_state(failing.job_id), timeout=30) == "failed"
        good = await publish_submission(settings, shot())
        assert await eventually(lambda: records.final_state(good.job_id), timeout=30) == "completed"

        after = {s: (await scrape(settings, s))[0] for s in SERVICES}

        def moved(process: str, name: str, **labels: str) -> float:
            return value(after[process], name, **labels) - value(before[process], name, **labels)

        # Consumed, per event type and outcome
        assert (
            moved(
                "ingest", "anime_messages_consumed_total", event_type="job.submitted", outcome="ok"
            )
            == 2
        )
        assert moved("renderer", "anime_messages_consumed_total", outcome="ok") >= 2
        # (the archiver takes job.rendered twice: into the ledger, and to fetch the images)
        assert (
            moved(
                "archiver", "anime_messages_consumed_total", event_type="job.rendered", outcome="ok"
            )
            == 2
        )
        # Published, per event type, by the service that produced it
        assert (
            moved(
                "ingest",
                "anime_messages_published_total",
                service="ingest",
                event_type="job.accepted",
            )
            == 2
        )
        assert (
            moved(
                "renderer",
                "anime_messages_published_total",
                service="renderer",
                event_type="job.failed",
            )
            == 1
        )
        assert (
            moved(
                "renderer",
                "anime_messages_published_total",
                service="renderer",
                event_type="job.rendered",
            )
            == 1
        )
        assert (
            moved(
                "archiver",
                "anime_messages_published_total",
                service="archiver",
                event_type="job.archived",
            )
            == 1
        )
        # Dead letters, and handler latency observed for each consumed message
        assert moved("renderer", "anime_dead_lettered_total", service="renderer") == 1
        assert moved("ingest", "anime_handler_seconds_count", event_type="job.submitted") == 2
        assert moved("ingest", "anime_handler_seconds_sum", event_type="job.submitted") > 0

        # Every service polls queue depths and consumers (passive declares): the parked
        # job shows in the renderer's DLQ depth, and the work queues have their consumers.
        async def dlq_depth_seen() -> Samples | None:
            samples, _ = await scrape(settings, "notifier")
            found = samples.get("anime_queue_messages_ready", {})
            return samples if found.get(frozenset({("queue", renderer_dlq)})) == 1 else None

        samples = await eventually(dlq_depth_seen, timeout=20, what="DLQ depth gauge at 1")
        consumers = samples["anime_queue_consumers"]
        for key in ("ingest.submitted", "archiver.ledger", "archiver.rendered"):
            assert consumers[frozenset({("queue", specs[key].name)})] >= 1, key
        names = {dict(k)["queue"] for k in samples["anime_queue_messages_ready"]}
        for spec in specs.values():
            assert spec.name in names
            assert {topology.retry_name(spec.name, d) for d in spec.retry_delays} <= names
        _, families = await scrape(settings, "renderer")
        for family in (
            "anime_render_seconds",
            "anime_backend_busy",
            "anime_retries",
            "anime_publish_errors",
        ):
            assert family in families, family
