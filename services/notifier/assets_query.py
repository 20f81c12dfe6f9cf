"""Finding archived images: filters, keyset pagination and the JSON shape of an asset."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Asset
from shared.events import is_slug

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Problem = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class AssetQuery:
    """``GET /v1/projects/{project}/assets`` parameters, validated."""

    project: str
    character: str | None = None
    episode: str | None = None
    scene: str | None = None
    shot: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, uuid.UUID, int] | None = None
    limit: int = DEFAULT_LIMIT


def parse_query(project: str, params: Mapping[str, str]) -> AssetQuery | list[Problem]:
    problems: list[Problem] = []
    values: dict[str, Any] = {"project": project}
    for name in ("episode", "scene", "shot"):
        value = params.get(name)
        if value is not None:
            if is_slug(value):
                values[name] = value
            else:
                problems.append((name, f"{name} must be a slug such as ep01 (or 'unassigned')"))
    character = params.get("character")
    if character is not None:
        if 0 < len(character) <= 120:
            values["character"] = character
        else:
            problems.append(("character", "character must be a name or an id"))
    for name in ("since", "until"):
        value = params.get(name)
        if value is not None:
            moment = _moment(value)
            if moment is None:
                problems.append((name, f"{name} must be an ISO 8601 time, e.g. 2026-01-31T12:00Z"))
            values[name] = moment
    cursor = params.get("cursor")
    if cursor:
        after = decode_cursor(cursor)
        if after is None:
            problems.append(("cursor", "cursor must be a next_cursor this API returned"))
        values["after"] = after
    limit = params.get("limit")
    if limit is not None:
        if limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT:
            values["limit"] = int(limit)
        else:
            problems.append(("limit", f"limit must be between 1 and {MAX_LIMIT}"))
    return problems or AssetQuery(**values)


def _moment(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def encode_cursor(asset: Asset) -> str:
    raw = json.dumps([asset.created_at.isoformat(), str(asset.job_id), asset.index])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID, int] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job, index = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(job), int(index)
    except (binascii.Error, ValueError, TypeError):
        return None


def _conditions(query: AssetQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Asset.project_slug == query.project]
    if query.episode is not None:
        conditions.append(Asset.episode == query.episode)
    if query.scene is not None:
        conditions.append(Asset.scene == query.scene)
    if query.shot is not None:
        conditions.append(Asset.shot == query.shot)
    if query.since is not None:
        conditions.append(Asset.created_at >= query.since)
    if query.until is not None:
        conditions.append(Asset.created_at < query.until)
    if query.character is not None:
        conditions.append(_has_character(query.character))
    if query.after is not None:
        conditions.append(
            tuple_(Asset.created_at, Asset.job_id, Asset.index) > tuple_(*query.after)
        )
    return conditions


def _has_character(character: str) -> ColumnElement[bool]:
    try:
        character_id = uuid.UUID(character)
    except ValueError:
        return text(
            "EXISTS (SELECT 1 FROM unnest(assets.character_names) AS n "
            "WHERE lower(n) = lower(:character))"
        ).bindparams(character=character)  # type: ignore[return-value]
    return Asset.characters.contains([{"character_id": str(character_id)}])


async def find_assets(session: AsyncSession, query: AssetQuery) -> tuple[list[Asset], str | None]:
    """One page of a project's assets, oldest first, and the cursor of the next page."""
    statement = (
        select(Asset)
        .where(*_conditions(query))
        .order_by(Asset.created_at, Asset.job_id, Asset.index)
        .limit(query.limit + 1)
    )
    rows = list((await session.scalars(statement)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def asset_document(asset: Asset, *, with_record: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": str(asset.id),
        "job_id": str(asset.job_id),
        "index": asset.index,
        "project": asset.project_slug,
        "episode": asset.episode,
        "scene": asset.scene,
        "shot": asset.shot,
        "path": asset.path,
        "sha256": asset.sha256,
        "width": asset.width,
        "height": asset.height,
        "bytes": asset.bytes,
        "mime": asset.mime,
        "characters": asset.characters,
        "created_at": asset.created_at.isoformat(),
        "links": {
            "self": f"/v1/assets/{asset.id}",
            "file": f"/v1/assets/{asset.id}/file",
            "job": f"/v1/jobs/{asset.job_id}",
        },
    }
    if with_record:
        document["record"] = asset.record
    return document
