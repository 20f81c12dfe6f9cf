"""Async engine and sessions (SQLAlchemy 2 + asyncpg), plus waiting for the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.logging import get_logger

log = get_logger(__name__)


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: attribute access after commit must not do implicit IO.
    return async_sessionmaker(engine, expire_on_commit=False)


async def wait_for_database(engine: AsyncEngine, *, timeout: float, service: str) -> None:
    """``SELECT 1`` with a capped backoff and a log line per try, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            log.info("database.connected", service=service, attempt=attempt)
            return
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("database.unreachable", service=service, attempts=attempt, error=str(exc))
                raise
            log.warning(
                "database.waiting", service=service, attempt=attempt, error=str(exc), retry_in=delay
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)


#: Anything that opens a session: an ``async_sessionmaker`` or a late-bound lambda.
SessionFactory = Callable[[], AsyncSession]
