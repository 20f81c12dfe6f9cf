"""Where the real RabbitMQ and PostgreSQL for tests come from.

1. ``TEST_AMQP_URL`` / ``TEST_DATABASE_URL`` when set;
2. otherwise a testcontainers container, if a Docker engine answers;
3. otherwise skip locally, but **fail under CI**: a missing service there is a broken
   run, never a quietly skipped one.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

import pytest

IN_CI = bool(os.environ.get("CI"))


def unavailable(what: str) -> None:
    message = (
        f"no {what}: set TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ and "
        "TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres, or run Docker"
    )
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def container_amqp_url(stack: ExitStack) -> str:
    from testcontainers.community.rabbitmq import RabbitMqContainer

    container: Any = stack.enter_context(RabbitMqContainer("rabbitmq:3.13-management"))
    params = container.get_connection_params()
    return f"amqp://{container.username}:{container.password}@{params.host}:{params.port}/"


def container_database_url(stack: ExitStack) -> str:
    from testcontainers.community.postgres import PostgresContainer

    container: Any = stack.enter_context(PostgresContainer("postgres:15", driver="asyncpg"))
    return str(container.get_connection_url())
