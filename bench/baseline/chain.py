"""The bare baseline chain: four stage processes on a database and a queue prefix of the
run's own, fed and timed the way the pipeline's throughput round is.

The floor every pipeline throughput figure is divided by: four FastStream processes,
quorum queues, persistent messages with publisher confirms, one PostgreSQL INSERT per
stage and one fsync'd 4 KiB file. Measured in the same ``python -m bench`` run, minutes
apart on the same machine, so the ratio survives a shared machine's noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from bench import procstat
from bench.baseline.stage import STAGES, TABLES, exchange_name, queue_name, schema_sql
from cli.processes import Supervisor
from shared.settings import REPO_ROOT
from tests.support.db import create_database, drop_database

#: The pipeline's counterpart of each baseline stage, for the side-by-side table.
COUNTERPART = {
    "ingest": "ingest",
    "render": "renderer",
    "archive": "archiver",
    "notify": "notifier",
}
BENCH_LABEL = "bench (submitter, poller)"
#: Process families outside the chain that a job costs: the broker and the database.
SHARED_FAMILIES = ("beam.smp", "postgres")


@dataclass
class Chain:
    amqp_url: str
    prefix: str
    database_url: str
    files: Path
    supervisor: Supervisor
    db: asyncpg.Pool

    def pids(self) -> dict[str, int]:
        out = {}
        for stage in STAGES:
            process = self.supervisor.processes[stage].process
            assert process is not None
            out[stage] = process.pid
        return out

    def labels(self) -> dict[int, str]:
        labels = {pid: stage for stage, pid in self.pids().items()}
        labels[os.getpid()] = BENCH_LABEL
        return labels

    async def done_count(self) -> int:
        return int(await self.db.fetchval(f"SELECT count(*) FROM {TABLES['notify']}"))


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def stage_argv(stage: str, chain_args: dict[str, str], ready: Path, prefetch: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.baseline.stage",
        stage,
        *(x for key, value in chain_args.items() for x in (f"--{key}", value)),
        "--ready",
        str(ready),
        "--prefetch",
        str(prefetch),
    ]


@asynccontextmanager
async def baseline_chain(
    tmp: Path,
    *,
    amqp_url: str,
    database_server_url: str,
    prefetch: int = 32,
    start_timeout: float = 60.0,
) -> AsyncIterator[Chain]:
    """A fresh database, the exchange and four quorum queues, four stage processes;
    everything stopped, deleted and dropped afterwards."""
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    prefix = f"bench.baseline.{uuid.uuid4().hex[:8]}."
    database_url = await create_database(database_server_url)
    supervisor = Supervisor(log_dir=tmp / "logs")
    pool: asyncpg.Pool | None = None
    try:
        dsn = _libpq(database_url)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(schema_sql())
        finally:
            await conn.close()
        files = tmp / "archive"
        args = {"amqp": amqp_url, "dsn": dsn, "prefix": prefix, "files": str(files)}
        readies = {stage: tmp / f"{stage}.ready" for stage in STAGES}
        for stage in STAGES:
            await supervisor.start(
                stage, stage_argv(stage, args, readies[stage], prefetch), cwd=REPO_ROOT
            )
        await _wait_ready(supervisor, readies, timeout=start_timeout)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        yield Chain(amqp_url, prefix, database_url, files, supervisor, pool)
    finally:
        if pool is not None:
            await pool.close()
        await supervisor.stop_all()
        with contextlib.suppress(Exception):
            await delete_topology(amqp_url, prefix)
        with contextlib.suppress(Exception):
            await drop_database(database_url)
        if not os.environ.get("BENCH_KEEP"):
            await asyncio.to_thread(shutil.rmtree, tmp, True)


async def _wait_ready(supervisor: Supervisor, readies: dict[str, Path], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in readies.values()):
        for stage in readies:
            process = supervisor.processes[stage].process
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"baseline stage {stage} exited with {process.returncode}")
        if time.monotonic() > deadline:
            missing = [s for s, p in readies.items() if not p.exists()]
            raise TimeoutError(f"baseline stages not ready after {timeout}s: {missing}")
        await asyncio.sleep(0.1)


async def delete_topology(amqp_url: str, prefix: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for stage in STAGES:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue_name(prefix, stage))
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange_name(prefix))


async def submit_all(
    chain: Chain, requests: Sequence[dict[str, Any]], *, in_flight: int = 500
) -> dict[uuid.UUID, float]:
    """Publish every job at once (persistent, confirmed, up to ``in_flight`` unconfirmed),
    exactly as :meth:`bench.harness.Submitter.publish_all` submits to the pipeline."""
    connection = await aio_pika.connect(chain.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name(chain.prefix))
        gate = asyncio.Semaphore(in_flight)
        sent: dict[uuid.UUID, float] = {}
        consumes = STAGES["ingest"][0]

        async def one(request: dict[str, Any]) -> None:
            job_id = uuid.uuid4()
            body = json.dumps({"job_id": str(job_id), "request": request}).encode()
            async with gate:
                sent[job_id] = time.time()
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                        correlation_id=uuid.uuid4().hex,
                        message_id=str(uuid.uuid4()),
                    ),
                    routing_key=consumes,
                )

        await asyncio.gather(*(one(r) for r in requests))
        return sent


async def run_round(
    chain: Chain, requests: Sequence[dict[str, Any]], *, timeout: float, poll: float = 0.1
) -> dict[str, Any]:
    """Submit every request at once; wait until the last stage committed each job.

    Throughput is ``n / (last job's commit in the last stage - first submission)``, from
    the rows' ``clock_timestamp()`` (same machine, same clock as the submitter).
    """
    n = len(requests)
    load = [round(x, 2) for x in os.getloadavg()]
    base = await chain.done_count()
    labels = chain.labels()
    cpu_before = procstat.snapshot()
    start = time.monotonic()
    publishing = asyncio.create_task(submit_all(chain, requests))
    published_after: float | None = None
    while True:
        now = time.monotonic()
        if published_after is None and publishing.done():
            await publishing
            published_after = now - start
        if published_after is not None and await chain.done_count() - base >= n:
            polled = time.monotonic() - start
            break
        if now - start > timeout:
            done = await chain.done_count() - base
            publishing.cancel()
            raise TimeoutError(f"baseline: {done}/{n} jobs done after {timeout}s")
        await asyncio.sleep(poll)
    cpu = procstat.spent(cpu_before, procstat.snapshot(), labels)
    sent = publishing.result()
    last = await chain.db.fetchval(
        f"SELECT max(done_at) FROM {TABLES['notify']} WHERE job_id = ANY($1)", list(sent)
    )
    wall = last.timestamp() - min(sent.values())
    files = len(await asyncio.to_thread(lambda: list(chain.files.glob("*.bin"))))
    return {
        "jobs": n,
        "load_average_before": load,
        "publish_seconds": round(published_after, 3),
        "all_done_seconds": round(wall, 3),
        "all_done_seconds_polled": round(polled, 2),
        "throughput": round(n / wall, 2),
        "files_fsynced": files,
        **cpu_figures(cpu, n, chain_labels=list(STAGES)),
    }


def cpu_figures(cpu: dict[str, float], n: int, *, chain_labels: Sequence[str]) -> dict[str, Any]:
    """CPU per job by process family, and the total the chain is charged with: its own
    processes (``chain_labels``), the bench process, RabbitMQ and PostgreSQL. Anything else
    that ran on the shared machine meanwhile is shown apart and not charged."""
    charged = {*chain_labels, BENCH_LABEL, *SHARED_FAMILIES}
    total = sum(v for k, v in cpu.items() if k in charged)
    other = sum(v for k, v in cpu.items() if k not in charged)
    return {
        "cpu_ms_per_job_total": round(total / n * 1000, 2),
        "cpu_ms_per_job": {k: round(v / n * 1000, 2) for k, v in cpu.items() if k in charged},
        "cpu_ms_per_job_elsewhere_not_charged": round(other / n * 1000, 2),
        "cpu_seconds_elsewhere_top": {
            k: round(v, 2) for k, v in list(cpu.items())[:20] if k not in charged and v >= 0.05
        },
    }


async def measure(
    n: int,
    tmp: Path,
    *,
    amqp_url: str,
    database_server_url: str,
    requests: Sequence[dict[str, Any]],
    prefetch: int = 32,
) -> dict[str, Any]:
    """Start the chain, run one round of ``n`` jobs, tear down; the round's figures."""
    async with baseline_chain(
        tmp, amqp_url=amqp_url, database_server_url=database_server_url, prefetch=prefetch
    ) as chain:
        figures = await run_round(chain, requests[:n], timeout=max(300.0, n * 0.2))
    figures["prefetch"] = prefetch
    return figures
