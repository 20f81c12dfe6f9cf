"""The backend pool hands freed slots to the most urgent waiting job."""

from __future__ import annotations

import asyncio
from typing import Any

from services.renderer.pool import Backend, BackendPool


def pool_with(*slots: int) -> BackendPool:
    pool = BackendPool([], session=lambda: None, slots=1)  # type: ignore[arg-type, return-value]
    pool.backends = [Backend(f"http://b{i}", client=Any, slots=n) for i, n in enumerate(slots)]  # type: ignore[arg-type]
    for backend in pool.backends:
        backend.healthy = True
    return pool


async def test_a_freed_slot_goes_to_the_highest_priority_waiter() -> None:
    pool = pool_with(1)
    holder = await pool.acquire(priority=5)
    order: list[int] = []

    async def job(priority: int) -> None:
        backend = await pool.acquire(priority=priority)
        order.append(priority)
        await pool.release(backend)

    waiters = [asyncio.create_task(job(p)) for p in (0, 1, 9, 0, 7)]
    await asyncio.sleep(0.01)
    await pool.release(holder)
    await asyncio.gather(*waiters)
    assert order == [9, 7, 1, 0, 0]


async def test_the_least_loaded_backend_is_chosen_and_a_failed_one_avoided() -> None:
    pool = pool_with(2, 2)
    first = await pool.acquire()
    second = await pool.acquire()
    assert first is not second
    third = await pool.acquire(avoid=[first.url])
    assert third is second


async def test_an_avoided_backend_is_still_used_when_it_is_the_only_one() -> None:
    pool = pool_with(1)
    backend = await pool.acquire(avoid=["http://b0"])
    assert backend.url == "http://b0"


async def test_a_backend_marked_down_gets_no_new_work() -> None:
    pool = pool_with(1, 1)
    down = await pool.acquire()
    await pool.release(down, failed=True, error="refused")
    other = await pool.acquire()
    assert other is not down and not down.healthy
