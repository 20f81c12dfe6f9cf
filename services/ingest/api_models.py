"""Request and response bodies of ingest's HTTP API (also the OpenAPI schemas).

Inputs forbid unknown fields and refuse text PostgreSQL cannot hold. A character
definition is validated by :class:`shared.events.CharacterDefinition` (the contract)
*and* by :class:`DefinitionIn`, which adds limits a human-written definition never
needs to exceed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.ingest.characters import MAX_VERSION
from services.ingest.hygiene import is_clean
from shared.events import CharacterDefinition, FailureProblem, Lora, Problem, ShotRequest, Slug


def _single_line(value: str) -> str:
    if not is_clean(value):
        raise ValueError("must be one line without control characters")
    return value


def _multi_line(value: str) -> str:
    if not is_clean(value, multiline=True):
        raise ValueError("must not contain NUL or control characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


Line = Annotated[str, AfterValidator(_single_line)]
Text = Annotated[str, AfterValidator(_multi_line)]
Name = Annotated[
    str,
    Field(min_length=1, max_length=120),
    AfterValidator(_single_line),
    AfterValidator(_not_blank),
]
Fragment = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_single_line)]
TriggerWord = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[^,]+$"), AfterValidator(_single_line)
]
AttributeKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,119}$")]
AttributeValue = Annotated[str, Field(max_length=2000), AfterValidator(_multi_line)]
Note = Annotated[str, Field(max_length=1000), AfterValidator(_multi_line)]
ReferenceKind = Literal["face", "full-body", "outfit", "expression"]
JobStatus = Literal[
    "submitted",
    "accepted",
    "rejected",
    "rendering",
    "retrying",
    "rendered",
    "completed",
    "failed",
    "cancelled",
]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "rejected"})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- errors


class ErrorBody(_Out):
    """Every error answer: one entry per problem, each naming its field."""

    errors: list[Problem] = Field(min_length=1)
    job_id: uuid.UUID | None = None


# --------------------------------------------------------------------------- projects


class ProjectIn(_In):
    slug: Slug = Field(description="Lowercase letters, digits and inner dashes; 1-64 characters.")
    name: Name
    description: Annotated[str, Field(max_length=4000), AfterValidator(_multi_line)] = ""


class ProjectOut(_Out):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    created_at: datetime


class ProjectList(_Out):
    items: list[ProjectOut]


# --------------------------------------------------------------------------- characters


class DefinitionIn(CharacterDefinition):
    """A version's definition, as people write it (the contract plus limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    appearance: Annotated[str, Field(max_length=2000), AfterValidator(_multi_line)] = ""
    outfit: Annotated[str, Field(max_length=2000), AfterValidator(_multi_line)] = ""
    personality: Annotated[str, Field(max_length=2000), AfterValidator(_multi_line)] = ""
    prompt_fragments: list[Fragment] = Field(default_factory=list, max_length=50)
    trigger_words: list[TriggerWord] = Field(default_factory=list, max_length=20)
    negative_fragments: list[Fragment] = Field(default_factory=list, max_length=50)
    lora: Lora | None = None
    default_seed: int | None = Field(default=None, ge=0, le=2**53)


class CharacterIn(_In):
    name: Name
    #: The project the character belongs to; omit (or null) for a global character.
    project: Slug | None = None
    definition: DefinitionIn
    attributes: dict[AttributeKey, AttributeValue] = Field(default_factory=dict, max_length=100)
    note: Note = ""


class VersionIn(_In):
    definition: DefinitionIn
    note: Note = ""


class CurrentVersionIn(_In):
    version: int = Field(ge=1, le=MAX_VERSION)


class AttributesIn(_In):
    attributes: dict[AttributeKey, AttributeValue] = Field(max_length=100)


class AttributeValueIn(_In):
    value: AttributeValue


class AttributeIn(AttributeValueIn):
    key: AttributeKey


class ReferenceIn(_In):
    kind: ReferenceKind = "face"
    weight: float = Field(default=1.0, ge=0.0, le=2.0)


class VersionOut(_Out):
    id: uuid.UUID
    version: int
    current: bool
    definition: dict[str, Any]
    note: str
    created_at: datetime


class ReferenceOut(_Out):
    sha256: str
    kind: ReferenceKind
    weight: float
    mime: str
    width: int
    height: int
    bytes: int
    url: str
    created_at: datetime


class CharacterSummary(_Out):
    id: uuid.UUID
    name: str
    project: str | None
    current_version: int
    created_at: datetime
    updated_at: datetime


class CharacterOut(CharacterSummary):
    versions: list[VersionOut]
    attributes: dict[str, str]
    references: list[ReferenceOut]


class CharacterList(_Out):
    items: list[CharacterSummary]
    next_cursor: str | None = None


class AttributesOut(_Out):
    attributes: dict[str, str]


class CharacterListQuery(_In):
    project: Slug | None = Field(
        default=None, description="Only this project's and global characters."
    )
    q: Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_single_line)] | None = (
        Field(default=None, description="Case-insensitive part of the name.")
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: Annotated[str, Field(max_length=500)] | None = None


# --------------------------------------------------------------------------- jobs


class SubmitRequest(ShotRequest):
    """``POST /v1/jobs``: a shot request (the same fields as a ``job.submitted`` event)."""


class JobCreated(_Out):
    job_id: uuid.UUID
    state: Literal["accepted"] = "accepted"
    correlation_id: str


class LedgerLine(_Out):
    seq: int
    event_type: str
    state: str
    occurred_at: datetime


class AssetOut(_Out):
    index: int
    path: str
    sha256: str
    width: int
    height: int
    bytes: int
    mime: str


class CharacterVersionUsed(_Out):
    character_id: uuid.UUID
    name: str
    version: int
    version_id: uuid.UUID


class JobSummary(_Out):
    job_id: uuid.UUID
    request_id: str | None
    project: str
    episode: str | None
    scene: str | None
    shot: str | None
    template: str | None
    priority: int
    verdict: Literal["accepted", "rejected"]
    state: str
    character_versions: list[CharacterVersionUsed]
    created_at: datetime
    updated_at: datetime


class JobFailure(_Out):
    """Why a failed job failed: its ``job.failed`` event, unabridged."""

    reason: str
    error_kind: str
    attempt: int
    problems: list[FailureProblem] = Field(
        default_factory=list,
        description="What failed, where (node, input), what was expected, what to do.",
    )
    details: list[str] = Field(default_factory=list, description="The problems as lines.")


class JobDocument(JobSummary):
    progress: float
    attempt: int
    reason: str | None
    problems: list[Problem] = Field(description="Why the request was rejected (verdict).")
    failure: JobFailure | None = Field(
        default=None,
        description="Why the render failed: set while the job is failed (its job.failed).",
    )
    events: list[LedgerLine]
    assets: list[AssetOut]


class JobList(_Out):
    items: list[JobSummary]
    next_cursor: str | None = None


class JobListQuery(_In):
    project: Slug | None = None
    status: JobStatus | None = Field(default=None, description="The job's lifecycle state.")
    character: (
        Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_single_line)] | None
    ) = Field(
        default=None, description="A character's name or id: jobs that used any of its versions."
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: Annotated[str, Field(max_length=500)] | None = None
    order: Literal["asc", "desc"] = Field(default="asc", description="By created_at, then id.")


class CancelIn(_In):
    reason: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_single_line)] = (
        "requested"
    )


class CancelAccepted(_Out):
    job_id: uuid.UUID
    state: Literal["cancel_requested"] = "cancel_requested"
    event_id: uuid.UUID
