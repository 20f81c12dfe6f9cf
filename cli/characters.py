"""``anime characters …``: the studio's characters, straight in PostgreSQL.

The same domain code and checks as ingest's HTTP API (``services.ingest``): versions
are immutable and numbered, a new version becomes current, the current pointer can be
moved back, reference images are checked with Pillow and stored by sha256.

Examples::

    anime characters list --project neon-skies
    anime characters show "Kai Nakamura" --json
    anime characters create aiko.yaml
    anime characters add-version "Aiko" aiko-v2.yaml --note "winter outfit"
    anime characters set-current "Aiko" 1
    anime characters set-attr "Aiko" hair blue
    anime characters add-reference "Aiko" face.png --kind face --weight 0.8
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from pydantic import BaseModel
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from cli.common import EXIT_FAILED, EXIT_USAGE, console, err, print_json, run_async
from services.ingest import characters_service as svc
from services.ingest.api_models import (
    AttributeIn,
    CharacterIn,
    CurrentVersionIn,
    ReferenceIn,
    VersionIn,
)
from services.ingest.errors import Conflict, IngestError, NotFound
from services.ingest.http_io import parse_model
from services.ingest.images import check_image
from services.ingest.references import ReferenceStore
from shared.db.session import make_engine, make_sessionmaker
from shared.settings import Settings, get_settings

characters_app = typer.Typer(
    help="Characters: definitions, versions, attributes and reference images.\n\n"
    'Examples: anime characters list; anime characters show "Kai Nakamura"; '
    "anime characters create aiko.yaml",
    no_args_is_help=True,
)

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="Resolve names as seen from this project.")
]
CharacterArg = Annotated[str, typer.Argument(help="The character's name or id.")]


def _reference_url(settings: Settings) -> Callable[[str], str]:
    return lambda sha: f"{settings.public_ingest_url}/v1/references/{sha}"


@asynccontextmanager
async def _transaction(*, write: bool) -> AsyncIterator[AsyncSession]:
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            if write:
                async with session.begin():
                    yield session
            else:
                yield session
    finally:
        await engine.dispose()


def _run(work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = False) -> T:
    """Run ``work`` in a session; an ingest error becomes its problems and an exit code."""

    async def main() -> T:
        async with _transaction(write=write) as session:
            return await work(session)

    try:
        return run_async(main())
    except IngestError as error:
        for problem in error.problems:
            hint = (
                f" (did you mean: {', '.join(problem.suggestions)})" if problem.suggestions else ""
            )
            err.print(f"[red]error:[/] {problem.field}: {problem.message}{hint}", highlight=False)
        raise typer.Exit(
            EXIT_FAILED if isinstance(error, NotFound | Conflict) else EXIT_USAGE
        ) from None


def _load(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        err.print(f"[red]error:[/] cannot read {path}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        err.print(
            f"[red]error:[/] {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        )
        raise typer.Exit(EXIT_USAGE) from None


def _show(model: BaseModel, as_json: bool, text: str) -> None:
    if as_json:
        print_json(model.model_dump(mode="json"))
    else:
        console.print(text, highlight=False)


@characters_app.command("list")
def list_cmd(
    project: ProjectOption = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="Part of the name.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """List characters by name (a project's own and the global ones)."""

    async def work(session: AsyncSession) -> list[svc.Located]:
        return await svc.list_characters(
            session, project=project, search=search, visible=None, after=None, limit=limit
        )

    found = [svc.summary(c) for c in _run(work)]
    if as_json:
        print_json([c.model_dump(mode="json") for c in found])
        return
    table = Table("name", "project", "current", "id")
    for c in found:
        table.add_row(c.name, c.project or "(global)", str(c.current_version), str(c.id))
    console.print(table)


@characters_app.command("show")
def show_cmd(
    character: CharacterArg, project: ProjectOption = None, as_json: JsonOption = False
) -> None:
    """A character with its versions, attributes and reference images."""
    settings = get_settings()

    async def work(session: AsyncSession) -> Any:
        located = await svc.locate_by_name_or_id(session, character, project=project)
        return await svc.character_out(session, located, _reference_url(settings))

    document = _run(work)
    if as_json:
        print_json(document.model_dump(mode="json"))
        return
    console.print(
        f"[bold]{document.name}[/] ({document.project or 'global'}) id {document.id}, "
        f"current version {document.current_version}",
        highlight=False,
    )
    for version in document.versions:
        mark = "*" if version.current else " "
        console.print(
            f" {mark} v{version.version} {version.created_at:%Y-%m-%d} {version.note}",
            highlight=False,
        )
    for key, value in document.attributes.items():
        console.print(f"   {key} = {value}", highlight=False)
    for reference in document.references:
        console.print(f"   {reference.kind} {reference.weight} {reference.sha256}", highlight=False)


@characters_app.command("create")
def create_cmd(
    file: Annotated[
        Path, typer.Argument(help="YAML or JSON: name, project, definition, attributes.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Create a character from a file; its definition becomes version 1."""
    settings = get_settings()

    async def work(session: AsyncSession) -> Any:
        data = parse_model(CharacterIn, _load(file))
        located = await svc.create_character(session, data)
        return await svc.character_out(session, located, _reference_url(settings))

    document = _run(work, write=True)
    _show(document, as_json, f"created {document.name} ({document.id}), version 1")


@characters_app.command("add-version")
def add_version_cmd(
    character: CharacterArg,
    file: Annotated[Path, typer.Argument(help="YAML or JSON: the definition.")],
    note: Annotated[str, typer.Option(help="Why this version exists.")] = "",
    project: ProjectOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a new, immutable version; it becomes current."""

    async def work(session: AsyncSession) -> Any:
        data = parse_model(VersionIn, {"definition": _load(file), "note": note})
        located = await svc.locate_by_name_or_id(session, character, project=project)
        version = await svc.add_version(session, located.character.id, data.definition, data.note)
        return svc.version_out(version, version.version)

    version = _run(work, write=True)
    _show(version, as_json, f"added version {version.version} (now current)")


@characters_app.command("set-current")
def set_current_cmd(
    character: CharacterArg,
    version: Annotated[int, typer.Argument(help="An existing version number.")],
    project: ProjectOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make an existing version current (for example, go back to an older one)."""

    async def work(session: AsyncSession) -> Any:
        data = parse_model(CurrentVersionIn, {"version": version})
        located = await svc.locate_by_name_or_id(session, character, project=project)
        return svc.summary(
            await svc.set_current_version(session, located.character.id, data.version)
        )

    summary = _run(work, write=True)
    _show(summary, as_json, f"{summary.name}: current version {summary.current_version}")


@characters_app.command("set-attr")
def set_attr_cmd(
    character: CharacterArg,
    key: Annotated[str, typer.Argument(help="Attribute key.")],
    value: Annotated[str, typer.Argument(help="Attribute value.")],
    project: ProjectOption = None,
) -> None:
    """Set one attribute."""

    async def work(session: AsyncSession) -> bool:
        data = parse_model(AttributeIn, {"key": key, "value": value})
        located = await svc.locate_by_name_or_id(session, character, project=project)
        return await svc.set_attribute(session, located.character.id, data.key, data.value)

    created = _run(work, write=True)
    console.print(f"{'added' if created else 'changed'} {key}", highlight=False)


@characters_app.command("del-attr")
def del_attr_cmd(character: CharacterArg, key: str, project: ProjectOption = None) -> None:
    """Delete one attribute (exit 1 if there is none)."""

    async def work(session: AsyncSession) -> None:
        located = await svc.locate_by_name_or_id(session, character, project=project)
        await svc.delete_attribute(session, located.character.id, key)

    _run(work, write=True)
    console.print(f"deleted {key}", highlight=False)


@characters_app.command("add-reference")
def add_reference_cmd(
    character: CharacterArg,
    image: Annotated[Path, typer.Argument(help="A PNG, JPEG or WebP file.")],
    kind: Annotated[str, typer.Option(help="face, full-body, outfit or expression.")] = "face",
    weight: Annotated[float, typer.Option(help="0 to 2.")] = 1.0,
    project: ProjectOption = None,
    as_json: JsonOption = False,
) -> None:
    """Attach a reference image (checked, then stored by sha256)."""
    settings = get_settings()
    try:
        data = image.read_bytes()
    except OSError as exc:
        err.print(f"[red]error:[/] cannot read {image}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from None

    async def work(session: AsyncSession) -> Any:
        options = parse_model(ReferenceIn, {"kind": kind, "weight": weight})
        checked = await asyncio.to_thread(check_image, data)
        located = await svc.locate_by_name_or_id(session, character, project=project)
        reference, _ = await svc.add_reference(
            session, ReferenceStore(settings.reference_root), located.character.id, checked, options
        )
        return svc.reference_out(reference, _reference_url(settings))

    reference = _run(work, write=True)
    _show(reference, as_json, f"attached {reference.kind} reference {reference.sha256}")
