"""Prometheus metrics shared by every service (served on ``/metrics``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from prometheus_client import Counter, Gauge, Histogram

from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.settings import Settings

log = get_logger(__name__)

MESSAGES_CONSUMED = Counter(
    "anime_messages_consumed_total",
    "Messages handled, by queue, event type and outcome (ok, error).",
    ["service", "event_type", "outcome"],
)
MESSAGES_PUBLISHED = Counter(
    "anime_messages_published_total", "Events published, by event type.", ["service", "event_type"]
)
DEAD_LETTERED = Counter(
    "anime_dead_lettered_total",
    "Messages parked in a dead-letter queue, by reason.",
    ["service", "reason"],
)
HANDLER_SECONDS = Histogram(
    "anime_handler_seconds",
    "Time spent handling one message.",
    ["service", "event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
QUEUE_DEPTH = Gauge("anime_queue_messages_ready", "Ready messages per queue.", ["queue"])
QUEUE_CONSUMERS = Gauge("anime_queue_consumers", "Consumers per queue.", ["queue"])


def make_metrics_middleware(service: str) -> type[BaseMiddleware]:
    """A broker middleware counting and timing every consumed message for ``service``."""

    class MetricsMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
            event_type = str((msg.headers or {}).get("event_type", "unknown"))
            started = time.perf_counter()
            try:
                result = await call_next(msg)
            except Exception:
                MESSAGES_CONSUMED.labels(service, event_type, "error").inc()
                raise
            finally:
                HANDLER_SECONDS.labels(service, event_type).observe(time.perf_counter() - started)
            MESSAGES_CONSUMED.labels(service, event_type, "ok").inc()
            return result

    return MetricsMiddleware


PUBLISH_ERRORS = Counter(
    "anime_publish_errors_total",
    "Events whose publish failed (not confirmed, unroutable, broker away), by event type.",
    ["service", "event_type"],
)
RETRIES = Counter(
    "anime_retries_total",
    "Attempts sent to a retry queue (a job.retrying was published).",
    ["service"],
)
RENDER_SECONDS = Histogram(
    "anime_render_seconds",
    "Wall time of one successful render attempt on a ComfyUI backend.",
    ["backend"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800),
)
BACKEND_BUSY = Gauge(
    "anime_backend_busy", "1 while a ComfyUI backend has prompts in flight, else 0.", ["backend"]
)
BACKEND_UP = Gauge(
    "anime_backend_up", "1 while a ComfyUI backend answers its health probe, else 0.", ["backend"]
)
QUEUE_POLLS = Counter(
    "anime_queue_polls_total",
    "Queue depth polls by outcome (ok, error).",
    ["service", "outcome"],
)


def record_published(event_type: str, producer: str) -> None:
    """Count one confirmed publish (called by ``EventBus.publish``)."""
    MESSAGES_PUBLISHED.labels(producer, event_type).inc()
    if event_type == "job.retrying":
        RETRIES.labels(producer).inc()


def record_publish_error(event_type: str, producer: str) -> None:
    PUBLISH_ERRORS.labels(producer, event_type).inc()


class QueueDepthPoller:
    """Sets ``anime_queue_messages_ready`` and ``anime_queue_consumers`` for every queue
    of the pipeline, by passive declares every ``interval`` seconds.

    It has a connection of its own (opened lazily, reopened after a failure), so a broker
    outage or a missing queue never disturbs the service's consumers and publishers.
    """

    def __init__(self, settings: Settings, *, service: str, interval: float = 5.0) -> None:
        self.settings = settings
        self.service = service
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        self._stopping = asyncio.Event()
        #: Set after each completed poll (tests wait on it).
        self.polled = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"{self.service}.queue-poller")

    async def stop(self) -> None:
        # A flag as well as the cancel: aiormq can turn a cancellation that lands inside
        # a passive declare into an ordinary exception, which the loop would survive.
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=5.0)
            self._task = None
        await self._close()

    async def poll_once(self) -> dict[str, tuple[int, int] | None]:
        from shared.queues import connect, passive_queue_stats, pipeline_queues

        if self._connection is None or self._connection.is_closed:
            self._connection = await connect(self.settings)
        names = [q.name for q in pipeline_queues(self.settings)]
        found = await passive_queue_stats(self._connection, names)
        for name, stats in found.items():
            if stats is None:
                with contextlib.suppress(KeyError):
                    QUEUE_DEPTH.remove(name)
                with contextlib.suppress(KeyError):
                    QUEUE_CONSUMERS.remove(name)
                continue
            QUEUE_DEPTH.labels(name).set(stats[0])
            QUEUE_CONSUMERS.labels(name).set(stats[1])
        return found

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll_once()
                QUEUE_POLLS.labels(self.service, "ok").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                QUEUE_POLLS.labels(self.service, "error").inc()
                log.warning("metrics.queue_poll_failed", service=self.service, error=str(exc))
                await self._close()
            self.polled.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
