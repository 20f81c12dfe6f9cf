"""PostgreSQL advisory locks the archiver takes, keyed by a stable 64-bit hash."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


def lock_key(*parts: object) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock``; the same for the same parts."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def hold(session: AsyncSession, *parts: object) -> None:
    """Take a transaction-scoped advisory lock: released by commit, rollback or crash."""
    await session.execute(select(func.pg_advisory_xact_lock(lock_key(*parts))))
