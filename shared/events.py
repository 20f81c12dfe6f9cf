"""The event contract: every message that crosses RabbitMQ, defined once.

Every event carries the same envelope (`event_id`, `event_type`, `schema_version`,
`occurred_at`, `job_id`, `correlation_id`, `producer`, `project`) and a typed payload.
Services import these models; no service defines an event of its own.

Routing keys are ``<event_type>.<project>``, for example ``job.accepted.night-city``.
A watcher binds by event type (``job.progress.*``), by project (``job.*.night-city``)
or to everything (``job.#``). Project slugs never contain dots, so the scheme is
unambiguous. See ``docs/events.md``.

After the archiver has written an event to the job ledger it republishes it as a
:class:`LedgerEntry` under ``ledger.<event_type>.<project>``, carrying the per-job
sequence number watchers use to resume without gaps or repeats.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

SCHEMA_VERSION = 1
#: Namespace for ids derived from other ids (event ids, ComfyUI prompt ids).
ID_NAMESPACE = uuid.UUID("6f1d2c1e-4c8e-4d5e-9b5e-2f4b1c7a9e01")

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_SLUG_RE = re.compile(SLUG_PATTERN)

#: The project a rejection is published (and recorded) under when the request named no
#: valid project: routing keys need a slug.
UNASSIGNED_PROJECT = "unassigned"

#: A project, episode, scene or shot segment: lowercase letters, digits and dashes.
Slug = Annotated[str, Field(pattern=SLUG_PATTERN, min_length=1, max_length=64)]


def is_slug(value: str) -> bool:
    """Tell whether ``value`` is a safe slug (lowercase letters, digits, inner dashes)."""
    return bool(_SLUG_RE.match(value))


def derived_id(*parts: object) -> uuid.UUID:
    """A UUID that is the same every time for the same parts (used for idempotency)."""
    return uuid.uuid5(ID_NAMESPACE, "/".join(str(p) for p in parts))


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventType(StrEnum):
    """Every event type on the bus; the value is the first part of the routing key."""

    SUBMITTED = "job.submitted"
    ACCEPTED = "job.accepted"
    REJECTED = "job.rejected"
    STARTED = "job.started"
    PROGRESS = "job.progress"
    RENDERED = "job.rendered"
    RETRYING = "job.retrying"
    FAILED = "job.failed"
    ARCHIVED = "job.archived"
    CANCEL_REQUESTED = "job.cancel_requested"
    CANCELLED = "job.cancelled"
    REDRIVEN = "job.redriven"


class Producer(StrEnum):
    INGEST = "ingest"
    RENDERER = "renderer"
    ARCHIVER = "archiver"
    NOTIFIER = "notifier"
    CLI = "cli"
    EXTERNAL = "external"


# --------------------------------------------------------------------------- payload parts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RenderParams(_Strict):
    """Sampling parameters of one shot. Limits are the ingest contract.

    Numbers are strict: ``true`` or ``"20"`` is a type error, not a quiet conversion.
    """

    seed: int | None = Field(default=None, ge=0, le=2**53, strict=True)
    steps: int = Field(default=20, ge=1, le=150, strict=True)
    cfg: float = Field(default=7.0, ge=0.0, le=30.0, strict=True)
    width: int = Field(default=512, ge=64, le=4096, multiple_of=8, strict=True)
    height: int = Field(default=512, ge=64, le=4096, multiple_of=8, strict=True)
    batch_size: int = Field(default=1, ge=1, le=8, strict=True)
    sampler: str = Field(default="euler", min_length=1, max_length=64)
    scheduler: str = Field(default="normal", min_length=1, max_length=64)
    checkpoint: str | None = Field(default=None, min_length=1, max_length=255)


class CharacterRef(_Strict):
    """How a request names a character: by name or id, optionally pinned to a version."""

    name: str | None = Field(default=None, min_length=1, max_length=120)
    id: uuid.UUID | None = None
    version: int | None = Field(default=None, ge=1, strict=True)

    @model_validator(mode="after")
    def _name_or_id(self) -> CharacterRef:
        if (self.name is None) == (self.id is None):
            raise ValueError("name a character by exactly one of 'name' or 'id'")
        return self

    def label(self) -> str:
        return self.name if self.name is not None else str(self.id)


class Lora(_Strict):
    name: str = Field(min_length=1, max_length=255)
    strength: float = Field(default=1.0, ge=-5.0, le=5.0)


class CharacterDefinition(BaseModel):
    """The immutable body of a character version."""

    model_config = ConfigDict(extra="allow", frozen=True)

    appearance: str = ""
    outfit: str = ""
    personality: str = ""
    prompt_fragments: list[str] = Field(default_factory=list)
    trigger_words: list[str] = Field(default_factory=list)
    negative_fragments: list[str] = Field(default_factory=list)
    lora: Lora | None = None
    default_seed: int | None = Field(default=None, ge=0, le=2**53)


class ReferenceImage(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["face", "full-body", "outfit", "expression"]
    weight: float = Field(default=1.0, ge=0.0, le=2.0)
    mime: str = "image/png"
    #: Where the bytes can be read over ingest's HTTP API, for people and tools. The
    #: renderer never fetches this URL: it reads ``/v1/references/<sha256>`` from its
    #: configured ingest and checks the sha256 (a URL in a message is only a claim).
    url: str


class CharacterSnapshot(_Strict):
    """A character exactly as it was attached to a job: reproducible forever."""

    character_id: uuid.UUID
    name: str
    version: int
    version_id: uuid.UUID
    definition: CharacterDefinition
    attributes: dict[str, str] = Field(default_factory=dict)
    references: list[ReferenceImage] = Field(default_factory=list)


class ShotLocation(_Strict):
    """Where a shot sits in a project. Missing segments are archived under defaults."""

    project: Slug
    episode: Slug | None = None
    scene: Slug | None = None
    shot: Slug | None = None


class JobSpec(_Strict):
    """Everything a renderer needs, resolved by ingest; travels unchanged downstream."""

    request_id: str
    location: ShotLocation
    template: str
    prompt: str
    negative_prompt: str
    #: The prompts after character fragments were combined (see docs/prompting.md).
    composed_prompt: str
    composed_negative: str
    params: RenderParams
    priority: int = Field(ge=0, le=9)
    characters: list[CharacterSnapshot]


class Problem(_Strict):
    """One reason a request was refused: which field, what is wrong, what would fit."""

    field: str
    message: str
    code: str = "invalid"
    suggestions: list[str] = Field(default_factory=list)


class FailureProblem(_Strict):
    """One thing wrong with a job that failed: where (node, input), what was given,
    what would have fitted, and what to do. ``message`` reads on its own."""

    message: str = Field(description="The whole problem as one readable line.")
    node: str | None = Field(default=None, description="The workflow node id.")
    node_class: str | None = Field(default=None, description="The node's class_type.")
    input: str | None = Field(default=None, description="The node input at fault.")
    value: Any = Field(default=None, description="The value the workflow gave that input.")
    allowed: list[Any] | None = Field(
        default=None,
        description="Values the backend accepts (at most the first 20; null: not a list).",
    )
    allowed_total: int | None = Field(
        default=None, description="How many values the backend accepts in all."
    )
    hint: str | None = Field(default=None, description="What to do about it.")


class OutputImage(_Strict):
    """An image as ComfyUI reports it: fetch with ``GET /view``."""

    filename: str
    subfolder: str = ""
    type: Literal["output", "temp", "input"] = "output"
    node_id: str = ""


class ArchivedAsset(_Strict):
    path: str
    sha256: str
    width: int
    height: int
    bytes: int
    mime: str = "image/png"
    index: int


# --------------------------------------------------------------------------- events


class Event(BaseModel):
    """The envelope every event shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: EventType

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=utcnow)
    job_id: uuid.UUID
    correlation_id: str = Field(min_length=1, max_length=200)
    producer: Producer
    project: Slug

    def routing_key(self) -> str:
        return routing_key(self.event_type, self.project)

    def envelope(self, producer: Producer) -> dict[str, Any]:
        """The envelope a follow-up event of the same job copies (same job, project, trace)."""
        return {
            "job_id": self.job_id,
            "correlation_id": self.correlation_id,
            "producer": producer,
            "project": self.project,
        }

    def headers(self) -> dict[str, Any]:
        """AMQP headers: lets consumers bind log context before decoding the body."""
        return {
            "job_id": str(self.job_id),
            "event_type": self.event_type.value,
            "event_id": str(self.event_id),
            "project": self.project,
            "schema_version": str(self.schema_version),
        }


def routing_key(event_type: EventType | str, project: str) -> str:
    return f"{EventType(event_type).value}.{project}"


class ShotRequest(BaseModel):
    """What a client asks for: the same fields through both doors of ingest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    project: Slug
    episode: Slug | None = None
    scene: Slug | None = None
    shot: Slug | None = None
    characters: list[CharacterRef] = Field(min_length=1, max_length=8)
    prompt: str = Field(default="", max_length=4000)
    negative_prompt: str = Field(default="", max_length=4000)
    template: str = Field(default="txt2img", min_length=1, max_length=120)
    params: RenderParams = Field(default_factory=RenderParams)
    priority: int = Field(default=5, ge=0, le=9, strict=True)


#: The fields of ShotRequest that identify a request's content (for idempotency).
SHOT_REQUEST_FIELDS = frozenset(ShotRequest.model_fields)


class JobSubmitted(Event, ShotRequest):
    """A request for a shot, published by another system (the AMQP door of ingest).

    ``job_id`` (required) is chosen by the submitter so it can watch the job at once:
    every answer is published under it, and a message without a usable one is refused
    (parked in ingest's dead-letter queue). ``request_id`` is the idempotency key: the
    same request under another ``job_id`` is rejected on that id (``duplicate_request``,
    naming the job that holds it). Ingest validates the raw body itself so it can report
    every problem in one rejection.
    """

    event_type: Literal[EventType.SUBMITTED] = EventType.SUBMITTED
    producer: Producer = Producer.EXTERNAL


class JobAccepted(Event):
    """Ingest validated the request and attached the characters' versions."""

    event_type: Literal[EventType.ACCEPTED] = EventType.ACCEPTED
    spec: JobSpec


class JobRejected(Event):
    """The request cannot become a job; every problem is listed."""

    event_type: Literal[EventType.REJECTED] = EventType.REJECTED
    request_id: str | None = None
    problems: list[Problem] = Field(min_length=1)


class JobStarted(Event):
    event_type: Literal[EventType.STARTED] = EventType.STARTED
    backend: str
    prompt_id: str
    attempt: int = Field(ge=1)


class JobProgress(Event):
    event_type: Literal[EventType.PROGRESS] = EventType.PROGRESS
    attempt: int = Field(ge=1)
    #: Monotonic per job and attempt; watchers drop anything not newer.
    seq: int = Field(ge=1)
    percent: float = Field(ge=0.0, le=100.0)
    node: str | None = None
    value: int | None = None
    max: int | None = None


class JobRendered(Event):
    """ComfyUI finished; the images wait on ``backend`` to be fetched by the archiver."""

    event_type: Literal[EventType.RENDERED] = EventType.RENDERED
    spec: JobSpec
    backend: str
    prompt_id: str
    attempt: int = Field(ge=1)
    outputs: list[OutputImage] = Field(min_length=1)
    #: The API-format workflow actually run (written into the PNGs).
    workflow: dict[str, Any]
    render_seconds: float = Field(ge=0.0)


class JobRetrying(Event):
    event_type: Literal[EventType.RETRYING] = EventType.RETRYING
    attempt: int = Field(ge=1, description="The attempt that failed.")
    next_attempt: int = Field(ge=2)
    delay_seconds: float = Field(ge=0.0)
    reason: str
    backend: str | None = None


class JobFailed(Event):
    event_type: Literal[EventType.FAILED] = EventType.FAILED
    reason: str
    error_kind: str
    attempt: int = Field(ge=0)
    #: ComfyUI's node errors in readable form, one line each.
    details: list[str] = Field(default_factory=list)
    #: The same problems, structured (node, input, value, allowed values, hint).
    problems: list[FailureProblem] = Field(default_factory=list)


class JobArchived(Event):
    event_type: Literal[EventType.ARCHIVED] = EventType.ARCHIVED
    assets: list[ArchivedAsset] = Field(min_length=1)


class JobCancelRequested(Event):
    event_type: Literal[EventType.CANCEL_REQUESTED] = EventType.CANCEL_REQUESTED
    reason: str = "requested"


class JobCancelled(Event):
    event_type: Literal[EventType.CANCELLED] = EventType.CANCELLED
    reason: str = "requested"
    stage: Literal["pending", "queued", "running"] = "pending"


class JobRedriven(Event):
    """An operator replayed a failed job from the dead-letter queue.

    The job gets a fresh set of attempts, numbered after the last one
    (``first_attempt``), so its prompt ids and event ids never collide with the run
    that failed.
    """

    event_type: Literal[EventType.REDRIVEN] = EventType.REDRIVEN
    first_attempt: int = Field(ge=1)
    reason: str = "replayed from the dead-letter queue"


JobEvent = Annotated[
    JobSubmitted
    | JobAccepted
    | JobRejected
    | JobStarted
    | JobProgress
    | JobRendered
    | JobRetrying
    | JobFailed
    | JobArchived
    | JobCancelRequested
    | JobCancelled
    | JobRedriven,
    Field(discriminator="event_type"),
]

EVENT_MODELS: dict[EventType, type[Event]] = {
    m.model_fields["event_type"].default: m
    for m in (
        JobSubmitted,
        JobAccepted,
        JobRejected,
        JobStarted,
        JobProgress,
        JobRendered,
        JobRetrying,
        JobFailed,
        JobArchived,
        JobCancelRequested,
        JobCancelled,
        JobRedriven,
    )
}

job_event_adapter: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def parse_event(raw: bytes | str) -> Event:
    """Parse any job event from JSON, picking the model from ``event_type``."""
    return job_event_adapter.validate_json(raw)


class LedgerEntry(BaseModel):
    """An event as recorded in the job ledger, with its per-job sequence number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1)
    job_id: uuid.UUID
    project: Slug
    event_type: EventType
    recorded_at: datetime
    #: The job's state after this event (see docs/architecture.md, "job states").
    state: str
    event: dict[str, Any]

    @field_validator("event")
    @classmethod
    def _event_has_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "event_type" not in value:
            raise ValueError("ledger event must carry event_type")
        return value

    def routing_key(self) -> str:
        return f"ledger.{self.event_type.value}.{self.project}"
