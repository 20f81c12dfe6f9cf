"""The notifier's own tuning knobs (``ANIME_NOTIFIER_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierOptions(BaseSettings):
    """How watchers are served. Defaults suit production; tests shrink them."""

    model_config = SettingsConfigDict(env_prefix="ANIME_NOTIFIER_", extra="ignore")

    #: Entries a watcher may have queued before it is overflowed (see docs/progress.md).
    watcher_buffer: int = Field(default=1000, ge=1)
    #: How long an overflowed watcher gets to take its notice before it is cut off.
    overflow_grace_seconds: float = Field(default=5.0, gt=0)
    #: SSE comment line interval; WebSocket pings at the same interval.
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    #: Project streams re-read the ledger at least this often (lost live copies).
    project_poll_seconds: float = Field(default=2.0, gt=0)
    #: Job streams compare with the ledger this often (lost trailing live copies).
    job_resync_seconds: float = Field(default=5.0, gt=0)
    #: The live feed stays bound this long after the last stream closed (live.py).
    live_linger_seconds: float = Field(default=30.0, ge=0)
