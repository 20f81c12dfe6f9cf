"""The asset listing's parameters: every problem reported at once; cursors round-trip."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from services.notifier.assets_query import AssetQuery, decode_cursor, encode_cursor, parse_query


def test_good_parameters_become_a_query() -> None:
    query = parse_query(
        "neon",
        {"episode": "ep01", "character": "Kai Nakamura", "since": "2026-01-31T12:00", "limit": "5"},
    )
    assert isinstance(query, AssetQuery)
    assert (query.episode, query.character, query.limit) == ("ep01", "Kai Nakamura", 5)
    assert query.since == datetime(2026, 1, 31, 12, tzinfo=UTC)


def test_every_bad_parameter_is_named() -> None:
    problems = parse_query(
        "neon", {"scene": "../etc", "until": "soon", "limit": "9999", "cursor": "!!"}
    )
    assert isinstance(problems, list)
    assert {field for field, _ in problems} == {"scene", "until", "limit", "cursor"}


def test_a_cursor_round_trips() -> None:
    asset: Any = SimpleNamespace(
        created_at=datetime(2026, 2, 1, tzinfo=UTC), job_id=uuid.UUID(int=5), index=2
    )
    assert decode_cursor(encode_cursor(asset)) == (asset.created_at, asset.job_id, 2)
    assert decode_cursor("not-a-cursor") is None
