"""Fixtures: real RabbitMQ and PostgreSQL (see tests/support/services.py), a fresh
database per run, and an isolated exchange/queue prefix per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import pytest_asyncio

from shared.db.migrate import upgrade_async
from shared.settings import Settings
from tests.support.db import create_database, drop_database
from tests.support.pipeline import delete_topology, isolated_settings
from tests.support.records import Records
from tests.support.services import (
    container_amqp_url,
    container_database_url,
    docker_answers,
    unavailable,
)


@pytest.fixture(scope="session")
def _containers() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def amqp_url(_containers: ExitStack) -> str:
    url = os.environ.get("TEST_AMQP_URL")
    if url:
        return url
    if docker_answers():
        return container_amqp_url(_containers)
    unavailable("RabbitMQ")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def database_server_url(_containers: ExitStack) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    if docker_answers():
        return container_database_url(_containers)
    unavailable("PostgreSQL")
    raise AssertionError("unreachable")


@pytest_asyncio.fixture(scope="session")
async def database_url(database_server_url: str) -> AsyncIterator[str]:
    """A migrated database of this run's own, dropped at the end."""
    url = await create_database(database_server_url)
    await upgrade_async(url)
    yield url
    await drop_database(url)


@pytest_asyncio.fixture
async def pipeline_settings(
    amqp_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[Settings]:
    settings = isolated_settings(amqp_url=amqp_url, database_url=database_url, tmp=tmp_path)
    yield settings
    await delete_topology(amqp_url, settings)


@pytest_asyncio.fixture(scope="session")
async def seeded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The studio's characters and demo project, loaded once; returns the reference root."""
    from services.ingest.references import ReferenceStore
    from services.ingest.seed import seed
    from shared.db.session import make_engine, make_sessionmaker

    root = tmp_path_factory.mktemp("references")
    engine = make_engine(database_url, pool_size=1)
    async with make_sessionmaker(engine)() as session, session.begin():
        await seed(session, ReferenceStore(root))
    await engine.dispose()
    return root


@pytest_asyncio.fixture
async def records(database_url: str) -> AsyncIterator[Records]:
    reader = Records(database_url)
    yield reader
    await reader.close()
