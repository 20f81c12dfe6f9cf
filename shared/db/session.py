"""Async engine and sessions (SQLAlchemy 2 + asyncpg), plus waiting for the database."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.logging import get_logger
from shared.readiness import wait_until_ready

log = get_logger(__name__)


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    # No pre-ping: it costs a round trip on every checkout of every hot path. A
    # connection that died with the server fails its statement instead; the handlers
    # treat that as their own outage and requeue, and the pool discards the connection.
    return create_async_engine(
        url, pool_pre_ping=False, pool_size=pool_size, max_overflow=pool_size
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: attribute access after commit must not do implicit IO.
    return async_sessionmaker(engine, expire_on_commit=False)


async def wait_for_database(engine: AsyncEngine, *, timeout: float, service: str) -> None:
    """``SELECT 1`` until the database answers, up to ``timeout`` seconds."""

    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    await wait_until_ready(probe, what="database", service=service, timeout=timeout)


#: Anything that opens a session: an ``async_sessionmaker`` or a late-bound lambda.
SessionFactory = Callable[[], AsyncSession]
