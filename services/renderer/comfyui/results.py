"""What the client's public methods return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.events import OutputImage

from .models import HistoryEntry, QueueItem


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The server queued the prompt with every output intact."""

    prompt_id: str
    #: Queue priority the server assigned (a float when the caller gave one).
    number: float
    #: The websocket clientId the prompt was submitted under.
    client_id: str


@dataclass(frozen=True, slots=True)
class RunResult:
    """A prompt that finished successfully, as recorded in the server's history."""

    prompt_id: str
    #: Every image the run produced (``node_id`` set), ordered by node, then batch.
    outputs: list[OutputImage]
    #: Nodes that actually ran, in execution order when seen live, else by id.
    executed_nodes: list[str]
    #: Nodes the server served from its cache instead of running.
    cached_nodes: list[str]
    #: ``history.status.status_str`` (``"success"``).
    status: str
    #: Server timestamps (``execution_start`` / ``execution_success``), UTC.
    started_at: datetime | None
    finished_at: datetime | None
    #: The queue number the prompt ran with.
    number: float
    #: The workflow as the server ran it (history ``prompt[2]``).
    workflow: dict[str, Any] = field(default_factory=dict)

    @property
    def render_seconds(self) -> float | None:
        """Server-side duration, from the server's own timestamps (not arrival times,
        which lag by up to several hundred ms)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


class PromptState(StrEnum):
    """Where a prompt is on the server."""

    #: Waiting in the queue.
    PENDING = "pending"
    #: Being executed now.
    RUNNING = "running"
    #: Done (success, error or interrupt): the history entry says which.
    FINISHED = "finished"
    #: Neither queued nor in history: never submitted, deleted, evicted, or lost
    #: in a server restart.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PromptLocation:
    """Result of :meth:`ComfyUIClient.locate`."""

    prompt_id: str
    state: PromptState
    #: 0-based place in *run order* among pending prompts (pending only).
    position: int | None = None
    #: The queue record (pending/running only).
    queue_item: QueueItem | None = None
    #: The history entry (finished only).
    history: HistoryEntry | None = None
