"""``anime keys create/list/revoke``: API keys, straight in PostgreSQL.

A key is shown once, when it is created; only its sha256 is stored. Scopes: ``read``,
``submit``, ``admin`` (admin implies the others). ``--project`` (repeatable) limits a
key to those projects.

Examples::

    anime keys create --name renderer-farm --scope read
    anime keys create --name storyboard --scope submit --scope read --project neon-skies --json
    anime keys list --json
    anime keys revoke 1a2b3c4d
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select

from cli.common import EXIT_FAILED, EXIT_USAGE, console, fail, print_json, run_async
from shared.auth import SCOPES, create_key, revoke_key
from shared.db.models import ApiKey
from shared.db.session import make_engine, make_sessionmaker
from shared.events import is_slug
from shared.settings import get_settings

keys_app = typer.Typer(
    help="API keys for the HTTP and WebSocket APIs: create, list, revoke.\n\n"
    "Examples: anime keys create --name ci --scope submit --scope read; anime keys list; "
    "anime keys revoke 1a2b3c4d",
    no_args_is_help=True,
)


def key_document(row: ApiKey) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "prefix": row.prefix,
        "scopes": list(row.scopes),
        "projects": list(row.projects) if row.projects is not None else None,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


async def create(name: str, scopes: list[str], projects: list[str] | None) -> dict[str, Any]:
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        sessions = make_sessionmaker(engine)
        key, row = await create_key(sessions, name=name, scopes=scopes, projects=projects)
        async with sessions() as session:
            stored = await session.get(ApiKey, row.id)
        assert stored is not None
        return {"key": key, **key_document(stored)}
    finally:
        await engine.dispose()


async def list_keys(*, include_revoked: bool) -> list[dict[str, Any]]:
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
            if not include_revoked:
                query = query.where(ApiKey.revoked_at.is_(None))
            return [key_document(row) for row in (await session.scalars(query)).all()]
    finally:
        await engine.dispose()


async def revoke(prefix_or_id: str) -> int:
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        return await revoke_key(make_sessionmaker(engine), prefix_or_id)
    finally:
        await engine.dispose()


@keys_app.command("create")
def create_cmd(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="read, submit or admin (repeat).")
    ],
    project: Annotated[
        list[str] | None,
        typer.Option("--project", "-p", help="Limit the key to this project (repeat)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a key and print it (it is shown only this once)."""
    unknown = sorted(set(scope) - set(SCOPES))
    if unknown or not scope:
        fail(f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}", EXIT_USAGE)
    bad = [p for p in project or [] if not is_slug(p)]
    if bad:
        fail(f"not a project slug: {', '.join(bad)}", EXIT_USAGE)
    if not name.strip() or len(name) > 120:
        fail("--name must be 1-120 characters", EXIT_USAGE)
    created = run_async(create(name.strip(), scope, project or None))
    if as_json:
        print_json(created)
        return
    console.print(f"key [bold]{created['key']}[/]", highlight=False)
    console.print(
        f"id {created['id']}  prefix {created['prefix']}  scopes {', '.join(created['scopes'])}"
        + (f"  projects {', '.join(created['projects'])}" if created["projects"] else ""),
        highlight=False,
    )
    console.print("[yellow]store it now: it cannot be shown again[/]")


@keys_app.command("list")
def list_cmd(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (never the keys themselves: their prefixes)."""
    keys = run_async(list_keys(include_revoked=include_revoked))
    if as_json:
        print_json(keys)
        return
    table = Table("prefix", "name", "scopes", "projects", "created", "revoked")
    for key in keys:
        table.add_row(
            key["prefix"],
            key["name"],
            ", ".join(key["scopes"]),
            ", ".join(key["projects"]) if key["projects"] else "all",
            (key["created_at"] or "")[:19],
            (key["revoked_at"] or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_cmd(
    prefix_or_id: Annotated[str, typer.Argument(help="The key's prefix or id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Revoke a key by its prefix or id (exit 1 if no active key matches).

    Services cache key lookups for a few seconds, so a revoked key may work briefly.
    """
    count = run_async(revoke(prefix_or_id))
    if as_json:
        print_json({"revoked": count})
    if count == 0:
        fail(f"no active key with prefix or id {prefix_or_id!r}", EXIT_FAILED)
    if not as_json:
        console.print(f"revoked {count} key{'s' if count != 1 else ''}")
