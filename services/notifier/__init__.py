"""Notifier: relays the job ledger to watchers (WebSocket, SSE) without gaps or repeats."""

SERVICE = "notifier"
