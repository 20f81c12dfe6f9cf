"""A ledger entry on its way to watchers, rendered to JSON once for all of them."""

from __future__ import annotations

import json
import uuid

from shared.events import LedgerEntry

FINAL_STATES = frozenset({"completed", "failed", "cancelled", "rejected"})


class Note:
    """A :class:`LedgerEntry` plus its ledger row id (``cursor``) when known.

    Live copies from RabbitMQ carry no row id; entries read from PostgreSQL do.
    """

    __slots__ = ("_body", "cursor", "entry")

    def __init__(self, entry: LedgerEntry, cursor: int | None = None) -> None:
        self.entry = entry
        self.cursor = cursor
        self._body: str | None = None

    @property
    def job_id(self) -> uuid.UUID:
        return self.entry.job_id

    @property
    def seq(self) -> int:
        return self.entry.seq

    @property
    def project(self) -> str:
        return self.entry.project

    @property
    def final(self) -> bool:
        return self.entry.state in FINAL_STATES

    def body(self) -> str:
        """The entry as a JSON object (the SSE ``data:`` line and the WebSocket frame's tail)."""
        if self._body is None:
            e = self.entry
            document: dict[str, object] = {
                "seq": e.seq,
                "job_id": str(e.job_id),
                "project": e.project,
                "event_type": e.event_type.value,
                "state": e.state,
                "recorded_at": e.recorded_at.isoformat(),
            }
            if self.cursor is not None:
                document["cursor"] = self.cursor
            document["event"] = e.event
            self._body = json.dumps(document, separators=(",", ":"))
        return self._body

    def ws_frame(self, sub: str) -> str:
        """``{"type": "event", "sub": …, <body>}`` without re-serialising the body."""
        return '{"type":"event","sub":' + json.dumps(sub) + "," + self.body()[1:]

    def __repr__(self) -> str:
        return f"Note({self.job_id}:{self.seq}, cursor={self.cursor})"
