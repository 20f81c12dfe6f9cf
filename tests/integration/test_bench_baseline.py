"""The benchmark's bare baseline chain (bench/baseline) on the real broker and database:
every submitted job goes through all four stage processes."""

from __future__ import annotations

from pathlib import Path

import aio_pika
import pytest

from bench.baseline.chain import baseline_chain, run_round
from bench.baseline.stage import FILE_BYTES, STAGES, TABLES, queue_name

pytestmark = pytest.mark.integration

JOBS = 20


async def test_every_job_reaches_the_last_stage(
    amqp_url: str, database_server_url: str, tmp_path: Path
) -> None:
    requests = [{"n": i, "prompt": f"frame {i}"} for i in range(JOBS)]
    async with baseline_chain(
        tmp_path / "chain", amqp_url=amqp_url, database_server_url=database_server_url
    ) as chain:
        # run_round waits (polling) until the last stage has committed every job.
        figures = await run_round(chain, requests, timeout=120)
        for stage in STAGES:
            assert await chain.db.fetchval(f"SELECT count(*) FROM {TABLES[stage]}") == JOBS
        files = list(chain.files.glob("*.bin"))
        assert len(files) == JOBS
        assert {f.stat().st_size for f in files} == {FILE_BYTES}
        prefix = chain.prefix
    assert figures["jobs"] == JOBS and figures["files_fsynced"] == JOBS
    assert figures["throughput"] > 0 and figures["cpu_ms_per_job_total"] > 0

    # Torn down: the run's queues are gone.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for stage in STAGES:
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(queue_name(prefix, stage), passive=True)
