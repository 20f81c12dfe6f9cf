"""Cancellation: skip a pending job, delete a queued prompt, interrupt only a running one.

Every renderer replica hears every ``job.cancel_requested`` (its own fan-out queue). A
job this replica is rendering is acted on at once on its backend; any other job is
remembered, so it is skipped when its turn comes. A replica started after the request
finds it in the ledger (``job_events``) before rendering.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict

from services.renderer.comfyui import ComfyError, PromptState
from services.renderer.pool import Backend
from shared.logging import get_logger

log = get_logger(__name__)

REMEMBERED = 100_000


@dataclasses.dataclass
class ActiveRender:
    backend: Backend
    prompt_id: str


class CancelRegistry:
    def __init__(self) -> None:
        self.requested: OrderedDict[uuid.UUID, str] = OrderedDict()
        self.active: dict[uuid.UUID, ActiveRender] = {}

    def is_requested(self, job_id: uuid.UUID) -> bool:
        return job_id in self.requested

    async def request(self, job_id: uuid.UUID, reason: str) -> None:
        self.requested[job_id] = reason
        while len(self.requested) > REMEMBERED:
            self.requested.popitem(last=False)
        active = self.active.get(job_id)
        if active is not None:
            await self.stop(job_id, active)

    async def started(self, job_id: uuid.UUID, backend: Backend, prompt_id: str) -> None:
        """Track a prompt now on a backend; act if its cancel already arrived."""
        active = ActiveRender(backend, prompt_id)
        self.active[job_id] = active
        if job_id in self.requested:
            await self.stop(job_id, active)

    def finished(self, job_id: uuid.UUID) -> None:
        self.active.pop(job_id, None)

    @staticmethod
    async def stop(job_id: uuid.UUID, active: ActiveRender) -> None:
        """Delete the prompt if it is still queued; interrupt it only if it is running.

        ``interrupt`` names the prompt, so ComfyUI ignores it if another prompt is the
        one running: nothing else on that backend is disturbed.
        """
        client = active.backend.client
        try:
            where = await client.delete_pending(active.prompt_id)
            if where.state is PromptState.RUNNING:
                await client.interrupt(active.prompt_id)
            log.info(
                "renderer.cancel", job_id=str(job_id), backend=active.backend.url, state=where.state
            )
        except ComfyError as exc:
            log.warning("renderer.cancel_failed", job_id=str(job_id), error=str(exc))
