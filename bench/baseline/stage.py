"""One stage of the bare baseline chain, as its own OS process.

    python -m bench.baseline.stage STAGE --amqp URL --dsn DSN --prefix P --files DIR --ready FILE

The durable minimum a stage of the pipeline has to do, and nothing else: a FastStream
subscriber on a quorum queue (bound to a topic exchange) parses the job with pydantic,
does one PostgreSQL INSERT (autocommitted, so it is durable before anything follows),
the archive stage first writes one 4 KiB file and fsyncs it and its directory (in a
thread, as a real service would), then publishes the job to the next stage as a
persistent message and awaits the broker's confirm; the delivery is acked only after
all of that (FastStream's default policy acks when the handler returns).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from faststream import FastStream
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.schemas import QueueType
from pydantic import BaseModel

#: stage → (routing key it consumes, routing key it publishes, or None for the last stage)
STAGES: dict[str, tuple[str, str | None]] = {
    "ingest": ("job.submitted", "job.accepted"),
    "render": ("job.accepted", "job.rendered"),
    "archive": ("job.rendered", "job.archived"),
    "notify": ("job.archived", None),
}
#: One table per stage; the last stage's rows mark the jobs that are done.
TABLES = {stage: f"baseline_{stage}" for stage in STAGES}
FILE_BYTES = 4096
#: The real services' prefetch is 8 to 512 per subscriber (ingest 32).
DEFAULT_PREFETCH = 32


class Job(BaseModel):
    """What travels down the chain: the job's id and the shot request it carries."""

    job_id: uuid.UUID
    request: dict[str, Any]


def exchange_name(prefix: str) -> str:
    return f"{prefix}events"


def queue_name(prefix: str, stage: str) -> str:
    return f"{prefix}{stage}"


def schema_sql() -> str:
    """The four tables; the ingest row keeps the request (jsonb), as an intake would."""
    return "\n".join(
        f"CREATE TABLE {TABLES[stage]} (job_id uuid PRIMARY KEY,"
        + (" request jsonb NOT NULL," if stage == "ingest" else "")
        + " done_at timestamptz NOT NULL DEFAULT clock_timestamp());"
        for stage in STAGES
    )


def write_durably(directory: Path, name: str, data: bytes) -> None:
    """Write a file so it survives a crash: temp file, fsync, rename, fsync the directory."""
    final = directory / name
    temporary = directory / f".{name}.tmp"
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_app(
    stage: str,
    *,
    amqp_url: str,
    dsn: str,
    prefix: str,
    files: Path,
    ready: Path | None = None,
    prefetch: int = DEFAULT_PREFETCH,
) -> FastStream:
    consumes, publishes = STAGES[stage]
    broker = RabbitBroker(amqp_url, logger=None)
    exchange = RabbitExchange(exchange_name(prefix), type=ExchangeType.TOPIC)
    queue = RabbitQueue(
        queue_name(prefix, stage), queue_type=QueueType.QUORUM, routing_key=consumes
    )
    publisher = (
        broker.publisher(exchange=exchange, routing_key=publishes, persist=True)
        if publishes
        else None
    )
    pool: list[asyncpg.Pool] = []
    insert = (
        f"INSERT INTO {TABLES[stage]} (job_id, request) VALUES ($1, $2::jsonb)"
        if stage == "ingest"
        else f"INSERT INTO {TABLES[stage]} (job_id) VALUES ($1)"
    )
    payload = os.urandom(FILE_BYTES)

    @broker.subscriber(queue, exchange, channel=Channel(prefetch_count=prefetch))
    async def handle(job: Job, msg: RabbitMessage) -> None:
        if stage == "archive":
            await asyncio.to_thread(write_durably, files, f"{job.job_id}.bin", payload)
        if stage == "ingest":
            await pool[0].execute(insert, job.job_id, json.dumps(job.request))
        else:
            await pool[0].execute(insert, job.job_id)
        if publisher is not None:
            await publisher.publish(job, correlation_id=msg.correlation_id)

    app = FastStream(broker)

    @app.on_startup
    async def connect() -> None:
        pool.append(await asyncpg.create_pool(dsn, min_size=2, max_size=10))
        await asyncio.to_thread(files.mkdir, parents=True, exist_ok=True)

    @app.after_startup
    async def announce() -> None:
        if ready is not None:
            await asyncio.to_thread(ready.write_text, str(os.getpid()))

    @app.after_shutdown
    async def close() -> None:
        if pool:
            await pool[0].close()

    return app


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline.stage")
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--dsn", required=True, help="libpq DSN of the run's database")
    parser.add_argument("--prefix", required=True, help="exchange and queue name prefix")
    parser.add_argument("--files", type=Path, required=True, help="archive stage's directory")
    parser.add_argument("--ready", type=Path, help="file written once consuming")
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    app = build_app(
        args.stage,
        amqp_url=args.amqp,
        dsn=args.dsn,
        prefix=args.prefix,
        files=args.files,
        ready=args.ready,
        prefetch=args.prefetch,
    )
    asyncio.run(app.run())


if __name__ == "__main__":
    main(sys.argv[1:])
