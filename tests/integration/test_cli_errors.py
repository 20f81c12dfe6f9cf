"""One-line errors naming the service and its URL, password masked (issue 12, item 6)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shared.settings import Settings
from tests.integration.test_cli_dlq import cli

pytestmark = pytest.mark.integration


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def with_password(url: str, password: str, database: str | None = None) -> str:
    parsed = make_url(url).set(password=password)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def test_a_missing_database_is_one_line_naming_it_with_exit_3(
    pipeline_settings: Settings,
) -> None:
    url = with_password(pipeline_settings.database_url, "s3cret", f"missing_{uuid.uuid4().hex}")
    for args in (("jobs", "list"), ("projects",), ("jobs", "show", "3f2a")):
        result = await cli(pipeline_settings, *args, env={"ANIME_DATABASE_URL": url})
        assert result.exit_code == 3, (args, result.stderr)
        line = one_line(result.stderr)
        assert str(make_url(url).database) in line and "anime migrate" in line
        assert "s3cret" not in line and "***" in line


async def test_an_unmigrated_database_says_to_migrate(pipeline_settings: Settings) -> None:
    name = f"empty_{uuid.uuid4().hex}"
    admin = make_url(pipeline_settings.database_url).set(
        drivername="postgresql", database="postgres"
    )
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        url = make_url(pipeline_settings.database_url).set(database=name)
        result = await cli(
            pipeline_settings,
            "jobs",
            "list",
            env={"ANIME_DATABASE_URL": url.render_as_string(hide_password=False)},
        )
        assert result.exit_code == 3, result.stderr
        line = one_line(result.stderr)
        assert name in line and "anime migrate" in line
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.close()


async def test_a_closed_amqp_port_is_one_line_naming_the_url(pipeline_settings: Settings) -> None:
    url = "amqp://guest:s3cret@127.0.0.1:1/"
    result = await cli(
        pipeline_settings, "submit", "-c", "Kai Nakamura", env={"ANIME_AMQP_URL": url}
    )
    assert result.exit_code == 3, result.stderr
    line = one_line(result.stderr)  # no library log line before it
    assert "RabbitMQ" in line and "127.0.0.1:1" in line
    assert "s3cret" not in line and "***" in line


async def test_an_amqp_url_without_scheme_is_bad_usage(pipeline_settings: Settings) -> None:
    result = await cli(
        pipeline_settings, "submit", "-c", "Kai Nakamura", env={"ANIME_AMQP_URL": "localhost:5672"}
    )
    assert result.exit_code == 2, result.stderr
    line = one_line(result.stderr)
    assert "ANIME_AMQP_URL=localhost:5672" in line and "amqp://" in line
    assert "Connection.Close" not in line
