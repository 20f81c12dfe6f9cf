"""The fault campaign's pipeline: its own RabbitMQ node and PostgreSQL cluster (faults on
the shared ones would break other people's tests), simulators and the four services as
OS processes, a continuous load and watchers that live through every phase."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from shared.db.migrate import upgrade_async
from tests.support import chaos_checks
from tests.support.chaos_campaign import Campaign, robust_pipeline
from tests.support.chaos_checks import CAMPAIGN
from tests.support.chaos_load import PROJECT, Load
from tests.support.chaos_watch import ProjectWatcher
from tests.support.own_services import (
    OwnPostgres,
    OwnRabbit,
    postgres_available,
    rabbit_available,
)
from tests.support.pipeline import isolated_settings
from tests.support.services import IN_CI


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml registers it (markers = [..., "chaos: ..."]).
    config.addinivalue_line(
        "markers", "chaos: fault campaign on a broker and database of its own (slow)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CAMPAIGN:
        terminalreporter.write_sep("=", "fault campaign")
        terminalreporter.write_line(chaos_checks.table(CAMPAIGN))


@pytest_asyncio.fixture(scope="module")
async def campaign(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Campaign]:
    if not (rabbit_available() and postgres_available()):
        message = "the chaos campaign needs rabbitmq-server and PostgreSQL's initdb/pg_ctl"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from bench.harness import _seed  # the same seeding as the benchmarks

    tmp = tmp_path_factory.mktemp("chaos")
    rabbit, postgres = OwnRabbit(), OwnPostgres()
    try:
        await asyncio.gather(rabbit.start(), postgres.start())
        database_url = await postgres.create_database("anime")
        await upgrade_async(database_url)
        await _seed(database_url, tmp / "references")
        settings = isolated_settings(
            amqp_url=rabbit.url,
            database_url=database_url,
            tmp=tmp,
            reference_root=tmp / "references",
            log_level=os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
            # This node has no management plugin; without this the management API would
            # be looked for on the shared broker's port (same host, 15672) and
            # provisioning would create users there, not on this node. Unreachable:
            # the services run as this node's guest.
            management_url="http://127.0.0.1:9",
        )
        async with robust_pipeline(settings, tmp, render_seconds=0.2, simulators=2) as pipeline:
            db = await asyncpg.create_pool(postgres.dsn("anime"), min_size=1, max_size=4)
            watcher = ProjectWatcher(pipeline.settings, PROJECT)
            watcher.start()
            try:
                async with Load(pipeline.settings) as load:
                    yield Campaign(rabbit, postgres, pipeline.settings, pipeline, db, load, watcher)
            finally:
                await watcher.close()
                await db.close()
    finally:
        await rabbit.close()
        await postgres.close()
