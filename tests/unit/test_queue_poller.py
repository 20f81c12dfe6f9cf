"""The queue-depth poller stops promptly even when a poll swallows its cancellation."""

import asyncio

from shared.metrics import QueueDepthPoller
from shared.settings import Settings


async def test_stop_returns_even_if_a_poll_turns_cancellation_into_an_error() -> None:
    poller = QueueDepthPoller(Settings(), service="t", interval=0.01)
    polls = 0

    async def stubborn_poll() -> dict[str, tuple[int, int] | None]:
        nonlocal polls
        polls += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            # What aiormq does when a cancel lands inside a passive declare.
            raise RuntimeError("channel closed") from None
        return {}

    poller.poll_once = stubborn_poll  # type: ignore[method-assign]
    await poller.start()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(poller.stop(), timeout=6)
    assert polls == 1
