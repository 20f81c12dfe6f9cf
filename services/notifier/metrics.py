"""Prometheus metrics of the notifier (served on ``/metrics`` with everything else)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

WS_WATCHERS = Gauge("anime_ws_watchers", "WebSocket watchers connected to this notifier.")
SSE_WATCHERS = Gauge("anime_sse_watchers", "SSE watchers connected to this notifier.")
OVERFLOWS = Counter(
    "anime_watcher_overflows_total",
    "Watchers disconnected because their buffer filled, by transport.",
    ["transport"],
)
FRAMES_SENT = Counter(
    "anime_watcher_frames_total", "Ledger entries sent to watchers, by transport.", ["transport"]
)
GAP_FILLS = Counter(
    "anime_ledger_gap_fills_total",
    "Times a job stream read missed entries from the ledger (a live copy was late or lost).",
)

GAUGES = {"ws": WS_WATCHERS, "sse": SSE_WATCHERS}
