"""Micro-benchmark of ingest's AMQP hot path: CPU and SQL statements per ``job.submitted``.

Runs ingest in this process (as the integration tests do) against the real broker and a
fresh, migrated and seeded PostgreSQL database; a separate OS process publishes the
requests, so this process's CPU time is ingest's alone (plus a cheap poll of ``jobs``).

    .venv/bin/python -m tests.perf.ingest_hotpath --jobs 500
    .venv/bin/python -m tests.perf.ingest_hotpath --jobs 500 --characters 2 --repeat 0.2

Prints CPU ms per job (``time.process_time``), SQL statements per job (SQLAlchemy
``before_cursor_execute``) and transactions per job (``begin``/``commit``/``rollback``
events). It reports; it asserts nothing. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.engine import Engine

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
CHARACTERS = ["Kai Nakamura", "Sakura Hana", "Hiroshi Tanaka"]


def shot(n: int, run: str, characters: int) -> dict[str, Any]:
    """The benchmark's request (bench/harness.py ``shot``), with 1-3 named characters."""
    return {
        "request_id": f"hot-{run}-{n}",
        "project": "neon-skies",
        "episode": "ep01",
        "scene": "bench",
        "shot": f"shot-{n % 1000:03d}",
        "characters": [{"name": name} for name in CHARACTERS[:characters]],
        "prompt": f"benchmark frame {n}",
        "template": "model-free",
        "params": {"width": 64, "height": 64, "batch_size": 1},
    }


async def publish(
    amqp_url: str, exchange_name: str, jobs: int, run: str, characters: int, repeat: float
) -> None:
    """Publish ``jobs`` job.submitted events (a fraction ``repeat`` of them repeats)."""
    from shared.events import JobSubmitted

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        repeats = int(jobs * repeat)
        sends = []
        for n in range(jobs):
            # The last `repeats` messages repeat earlier requests (same body, same id).
            request = shot(n - (jobs - repeats) if n >= jobs - repeats else n, run, characters)
            submitted = JobSubmitted.model_validate(
                {"job_id": uuid.uuid4(), "correlation_id": uuid.uuid4().hex, **request}
            )
            message = aio_pika.Message(
                submitted.model_dump_json().encode(),
                headers=dict(submitted.headers()),
                correlation_id=submitted.correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            sends.append(exchange.publish(message, routing_key=submitted.routing_key()))
            if len(sends) >= 100:
                await asyncio.gather(*sends)
                sends = []
        await asyncio.gather(*sends)


class SqlCounter:
    """SQL statements (SQLAlchemy) and the round trips asyncpg actually makes."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False
        event.listen(Engine, "before_cursor_execute", self._statement)
        # What goes over the wire: a prepared statement's execution, a simple query
        # (BEGIN / COMMIT / ROLLBACK), a ping (pool_pre_ping), a prepare (cache miss).
        self._wrap(asyncpg.prepared_stmt.PreparedStatement, "fetch", "rt: execute")
        self._wrap(asyncpg.Connection, "execute", "rt: BEGIN/COMMIT/ROLLBACK")
        self._wrap(asyncpg.Connection, "fetchrow", "rt: ping")
        self._wrap(asyncpg.Connection, "prepare", "rt: prepare")

    def _wrap(self, cls: Any, name: str, label: str) -> None:
        original = getattr(cls, name)
        counter = self

        async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            if counter.on:
                counter.counts[label] += 1
                counter.counts["round_trips"] += 1
            return await original(self, *args, **kwargs)

        setattr(cls, name, counted)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.on:
            self.counts["statements"] += 1
            self.counts["stmt: " + " ".join(statement.split())[:70]] += 1


async def main(args: argparse.Namespace) -> None:
    from services.ingest.main import build_runtime
    from services.ingest.references import ReferenceStore
    from services.ingest.seed import seed
    from shared.db.migrate import upgrade_async
    from shared.db.session import make_engine, make_sessionmaker
    from tests.support.db import create_database, drop_database
    from tests.support.pipeline import delete_topology, isolated_settings, running

    counter = SqlCounter()
    database_url = await create_database(DATABASE_SERVER_URL)
    tmp = Path(tempfile.mkdtemp(prefix="ingest-hotpath-"))
    settings = isolated_settings(amqp_url=AMQP_URL, database_url=database_url, tmp=tmp)
    try:
        await upgrade_async(database_url)
        engine = make_engine(database_url, pool_size=1)
        async with make_sessionmaker(engine)() as session, session.begin():
            await seed(session, ReferenceStore(settings.reference_root))
        await engine.dispose()
        dsn = database_url.replace("postgresql+asyncpg", "postgresql")
        db = await asyncpg.connect(dsn)
        runtime = build_runtime(settings)
        app = runtime.app(description="hot path")

        async def done(run: str) -> int:
            value = await db.fetchval(
                "SELECT count(*) FROM jobs WHERE request_id LIKE $1"
                " AND verdict_published_at IS NOT NULL",
                f"hot-{run}-%",
            )
            return int(value)

        def consumed() -> float:
            return sum(
                REGISTRY.get_sample_value(
                    "anime_messages_consumed_total",
                    {"service": "ingest", "event_type": "job.submitted", "outcome": o},
                )
                or 0.0
                for o in ("ok", "error")
            )

        async def batch(jobs: int, run: str) -> None:
            before = consumed()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.perf.ingest_hotpath",
                "--publish",
                settings.exchange,
                run,
                "--jobs",
                str(jobs),
                "--characters",
                str(args.characters),
                "--repeat",
                str(args.repeat),
            )
            assert await proc.wait() == 0
            target = before + jobs
            while consumed() < target:  # noqa: ASYNC110 - a metric, not an event
                await asyncio.sleep(0.02)
            assert await done(run) == jobs - int(jobs * args.repeat)

        async with running(app):
            await batch(args.warmup, "warm")  # warm caches, statement caches, imports
            counter.on = True
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await batch(args.jobs, "run")
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            counter.on = False
        await db.close()
    finally:
        await delete_topology(AMQP_URL, settings)
        await drop_database(database_url)

    n = args.jobs
    print(
        json.dumps(
            {
                "jobs": n,
                "characters": args.characters,
                "repeat": args.repeat,
                "cpu_ms_per_job": round(cpu * 1000 / n, 2),
                "wall_s": round(wall, 2),
                "jobs_per_s_wall": round(n / wall, 1),
                "statements_per_job": round(counter.counts["statements"] / n, 2),
                "round_trips_per_job": round(counter.counts["round_trips"] / n, 2),
                **{
                    key[4:]: round(count / n, 2)
                    for key, count in sorted(counter.counts.items())
                    if key.startswith("rt: ")
                },
            },
            indent=1,
        )
    )
    if args.verbose:
        for key, count in counter.counts.most_common():
            if key.startswith("stmt: "):
                print(f"{count / n:6.2f}  {key[6:]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--characters", type=int, default=1, choices=range(1, 4))
    parser.add_argument("--repeat", type=float, default=0.0, help="fraction of repeats")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--publish", nargs=2, metavar=("EXCHANGE", "RUN"))
    ns = parser.parse_args()
    if ns.publish:
        asyncio.run(
            publish(AMQP_URL, ns.publish[0], ns.jobs, ns.publish[1], ns.characters, ns.repeat)
        )
    else:
        asyncio.run(main(ns))
