"""``anime demo`` leaves no key behind: the one it mints is read-only, limited to the
demo's project, and revoked when the run ends, however it ends."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select

from cli import demo
from shared.auth import KeyChecker, hash_key
from shared.db.models import ApiKey
from shared.settings import Settings
from tests.support.records import Records

pytestmark = pytest.mark.integration


async def test_each_demo_run_revokes_the_key_it_minted(
    pipeline_settings: Settings, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = KeyChecker(records.sessions, ttl=0)
    keys: list[str] = []

    async def nothing(_: Settings) -> dict[str, Any]:
        return {"characters": []}

    async def the_demo(
        settings: Settings, console: Console, request: dict[str, Any], render_seconds: float
    ) -> int:
        assert settings.api_key is not None
        keys.append(settings.api_key)
        # While the demo runs, its key watches the demo's project and nothing more
        principal = await checker.principal(settings.api_key)
        assert principal is not None
        assert principal.scopes == frozenset({"read"})
        assert principal.projects == frozenset({request["project"]})
        if len(keys) == 2:
            raise RuntimeError("a service did not start")
        return 0

    monkeypatch.setattr(demo, "migrate", nothing)
    monkeypatch.setattr(demo, "load_seed", nothing)
    monkeypatch.setattr(demo, "_run", the_demo)
    console = Console(file=io.StringIO())

    assert await demo.run_demo(pipeline_settings, console) == 0
    with pytest.raises(RuntimeError):
        await demo.run_demo(pipeline_settings, console)

    assert len(set(keys)) == 2
    for key in keys:
        assert await checker.principal(key) is None
    async with records.sessions() as session:
        rows = (
            await session.scalars(
                select(ApiKey).where(ApiKey.key_hash.in_([hash_key(k) for k in keys]))
            )
        ).all()
    assert len(rows) == 2 and all(r.revoked_at is not None for r in rows)
    assert {r.name for r in rows} == {demo.DEMO_KEY_NAME}
