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
RELAYS_DROPPED = Counter(
    "anime_ledger_relays_dropped_total",
    "Live ledger entries not relayed: not_in_ledger (no such row: forged or foreign), "
    "disagrees (the row's project, event id, type or state differ), unverified (the "
    "ledger could not be read; job streams catch up at the next resync), backlog.",
    ["reason"],
)
