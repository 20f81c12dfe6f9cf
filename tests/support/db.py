"""A database of our own per test run, created on the given server and dropped after."""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.engine import make_url


def _dsn(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def create_database(server_url: str) -> str:
    """Create ``anime_test_<random>`` on the server of ``server_url``; return its asyncpg URL."""
    name = f"anime_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_dsn(server_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return (
        make_url(server_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


async def drop_database(url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(_dsn(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
