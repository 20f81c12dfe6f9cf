"""PostgreSQL schema (SQLAlchemy 2 declarative). Migrations live in ``shared/db/migrations``.

Each table has exactly one writing service (see docs/architecture.md):

===================== ===========================================================
table                 written by
===================== ===========================================================
projects              ingest
character_*           ingest
api_keys              ingest (its admin HTTP API and ``anime keys``)
jobs                  ingest (one immutable row per request, accepted or rejected)
job_states            archiver (the job's lifecycle state machine)
job_events            archiver (the ledger)
assets                archiver
===================== ===========================================================
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(
        UUID(as_uuid=True),
        primary_key=True,
        default=uuid.uuid4,
        server_default=func.gen_random_uuid(),
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = _uuid_pk()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _created_at()


class CharacterDefinition(Base):
    """A character; its content lives in immutable, numbered versions."""

    __tablename__ = "character_definitions"
    __table_args__ = (
        # A name is unique within its project, and global characters (no project)
        # are unique among themselves; case-insensitively, as people type names.
        Index(
            "uq_character_definitions_scope_name",
            text("coalesce(project_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            text("lower(name)"),
            unique=True,
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="RESTRICT"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(120))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class CharacterVersion(Base):
    """One immutable version of a character's definition. A change is a new row."""

    __tablename__ = "character_versions"
    __table_args__ = (UniqueConstraint("character_id", "version"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    character_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("character_definitions.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _created_at()


class CharacterAttribute(Base):
    __tablename__ = "character_attributes"
    __table_args__ = (UniqueConstraint("character_id", "key"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    character_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("character_definitions.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(120))
    value: Mapped[str] = mapped_column(Text)


class CharacterReference(Base):
    """A reference image, stored content-addressed by its sha256."""

    __tablename__ = "character_references"
    __table_args__ = (UniqueConstraint("character_id", "sha256"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    character_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("character_definitions.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    mime: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(120))
    #: The first characters of the key, shown to people to tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    #: sha256 of the whole key; keys are long random tokens, so no slow hash is needed.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    #: Project slugs this key may see; NULL means all projects.
    projects: Mapped[list[str] | None] = mapped_column(ARRAY(String(64)), nullable=True)
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Job(Base):
    """One request, as ingest received and judged it; immutable but for ``verdict_published_at``.

    The primary key is the same UUID every event of the job carries.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_project_created", "project_slug", "created_at"),
        # Resubmitting the same request returns the same job, even under a race.
        UniqueConstraint("request_id", "request_hash"),
        # At most one accepted job per request id; a rejected request may be fixed and
        # resubmitted under the same id.
        Index(
            "uq_jobs_accepted_request_id",
            "request_id",
            unique=True,
            postgresql_where=text("verdict = 'accepted'"),
        ),
        Index("ix_jobs_character_version_ids", "character_version_ids", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    #: The client's idempotency key; NULL only when a rejected body had none usable.
    request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: sha256 of the canonical request body: same id + same hash = same request.
    request_hash: Mapped[str] = mapped_column(String(64))
    correlation_id: Mapped[str] = mapped_column(String(200))
    project_slug: Mapped[str] = mapped_column(String(200))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    episode: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scene: Mapped[str | None] = mapped_column(String(64), nullable=True)
    shot: Mapped[str | None] = mapped_column(String(64), nullable=True)
    template: Mapped[str | None] = mapped_column(String(120), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=5)
    #: "accepted" or "rejected": ingest's verdict (the lifecycle is in job_states).
    verdict: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    problems: Mapped[list[Any] | None] = mapped_column(JSONB, nullable=True)
    #: The exact character versions attached: [{character_id, name, version, version_id}].
    character_versions: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    character_version_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), default=list
    )
    submitted_via: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = _created_at()
    #: When the broker confirmed the verdict event; NULL if ingest stopped before that.
    #: The one column written after insert: a repeat of the request re-publishes the
    #: verdict only while this is NULL.
    verdict_published_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class JobState(Base):
    """Where a job is in its lifecycle; moved only forward by the archiver."""

    __tablename__ = "job_states"
    __table_args__ = (Index("ix_job_states_state_updated", "state", "updated_at"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16))
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    backend: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = _created_at()


#: The cycling ordinal behind POSITION_DEFAULT (created by migration 0003).
JOB_EVENTS_ORDINAL = Sequence(
    "job_events_ordinal", minvalue=0, maxvalue=65535, start=0, cycle=True, metadata=Base.metadata
)

#: A row's position when the writer does not give one: the transaction's id, then a
#: cycling ordinal (rows of one transaction stay in insert order unless it wraps).
POSITION_DEFAULT = (
    "(CAST(CAST(pg_current_xact_id() AS text) AS bigint) << 16) + nextval('job_events_ordinal')"
)


class JobEvent(Base):
    """The ledger: every event of every job, with a gap-free per-job sequence number."""

    __tablename__ = "job_events"
    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        # Project streams follow the ledger of one project in commit order (position).
        Index("ix_job_events_project_position", "project_slug", "position"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    event_type: Mapped[str] = mapped_column(String(32))
    project_slug: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = _created_at()
    #: The job's state after this event.
    state: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: Commit-ordered position for project streams: the recording transaction's id
    #: shifted left 16 bits, plus the row's ordinal in that transaction. A reader that
    #: only reads positions below the oldest running transaction's id never misses a
    #: row that commits later (see docs/progress.md, "Project streams").
    #: The archiver sets it explicitly; the default serves any other writer (tests, tools).
    position: Mapped[int] = mapped_column(BigInteger, server_default=text(POSITION_DEFAULT))


class Asset(Base):
    """One archived image file."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("job_id", "index"),
        Index("ix_assets_project_created", "project_slug", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"))
    index: Mapped[int] = mapped_column(Integer)
    project_slug: Mapped[str] = mapped_column(String(64))
    episode: Mapped[str] = mapped_column(String(64))
    scene: Mapped[str] = mapped_column(String(64))
    shot: Mapped[str] = mapped_column(String(64))
    #: Relative to the asset root.
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(40))
    characters: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    character_names: Mapped[list[str]] = mapped_column(ARRAY(String(120)), default=list)
    record: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()
