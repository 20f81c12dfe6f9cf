"""Finding the characters a request names and snapshotting the versions it uses."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import (
    CharacterAttribute,
    CharacterDefinition,
    CharacterReference,
    CharacterVersion,
)
from shared.events import CharacterDefinition as DefinitionBody
from shared.events import CharacterRef, CharacterSnapshot, Problem, ReferenceImage

ReferenceUrl = Callable[[str], str]

#: Version numbers are PostgreSQL ``integer``s; a larger pin cannot exist.
MAX_VERSION = 2**31 - 1


def visible_to(project_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Characters a project can use: its own and the global ones."""
    if project_id is None:
        return CharacterDefinition.project_id.is_(None)
    return or_(
        CharacterDefinition.project_id == project_id, CharacterDefinition.project_id.is_(None)
    )


async def suggest_names(
    session: AsyncSession, project_id: uuid.UUID | None, name: str
) -> list[str]:
    names = (
        await session.scalars(select(CharacterDefinition.name).where(visible_to(project_id)))
    ).all()
    by_fold = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(by_fold), n=3, cutoff=0.5)
    # Also offer names that share a word ("Kai" → "Kai Nakamura").
    words = set(name.casefold().split())
    partial = [n for f, n in by_fold.items() if words & set(f.split()) and n not in close]
    return [by_fold[c] for c in close] + sorted(partial)[:3]


async def _find(
    session: AsyncSession, project_id: uuid.UUID | None, ref: CharacterRef
) -> CharacterDefinition | None:
    query = select(CharacterDefinition).where(visible_to(project_id))
    if ref.id is not None:
        query = query.where(CharacterDefinition.id == ref.id)
    else:
        assert ref.name is not None
        query = query.where(func.lower(CharacterDefinition.name) == ref.name.strip().lower())
    # A project's own character wins over a global one of the same name.
    query = query.order_by(CharacterDefinition.project_id.is_(None))
    return (await session.scalars(query.limit(1))).first()


async def snapshot(
    session: AsyncSession,
    character: CharacterDefinition,
    version: CharacterVersion,
    reference_url: ReferenceUrl,
) -> CharacterSnapshot:
    attributes = (
        await session.scalars(
            select(CharacterAttribute)
            .where(CharacterAttribute.character_id == character.id)
            .order_by(CharacterAttribute.key)
        )
    ).all()
    references = (
        await session.scalars(
            select(CharacterReference)
            .where(CharacterReference.character_id == character.id)
            .order_by(CharacterReference.created_at, CharacterReference.sha256)
        )
    ).all()
    return CharacterSnapshot(
        character_id=character.id,
        name=character.name,
        version=version.version,
        version_id=version.id,
        definition=DefinitionBody.model_validate(version.definition),
        attributes={a.key: a.value for a in attributes},
        references=[
            ReferenceImage(
                sha256=r.sha256,
                kind=r.kind,  # type: ignore[arg-type]
                weight=r.weight,
                mime=r.mime,
                url=reference_url(r.sha256),
            )
            for r in references
        ],
    )


async def resolve_characters(
    session: AsyncSession,
    project_id: uuid.UUID | None,
    refs: Sequence[CharacterRef],
    reference_url: ReferenceUrl,
) -> tuple[list[CharacterSnapshot], list[Problem]]:
    """Snapshot every named character at its pinned (or current) version.

    Returns every problem found, not only the first, so a client fixes them all at once.
    """
    snapshots: list[CharacterSnapshot] = []
    problems: list[Problem] = []
    seen: set[uuid.UUID] = set()
    for index, ref in enumerate(refs):
        field = f"characters[{index}]"
        character = await _find(session, project_id, ref)
        if character is None:
            suggestions = await suggest_names(session, project_id, ref.name) if ref.name else []
            hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
            problems.append(
                Problem(
                    field=f"{field}.{'name' if ref.name else 'id'}",
                    code="unknown_character",
                    message=f"no character {ref.label()!r} in this project{hint}",
                    suggestions=suggestions,
                )
            )
            continue
        if character.id in seen:
            problems.append(
                Problem(
                    field=field,
                    code="duplicate_character",
                    message=f"{character.name!r} is named twice",
                )
            )
            continue
        seen.add(character.id)
        wanted = ref.version or character.current_version
        version = (
            None
            if wanted > MAX_VERSION
            else (
                await session.scalars(
                    select(CharacterVersion).where(
                        CharacterVersion.character_id == character.id,
                        CharacterVersion.version == wanted,
                    )
                )
            ).first()
        )
        if version is None:
            problems.append(
                Problem(
                    field=f"{field}.version",
                    code="unknown_version",
                    message=(
                        f"{character.name!r} has no version {wanted} "
                        f"(current is {character.current_version})"
                    ),
                    suggestions=[str(character.current_version)],
                )
            )
            continue
        snapshots.append(await snapshot(session, character, version, reference_url))
    return snapshots, problems
