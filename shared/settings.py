"""Settings from environment variables (pydantic-settings), shared by every service.

Every variable is prefixed ``ANIME_`` (``ANIME_AMQP_URL``, ``ANIME_DATABASE_URL`` …);
see ``.env.example`` for the full list with defaults.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration. Safe defaults point at a local development machine."""

    model_config = SettingsConfigDict(env_prefix="ANIME_", env_file=".env", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/anime"
    #: Topic exchange every event goes through; change it to run isolated pipelines
    #: (tests do) on one broker.
    exchange: str = "anime.events"
    #: Prefix of every queue name, for the same reason.
    queue_prefix: str = ""
    #: What a service declares at start-up. ``pipeline``: the exchanges and every queue
    #: (needs an account that may configure them all: local development as guest).
    #: ``own``: only its own queues, checking the exchanges exist (each service runs as
    #: its own least-privileged broker user after ``anime broker provision``).
    declare_topology: Literal["pipeline", "own"] = "pipeline"
    comfyui_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8188"]
    )
    asset_root: Path = REPO_ROOT / "var" / "assets"
    reference_root: Path = REPO_ROOT / "var" / "references"
    templates_dir: Path = REPO_ROOT / "templates"

    ingest_port: int = 8401
    renderer_port: int = 8402
    archiver_port: int = 8403
    notifier_port: int = 8404
    http_host: str = "127.0.0.1"
    #: Where renderers fetch reference images from (ingest's public address).
    public_ingest_url: str = "http://127.0.0.1:8401"

    #: Require API keys on HTTP/WebSocket endpoints. Only turn off on a closed network.
    require_api_keys: bool = True
    #: The key the CLI presents to the services (``ANIME_API_KEY``).
    api_key: str | None = None

    #: RabbitMQ management API for `anime queues` and the dashboard (default: the AMQP
    #: host on port 15672, credentials from the AMQP URL).
    management_url: str | None = None
    management_port: int = 15672

    #: How long a service waits for RabbitMQ/PostgreSQL at start-up before giving up.
    startup_timeout_seconds: float = 60.0
    log_level: str = "INFO"

    #: Renderer: redeliveries of one message before it is dead-lettered (poison cap).
    delivery_limit: int = 5
    #: Renderer: retry delays in seconds, one per attempt (tiers).
    retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0]
    )
    max_attempts: int = 4
    #: Renderer: prompts kept queued inside each ComfyUI backend at once.
    backend_slots: int = 2
    #: Renderer: how long a render waits on an unreachable backend before retrying elsewhere.
    backend_unreachable_grace: float = 60.0
    #: Renderer: execution-error exception types to retry (out-of-memory always is).
    transient_exception_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: ``/metrics`` requires ``Authorization: Bearer <this>`` when set; unset, it is open
    #: (for a scraper on a private network). See docs/operations.md.
    metrics_token: str | None = None
    #: Archiver: what this process does, ``ledger``, ``archive`` or both (the default).
    #: Run one process of each so that archiving never queues behind a ledger backlog.
    archiver_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ledger", "archive"]
    )
    #: Broker users trusted with the operator's rights besides ``ops``: cancel requests,
    #: redrives, dead-letter replays (shared/publishers.py). ``anime up`` and the
    #: end-to-end tests name the administrator that provisioned the run, so the CLI works
    #: as that account; production leaves it empty and the CLI runs as ``ops``.
    broker_operators: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Renderer: seconds between health probes of each ComfyUI backend (idle ones too,
    #: so readiness and ``anime_backend_up`` follow a backend going away and back).
    backend_probe_interval: float = Field(default=2.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str) -> str:
        # Operators paste plain libpq URLs; the services need the asyncpg dialect.
        for plain in ("postgresql://", "postgres://"):
            if value.startswith(plain):
                return "postgresql+asyncpg://" + value[len(plain) :]
        return value

    @field_validator("comfyui_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
        return value

    @field_validator(
        "transient_exception_types", "archiver_roles", "broker_operators", mode="before"
    )
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(v) for v in value.split(",") if v.strip()]
        return value

    def as_env(self) -> dict[str, str]:
        """These settings as ``ANIME_*`` environment variables (for child processes)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue  # unset stays unset (the string "None" would be a value)
            text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
            env[f"ANIME_{name.upper()}"] = text
        return env

    def sync_database_url(self) -> str:
        """The same database for libpq tools (psql, alembic offline)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
