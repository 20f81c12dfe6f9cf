"""Simulator configuration and run statistics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfysim.faults import FaultSpec

#: Values accepted by ``--preview-method`` (as ComfyUI's LatentPreviewMethod).
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")


@dataclass
class SimConfig:
    """Everything that configures one simulator instance.

    ``render_seconds`` is the simulated execution time of one prompt's non-cached
    nodes: spread over the sampler steps (one ``progress`` tick each) when the
    prompt has a sampler, otherwise evenly over the executed nodes.
    """

    root: Path
    host: str = "127.0.0.1"
    port: int = 8188
    render_seconds: float = 0.0
    models: list[str] = field(default_factory=list)
    loras: list[str] = field(default_factory=list)
    preview_method: str = "none"
    cache: bool = True
    ws_delay_seconds: float = 0.0
    faults: list[FaultSpec] = field(default_factory=list)
    fault_seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The runtime-adjustable part, for ``GET /_sim/config``."""
        return {
            "root": str(self.root),
            "host": self.host,
            "port": self.port,
            "render_seconds": self.render_seconds,
            "models": list(self.models),
            "loras": list(self.loras),
            "preview_method": self.preview_method,
            "cache": self.cache,
            "ws_delay_seconds": self.ws_delay_seconds,
        }


@dataclass
class SimStats:
    """Utilisation counters (kept across simulated restarts)."""

    started_at: float = field(default_factory=time.monotonic)
    busy_seconds: float = 0.0
    prompts_run: int = 0
    prompts_succeeded: int = 0
    prompts_failed: int = 0
    prompts_interrupted: int = 0
    prompts_lost: int = 0
    restarts: int = 0
    running_prompt_id: str | None = None
    running_since: float | None = None

    def begin(self, prompt_id: str) -> None:
        """The worker started a prompt."""
        self.prompts_run += 1
        self.running_prompt_id = prompt_id
        self.running_since = time.monotonic()

    def end(self, outcome: str) -> None:
        """The worker finished (or lost) the running prompt."""
        if self.running_since is not None:
            self.busy_seconds += time.monotonic() - self.running_since
        self.running_since = None
        self.running_prompt_id = None
        if outcome == "success":
            self.prompts_succeeded += 1
        elif outcome == "interrupted":
            self.prompts_interrupted += 1
        elif outcome == "lost":
            self.prompts_lost += 1
        else:
            self.prompts_failed += 1

    def reset(self) -> None:
        """Zero the counters (``POST /_sim/stats/reset``); a running prompt keeps counting."""
        now = time.monotonic()
        self.started_at = now
        self.busy_seconds = 0.0
        self.prompts_run = self.prompts_succeeded = self.prompts_failed = 0
        self.prompts_interrupted = self.prompts_lost = self.restarts = 0
        if self.running_since is not None:
            self.running_since = now

    def snapshot(self, queue_remaining: int) -> dict[str, Any]:
        """JSON for ``GET /_sim/stats``."""
        now = time.monotonic()
        busy = self.busy_seconds
        if self.running_since is not None:
            busy += now - self.running_since
        uptime = max(0.0, now - self.started_at)
        return {
            "uptime_seconds": uptime,
            "busy_seconds": busy,
            "idle_seconds": max(0.0, uptime - busy),
            "utilization": (busy / uptime) if uptime > 0 else 0.0,
            "prompts_run": self.prompts_run,
            "prompts_succeeded": self.prompts_succeeded,
            "prompts_failed": self.prompts_failed,
            "prompts_interrupted": self.prompts_interrupted,
            "prompts_lost": self.prompts_lost,
            "restarts": self.restarts,
            "running_prompt_id": self.running_prompt_id,
            "queue_remaining": queue_remaining,
        }
