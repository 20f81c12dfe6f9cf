"""Waiting for a dependency at start-up: bounded, with a capped backoff and a log line per try."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from shared.logging import get_logger

log = get_logger(__name__)


async def wait_until_ready(
    probe: Callable[[], Awaitable[object]], *, what: str, service: str, timeout: float
) -> None:
    """Call ``probe`` until it does not raise; give up (re-raising) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            await probe()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error(f"{what}.unreachable", service=service, attempts=attempt, error=str(exc))
                raise
            log.warning(
                f"{what}.waiting", service=service, attempt=attempt, error=str(exc), retry_in=delay
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)
        else:
            log.info(f"{what}.connected", service=service, attempt=attempt)
            return
