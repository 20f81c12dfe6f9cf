"""Prometheus metrics shared by every service (served on ``/metrics``)."""

from __future__ import annotations

import time
from typing import Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from prometheus_client import Counter, Gauge, Histogram

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
