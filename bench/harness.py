"""What every benchmark needs: a pipeline of OS processes on a database of its own,
a fast AMQP submitter, and readers of the ledger and of the processes' memory.

The pipeline is started exactly as the end-to-end tests start it
(:func:`tests.support.procs.pipeline_processes`): one process per simulated ComfyUI
backend plus the four services, on the shared RabbitMQ (an exchange and queue prefix
of the run's own) and the shared PostgreSQL (a database of the run's own, migrated and
seeded, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

from shared.db.migrate import upgrade_async
from shared.events import JobSubmitted
from shared.settings import Settings
from tests.support.db import create_database, drop_database
from tests.support.pipeline import delete_topology, isolated_settings
from tests.support.procs import Pipeline, pipeline_processes

AMQP_URL = os.environ.get(
    "BENCH_AMQP_URL", os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
)
DATABASE_SERVER_URL = os.environ.get(
    "BENCH_DATABASE_URL",
    os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"),
)
SERVICES = ("ingest", "renderer", "archiver", "notifier")
FINAL = ("completed", "failed", "rejected", "cancelled")
PROJECT = "neon-skies"


def libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def shot(n: int, *, size: int = 64, **overrides: Any) -> dict[str, Any]:
    """A small valid shot request (64x64, the model-free template)."""
    return {
        "request_id": f"bench-{uuid.uuid4().hex}",
        "project": PROJECT,
        "episode": "ep01",
        "scene": "bench",
        "shot": f"shot-{n % 1000:03d}",
        "characters": [{"name": "Kai Nakamura"}],
        "prompt": f"benchmark frame {n}",
        "template": "model-free",
        "params": {"width": size, "height": size, "batch_size": 1},
        **overrides,
    }


def submission(request: dict[str, Any]) -> JobSubmitted:
    return JobSubmitted.model_validate(
        {"job_id": uuid.uuid4(), "correlation_id": uuid.uuid4().hex, **request}
    )


# --------------------------------------------------------------------------- pipeline


@dataclass
class Bench:
    settings: Settings
    pipeline: Pipeline
    database_url: str
    tmp: Path
    db: asyncpg.Pool

    @property
    def sim_urls(self) -> list[str]:
        return list(self.pipeline.settings.comfyui_urls)

    def pid(self, service: str) -> int:
        process = self.pipeline.supervisor.processes[service].process
        assert process is not None
        return process.pid

    def rss_mb(self) -> dict[str, float]:
        return {s: rss_mb(self.pid(s)) for s in SERVICES}


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (MB = 2**20 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def _seed(database_url: str, reference_root: Path) -> None:
    from services.ingest.references import ReferenceStore
    from services.ingest.seed import seed
    from shared.db.session import make_engine, make_sessionmaker

    engine = make_engine(database_url, pool_size=1)
    async with make_sessionmaker(engine)() as session, session.begin():
        await seed(session, ReferenceStore(reference_root))
    await engine.dispose()


@asynccontextmanager
async def bench_pipeline(
    tmp: Path,
    *,
    render_seconds: float = 0.0,
    simulators: int = 1,
    backend_slots: int = 2,
    sim_args: list[str] | None = None,
    archiver_roles: tuple[str, ...] = ("ledger", "archive"),
) -> AsyncIterator[Bench]:
    """A fresh database and the whole pipeline as OS processes; everything removed after."""
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    database_url = await create_database(DATABASE_SERVER_URL)
    settings: Settings | None = None
    try:
        await upgrade_async(database_url)
        await _seed(database_url, tmp / "references")
        settings = isolated_settings(
            amqp_url=AMQP_URL,
            database_url=database_url,
            tmp=tmp,
            backend_slots=backend_slots,
            archiver_roles=list(archiver_roles),
            log_level="WARNING",
        )
        async with pipeline_processes(
            settings,
            tmp,
            render_seconds=render_seconds,
            simulators=simulators,
            sim_args=["--log-level", "WARNING", *(sim_args or [])],
        ) as pipeline:
            pool = await asyncpg.create_pool(libpq_dsn(database_url), min_size=1, max_size=2)
            try:
                yield Bench(settings, pipeline, database_url, tmp, pool)
            finally:
                await pool.close()
    finally:
        if settings is not None:
            with contextlib.suppress(Exception):
                await delete_topology(AMQP_URL, settings)
        with contextlib.suppress(Exception):
            await drop_database(database_url)
        if not os.environ.get("BENCH_KEEP"):  # logs, assets and simulator outputs
            await asyncio.to_thread(shutil.rmtree, tmp, True)


# --------------------------------------------------------------------------- submitting


class Submitter:
    """Publishes ``job.submitted`` events with confirms, many in flight."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> Submitter:
        self.connection = await aio_pika.connect(self.settings.amqp_url)
        channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await channel.get_exchange(self.settings.exchange)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def publish(self, event: JobSubmitted) -> float:
        """Publish one event; returns the wall-clock time (epoch s) it was sent at."""
        assert self.exchange is not None
        sent = time.time()
        await self.exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                headers=event.headers(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                correlation_id=event.correlation_id,
                message_id=str(event.event_id),
            ),
            routing_key=event.routing_key(),
        )
        return sent

    async def publish_all(
        self, events: Sequence[JobSubmitted], *, in_flight: int = 500
    ) -> dict[uuid.UUID, float]:
        """Publish every event with up to ``in_flight`` unconfirmed; job id → send time."""
        sent: dict[uuid.UUID, float] = {}
        gate = asyncio.Semaphore(in_flight)

        async def one(event: JobSubmitted) -> None:
            async with gate:
                sent[event.job_id] = await self.publish(event)

        await asyncio.gather(*(one(e) for e in events))
        return sent

    async def publish_paced(
        self, events: Sequence[JobSubmitted], *, rate: float
    ) -> dict[uuid.UUID, float]:
        """Open loop: event ``i`` goes out at ``start + i / rate`` whatever happened before."""
        sent: dict[uuid.UUID, float] = {}
        start = time.monotonic()
        tasks = []

        async def one(event: JobSubmitted) -> None:
            sent[event.job_id] = await self.publish(event)

        for index, event in enumerate(events):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(event)))
        await asyncio.gather(*tasks)
        return sent


# --------------------------------------------------------------------------- reading


async def final_count(bench: Bench, job_ids: Iterable[uuid.UUID] | None = None) -> int:
    if job_ids is None:
        return int(
            await bench.db.fetchval("SELECT count(*) FROM job_states WHERE state = ANY($1)", FINAL)
        )
    return int(
        await bench.db.fetchval(
            "SELECT count(*) FROM job_states WHERE state = ANY($1) AND job_id = ANY($2)",
            FINAL,
            list(job_ids),
        )
    )


async def accepted_count(bench: Bench) -> int:
    return int(await bench.db.fetchval("SELECT count(*) FROM jobs"))


async def wait_until(
    probe: Any, target: int, *, timeout: float, interval: float = 0.25, what: str = ""
) -> float:
    """Poll ``probe()`` until it reaches ``target``; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        last = await probe()
        if last >= target:
            return time.monotonic()
        await asyncio.sleep(interval)
    raise TimeoutError(f"{what}: {last}/{target} after {timeout}s")


@dataclass
class JobTimes:
    """Ledger facts of one job (server clocks; same machine as the submitter)."""

    job_id: uuid.UUID
    state: str
    accepted_at: datetime | None
    finished_at: datetime | None
    render_seconds: float
    attempts: int


async def job_times(bench: Bench, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, JobTimes]:
    rows = await bench.db.fetch(
        """
        SELECT s.job_id, s.state, s.finished_at, s.attempt, j.created_at,
               (SELECT (e.payload->>'render_seconds')::float FROM job_events e
                 WHERE e.job_id = s.job_id AND e.event_type = 'job.rendered'
                 ORDER BY e.seq DESC LIMIT 1) AS render_seconds
        FROM job_states s JOIN jobs j ON j.id = s.job_id
        WHERE s.job_id = ANY($1)
        """,
        list(job_ids),
    )
    return {
        r["job_id"]: JobTimes(
            job_id=r["job_id"],
            state=r["state"],
            accepted_at=r["created_at"],
            finished_at=r["finished_at"],
            render_seconds=float(r["render_seconds"] or 0.0),
            attempts=int(r["attempt"] or 0),
        )
        for r in rows
    }


def epoch(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- simulators


async def sim_stats(url: str, *, reset: bool = False) -> dict[str, Any]:
    async with aiohttp.ClientSession() as client:
        if reset:
            async with client.post(f"{url}/_sim/stats/reset") as reply:
                stats: dict[str, Any] = await reply.json()
                return stats
        async with client.get(f"{url}/_sim/stats") as reply:
            stats = await reply.json()
            return stats


@dataclass
class Result:
    """One benchmark's figures, as printed and written to JSON."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def target(self, key: str, value: float, limit: float, *, at_most: bool) -> None:
        met = value <= limit if at_most else value >= limit
        self.targets[key] = {
            "value": value,
            "target": f"{'<=' if at_most else '>='} {limit}",
            "met": met,
        }
