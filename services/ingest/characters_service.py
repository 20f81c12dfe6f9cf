"""Managing characters: definitions, immutable numbered versions, attributes, references.

A character's content lives in versions; a change is always a new version row, never
an update. Creating a version makes it current; the current pointer may be moved back
to any existing version. Attributes (key → value) and reference images belong to the
character itself. Used by the HTTP API and by ``anime characters``; every function
runs inside the caller's transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.api_models import (
    CharacterIn,
    CharacterOut,
    CharacterSummary,
    DefinitionIn,
    ReferenceIn,
    ReferenceOut,
    VersionOut,
)
from services.ingest.characters import ReferenceUrl, suggest_names, visible_to
from services.ingest.errors import Conflict, Invalid, NotFound
from services.ingest.images import CheckedImage
from services.ingest.projects_service import project_for_write
from services.ingest.references import ReferenceStore
from shared.db.models import (
    CharacterAttribute,
    CharacterDefinition,
    CharacterReference,
    CharacterVersion,
    Project,
)
from shared.events import CharacterDefinition as ContractDefinition


@dataclasses.dataclass(frozen=True)
class Located:
    """A character and the slug of its project (None for a global character)."""

    character: CharacterDefinition
    project: str | None


def definition_json(definition: DefinitionIn) -> dict[str, object]:
    """The stored form; checked against the event contract's model as well."""
    data = definition.model_dump(mode="json")
    ContractDefinition.model_validate(data)
    return data


# --------------------------------------------------------------------------- finding


async def locate(session: AsyncSession, character_id: uuid.UUID, *, lock: bool = False) -> Located:
    query = (
        select(CharacterDefinition, Project.slug)
        .outerjoin(Project, Project.id == CharacterDefinition.project_id)
        .where(CharacterDefinition.id == character_id)
    )
    if lock:
        query = query.with_for_update(of=CharacterDefinition)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no character {character_id}", field="character_id")
    return Located(row[0], row[1])


async def locate_by_name_or_id(
    session: AsyncSession, name_or_id: str, *, project: str | None = None
) -> Located:
    """A character by id, or by name (case-insensitive) as seen from ``project``.

    A project's own character wins over a global one of the same name.
    """
    try:
        return await locate(session, uuid.UUID(name_or_id))
    except ValueError:
        pass
    project_id = None
    if project is not None:
        project_id = (await project_for_write(session, project)).id
    query = (
        select(CharacterDefinition.id)
        .where(
            visible_to(project_id),
            func.lower(CharacterDefinition.name) == name_or_id.strip().lower(),
        )
        .order_by(CharacterDefinition.project_id.is_(None))
        .limit(1)
    )
    found = await session.scalar(query)
    if found is None:
        close = await suggest_names(session, project_id, name_or_id)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotFound(f"no character {name_or_id!r}{hint}", field="character", suggestions=close)
    return await locate(session, found)


# --------------------------------------------------------------------------- writing


async def create_character(session: AsyncSession, data: CharacterIn) -> Located:
    """A new character with version 1 (current) and its attributes; 409 if the name is taken."""
    project = await project_for_write(session, data.project) if data.project else None
    project_id = project.id if project else None
    same_name = await session.scalar(
        select(CharacterDefinition).where(
            CharacterDefinition.project_id.is_(None)
            if project_id is None
            else CharacterDefinition.project_id == project_id,
            func.lower(CharacterDefinition.name) == data.name.lower(),
        )
    )
    where = f"project {data.project!r}" if data.project else "the global characters"
    if same_name is not None:
        raise Conflict(
            f"{where} already has a character named {same_name.name!r} (id {same_name.id})",
            field="name",
            code="name_taken",
        )
    character = CharacterDefinition(name=data.name, project_id=project_id, current_version=1)
    try:
        async with session.begin_nested():
            session.add(character)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"{where} already has a character named {data.name!r}", field="name", code="name_taken"
        ) from None
    session.add(
        CharacterVersion(
            character_id=character.id,
            version=1,
            definition=definition_json(data.definition),
            note=data.note,
        )
    )
    for key, value in sorted(data.attributes.items()):
        session.add(CharacterAttribute(character_id=character.id, key=key, value=value))
    await session.flush()
    await session.refresh(character)
    return Located(character, data.project)


async def add_version(
    session: AsyncSession, character_id: uuid.UUID, definition: DefinitionIn, note: str = ""
) -> CharacterVersion:
    """Version ``n+1`` of the character, made current. The character row is locked so
    two concurrent additions get different numbers."""
    located = await locate(session, character_id, lock=True)
    latest = await session.scalar(
        select(func.max(CharacterVersion.version)).where(
            CharacterVersion.character_id == character_id
        )
    )
    version = CharacterVersion(
        character_id=character_id,
        version=(latest or 0) + 1,
        definition=definition_json(definition),
        note=note,
    )
    session.add(version)
    located.character.current_version = version.version
    located.character.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(version)
    return version


async def set_current_version(
    session: AsyncSession, character_id: uuid.UUID, version: int
) -> Located:
    located = await locate(session, character_id, lock=True)
    numbers = list(
        (
            await session.scalars(
                select(CharacterVersion.version)
                .where(CharacterVersion.character_id == character_id)
                .order_by(CharacterVersion.version)
            )
        ).all()
    )
    if version not in numbers:
        raise Invalid(
            f"{located.character.name!r} has no version {version} (versions: "
            f"{', '.join(map(str, numbers))})",
            field="version",
            code="unknown_version",
            suggestions=[str(n) for n in numbers],
        )
    located.character.current_version = version
    located.character.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(located.character)
    return located


async def replace_attributes(
    session: AsyncSession, character_id: uuid.UUID, attributes: Mapping[str, str]
) -> None:
    await locate(session, character_id, lock=True)
    await session.execute(
        delete(CharacterAttribute).where(CharacterAttribute.character_id == character_id)
    )
    for key, value in sorted(attributes.items()):
        session.add(CharacterAttribute(character_id=character_id, key=key, value=value))
    await session.flush()


async def set_attribute(
    session: AsyncSession, character_id: uuid.UUID, key: str, value: str
) -> bool:
    """Set one attribute; True if it did not exist before."""
    await locate(session, character_id, lock=True)
    row = await session.scalar(
        select(CharacterAttribute).where(
            CharacterAttribute.character_id == character_id, CharacterAttribute.key == key
        )
    )
    if row is None:
        session.add(CharacterAttribute(character_id=character_id, key=key, value=value))
    else:
        row.value = value
    await session.flush()
    return row is None


async def delete_attribute(session: AsyncSession, character_id: uuid.UUID, key: str) -> None:
    await locate(session, character_id, lock=True)
    result = await session.execute(
        delete(CharacterAttribute).where(
            CharacterAttribute.character_id == character_id, CharacterAttribute.key == key
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"the character has no attribute {key!r}", field="key")


async def add_reference(
    session: AsyncSession,
    store: ReferenceStore,
    character_id: uuid.UUID,
    image: CheckedImage,
    options: ReferenceIn,
) -> tuple[CharacterReference, bool]:
    """Attach a checked image (stored content-addressed); True if newly attached.

    The same image attached again with the same kind and weight is the existing
    reference (so an upload can be retried); with a different kind or weight it is
    a 409 naming the existing one.
    """
    await locate(session, character_id, lock=True)
    sha, path = await asyncio.to_thread(store.put, image.data)
    existing = await session.scalar(
        select(CharacterReference).where(
            CharacterReference.character_id == character_id, CharacterReference.sha256 == sha
        )
    )
    if existing is not None:
        if existing.kind == options.kind and existing.weight == options.weight:
            return existing, False
        raise Conflict(
            f"this image is already a {existing.kind!r} reference (weight {existing.weight}) "
            "of the character; delete it first to change it",
            field="image",
            code="reference_exists",
        )
    reference = CharacterReference(
        character_id=character_id,
        sha256=sha,
        path=str(path),
        kind=options.kind,
        weight=options.weight,
        mime=image.mime,
        width=image.width,
        height=image.height,
        bytes=len(image.data),
    )
    session.add(reference)
    await session.flush()
    await session.refresh(reference)
    return reference, True


async def delete_reference(session: AsyncSession, character_id: uuid.UUID, sha256: str) -> None:
    """Detach an image from the character (the stored file stays: jobs may name it)."""
    await locate(session, character_id, lock=True)
    result = await session.execute(
        delete(CharacterReference).where(
            CharacterReference.character_id == character_id, CharacterReference.sha256 == sha256
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"the character has no reference image {sha256}", field="sha256")


# --------------------------------------------------------------------------- reading


def summary(located: Located) -> CharacterSummary:
    c = located.character
    return CharacterSummary(
        id=c.id,
        name=c.name,
        project=located.project,
        current_version=c.current_version,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def reference_out(reference: CharacterReference, reference_url: ReferenceUrl) -> ReferenceOut:
    return ReferenceOut(
        sha256=reference.sha256,
        kind=reference.kind,  # type: ignore[arg-type]
        weight=reference.weight,
        mime=reference.mime,
        width=reference.width,
        height=reference.height,
        bytes=reference.bytes,
        url=reference_url(reference.sha256),
        created_at=reference.created_at,
    )


def version_out(version: CharacterVersion, current: int) -> VersionOut:
    return VersionOut(
        id=version.id,
        version=version.version,
        current=version.version == current,
        definition=version.definition,
        note=version.note,
        created_at=version.created_at,
    )


async def get_version(
    session: AsyncSession, character_id: uuid.UUID, number: int
) -> CharacterVersion:
    version = await session.scalar(
        select(CharacterVersion).where(
            CharacterVersion.character_id == character_id, CharacterVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"the character has no version {number}", field="version")
    return version


async def character_out(
    session: AsyncSession, located: Located, reference_url: ReferenceUrl
) -> CharacterOut:
    """The character with every version (oldest first), its attributes and references."""
    cid = located.character.id
    versions = (
        await session.scalars(
            select(CharacterVersion)
            .where(CharacterVersion.character_id == cid)
            .order_by(CharacterVersion.version)
        )
    ).all()
    attributes = (
        await session.scalars(
            select(CharacterAttribute)
            .where(CharacterAttribute.character_id == cid)
            .order_by(CharacterAttribute.key)
        )
    ).all()
    references = (
        await session.scalars(
            select(CharacterReference)
            .where(CharacterReference.character_id == cid)
            .order_by(CharacterReference.created_at, CharacterReference.sha256)
        )
    ).all()
    return CharacterOut(
        **summary(located).model_dump(),
        versions=[version_out(v, located.character.current_version) for v in versions],
        attributes={a.key: a.value for a in attributes},
        references=[reference_out(r, reference_url) for r in references],
    )


async def attributes_of(session: AsyncSession, character_id: uuid.UUID) -> dict[str, str]:
    rows = (
        await session.scalars(
            select(CharacterAttribute)
            .where(CharacterAttribute.character_id == character_id)
            .order_by(CharacterAttribute.key)
        )
    ).all()
    return {a.key: a.value for a in rows}


async def list_characters(
    session: AsyncSession,
    *,
    project: str | None,
    search: str | None,
    visible: frozenset[str] | None,
    after: tuple[str, uuid.UUID] | None,
    limit: int,
) -> list[Located]:
    """Characters by name (case-insensitive), then id; ``limit`` of them after ``after``.

    With ``project``: that project's characters and the global ones. Without: every
    character the key may see (global ones and those of its projects).
    """
    query = select(CharacterDefinition, Project.slug).outerjoin(
        Project, Project.id == CharacterDefinition.project_id
    )
    if project is not None:
        project_id = (await project_for_write(session, project)).id
        query = query.where(visible_to(project_id))
    if visible is not None:
        query = query.where(
            CharacterDefinition.project_id.is_(None) | Project.slug.in_(sorted(visible))
        )
    if search:
        pattern = (
            "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        query = query.where(func.lower(CharacterDefinition.name).like(pattern, escape="\\"))
    if after is not None:
        query = query.where(
            tuple_(func.lower(CharacterDefinition.name), CharacterDefinition.id) > tuple_(*after)
        )
    query = query.order_by(func.lower(CharacterDefinition.name), CharacterDefinition.id).limit(
        limit
    )
    return [Located(row[0], row[1]) for row in (await session.execute(query)).all()]
