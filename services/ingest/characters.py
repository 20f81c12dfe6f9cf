"""Finding the characters a request names and snapshotting the versions it uses."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db.models import CharacterDefinition
from shared.events import CharacterDefinition as DefinitionBody
from shared.events import CharacterRef, CharacterSnapshot, Problem, ReferenceImage
from shared.lru import Lru

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
    session: AsyncSession | AsyncConnection, project_id: uuid.UUID | None, name: str
) -> list[str]:
    names = (
        await session.scalars(select(CharacterDefinition.name).where(visible_to(project_id)))
    ).all()
    return close_names(name, names)


def close_names(name: str, names: Iterable[str]) -> list[str]:
    """The names like ``name`` (at most three close ones, then up to three sharing a
    word: "Kai" → "Kai Nakamura"), each once, whatever its case."""
    by_fold = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(by_fold), n=3, cutoff=0.5)
    words = set(name.casefold().split())
    partial = [n for f, n in by_fold.items() if words & set(f.split()) and f not in close]
    return [by_fold[c] for c in close] + sorted(partial)[:3]


#: Every character a request names, in one round trip: ``unnest`` keeps the request's
#: order (``ord``); per name or id the lateral join picks the character the project sees
#: (its own before a global one of the same name); the version is the pinned one, else
#: the *current* one (which changes, so it is read every time); attributes and
#: references are per character and mutable, so they are read every time too.
#: A character that does not exist comes back as a row with ``id`` NULL.
_RESOLVE = text(
    """
    SELECT c.id, c.name, c.current_version, v.id AS version_id, v.version,
           v.definition,
           (SELECT coalesce(json_agg(json_build_array(a.key, a.value) ORDER BY a.key),
                            '[]'::json)
              FROM character_attributes a WHERE a.character_id = c.id) AS attributes,
           (SELECT coalesce(json_agg(json_build_array(x.sha256, x.kind, x.weight, x.mime)
                                     ORDER BY x.created_at, x.sha256), '[]'::json)
              FROM character_references x WHERE x.character_id = c.id) AS refs
      FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[]), CAST(:versions AS bigint[]))
           WITH ORDINALITY AS r(id, name, version, ord)
      LEFT JOIN LATERAL (
            SELECT d.id, d.name, d.current_version
              FROM character_definitions d
             WHERE (d.project_id = CAST(:project_id AS uuid) OR d.project_id IS NULL)
               AND ((r.id IS NOT NULL AND d.id = r.id)
                    OR (r.id IS NULL AND lower(d.name) = r.name))
             ORDER BY d.project_id IS NULL
             LIMIT 1
      ) c ON true
      LEFT JOIN character_versions v
             ON v.character_id = c.id AND v.version = coalesce(r.version, c.current_version)
     ORDER BY r.ord
    """
)


class CharacterResolver:
    """Resolves a request's characters to version snapshots, one query per request.

    A version's definition is an immutable row, so it is validated once and kept in a
    bounded LRU by version id. Which version is *current*, which character a name
    means in a project, the attributes and the references can change, so the query
    reads them every time.
    """

    def __init__(self, reference_url: ReferenceUrl, *, cache_size: int = 1024) -> None:
        self.reference_url = reference_url
        self.definitions: Lru[uuid.UUID, DefinitionBody] = Lru(cache_size)

    async def resolve(
        self,
        conn: AsyncConnection,
        project_id: uuid.UUID | None,
        refs: Sequence[CharacterRef],
    ) -> tuple[list[CharacterSnapshot], list[Problem]]:
        """Snapshot every named character at its pinned (or current) version.

        Returns every problem found, not only the first, so a client fixes them all at once.
        """
        if not refs:
            return [], []
        rows = (
            await conn.execute(
                _RESOLVE,
                {
                    "project_id": project_id,
                    "ids": [ref.id for ref in refs],
                    "names": [
                        ref.name.strip().lower() if ref.id is None and ref.name else None
                        for ref in refs
                    ],
                    # A pin beyond PostgreSQL's integer cannot exist (and would not fit).
                    "versions": [
                        None if ref.version is None else min(ref.version, MAX_VERSION + 1)
                        for ref in refs
                    ],
                },
            )
        ).all()
        snapshots: list[CharacterSnapshot] = []
        problems: list[Problem] = []
        seen: set[uuid.UUID] = set()
        for index, (ref, row) in enumerate(zip(refs, rows, strict=True)):
            field = f"characters[{index}]"
            if row.id is None:
                suggestions = await suggest_names(conn, project_id, ref.name) if ref.name else []
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
            if row.id in seen:
                problems.append(
                    Problem(
                        field=field,
                        code="duplicate_character",
                        message=f"{row.name!r} is named twice",
                    )
                )
                continue
            seen.add(row.id)
            wanted = ref.version or row.current_version
            if row.version_id is None or wanted > MAX_VERSION:
                problems.append(
                    Problem(
                        field=f"{field}.version",
                        code="unknown_version",
                        message=(
                            f"{row.name!r} has no version {wanted} "
                            f"(current is {row.current_version})"
                        ),
                        suggestions=[str(row.current_version)],
                    )
                )
                continue
            snapshots.append(
                CharacterSnapshot(
                    character_id=row.id,
                    name=row.name,
                    version=row.version,
                    version_id=row.version_id,
                    definition=self._definition(row.version_id, row.definition),
                    attributes=dict(row.attributes),
                    references=[
                        ReferenceImage(
                            sha256=sha,
                            kind=kind,
                            weight=weight,
                            mime=mime,
                            url=self.reference_url(sha),
                        )
                        for sha, kind, weight, mime in row.refs
                    ],
                )
            )
        return snapshots, problems

    def _definition(self, version_id: uuid.UUID, raw: Any) -> DefinitionBody:
        cached = self.definitions.get(version_id)
        if cached is not None:
            return cached
        definition = DefinitionBody.model_validate(raw)
        self.definitions.put(version_id, definition)
        return definition
