"""``/v1/characters``: definitions, versions, attributes and reference images.

Reads need the ``read`` scope, changes ``admin``. A key limited to projects sees its
projects' characters and the global ones, and may change only its projects' (a
character it may not see is a 404, one it may see but not change a 403).
"""

from __future__ import annotations

import asyncio
import re
import uuid

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest import characters_service as svc
from services.ingest.api_models import (
    AttributesIn,
    AttributesOut,
    AttributeValueIn,
    CharacterIn,
    CharacterList,
    CharacterListQuery,
    CharacterOut,
    CharacterSummary,
    CurrentVersionIn,
    ReferenceIn,
    ReferenceOut,
    VersionIn,
    VersionOut,
)
from services.ingest.characters import MAX_VERSION, ReferenceUrl
from services.ingest.cursors import decode_cursor, encode_cursor
from services.ingest.errors import BadRequest, NotFound
from services.ingest.http_auth import may_see, require_project, visible_projects
from services.ingest.http_io import parse_model, path_uuid, query_model, read_model
from services.ingest.http_routes import UUID_SCHEMA, PathParam, Reply, Route, register
from services.ingest.images import UPLOAD_MEDIA_TYPES, check_image
from services.ingest.references import ReferenceStore
from services.ingest.uploads import read_upload
from shared.db.session import SessionFactory

_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,119}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _json(model: BaseModel, status: int = 200, **headers: str) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status, headers=headers or None)


class CharactersApi:
    def __init__(
        self, *, sessions: SessionFactory, store: ReferenceStore, reference_url: ReferenceUrl
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.reference_url = reference_url

    def register(self, app: web.Application) -> None:
        register(app, CHARACTER_ROUTES, self)

    # ------------------------------------------------------------------ helpers

    async def _visible(self, request: web.Request, session: AsyncSession) -> svc.Located:
        located = await svc.locate(session, path_uuid(request, "character_id"))
        if not may_see(request, located.project):
            raise NotFound(f"no character {located.character.id}", field="character_id")
        return located

    async def _writable(self, request: web.Request, session: AsyncSession) -> svc.Located:
        located = await self._visible(request, session)
        require_project(request, located.project, field="character_id")
        return located

    # ------------------------------------------------------------------ definitions

    async def create(self, request: web.Request) -> web.Response:
        data = await read_model(request, CharacterIn)
        require_project(request, data.project)
        async with self.sessions() as session, session.begin():
            located = await svc.create_character(session, data)
            document = await svc.character_out(session, located, self.reference_url)
        return _json(document, 201, Location=f"/v1/characters/{document.id}")

    async def list_all(self, request: web.Request) -> web.Response:
        query = query_model(request, CharacterListQuery)
        if query.project is not None:
            require_project(request, query.project)
        after = None
        if query.cursor is not None:
            name, raw_id = decode_cursor(query.cursor, "characters", 2)
            after = (name, _cursor_uuid(raw_id))
        async with self.sessions() as session:
            found = await svc.list_characters(
                session,
                project=query.project,
                search=query.q,
                visible=visible_projects(request),
                after=after,
                limit=query.limit + 1,
            )
        page = found[: query.limit]
        next_cursor = None
        if len(found) > query.limit:
            last = page[-1].character
            next_cursor = encode_cursor("characters", last.name.lower(), str(last.id))
        return _json(CharacterList(items=[svc.summary(c) for c in page], next_cursor=next_cursor))

    async def get(self, request: web.Request) -> web.Response:
        async with self.sessions() as session:
            located = await self._visible(request, session)
            document = await svc.character_out(session, located, self.reference_url)
        return _json(document)

    # ------------------------------------------------------------------ versions

    async def add_version(self, request: web.Request) -> web.Response:
        data = await read_model(request, VersionIn)
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            version = await svc.add_version(
                session, located.character.id, data.definition, data.note
            )
        location = f"/v1/characters/{located.character.id}/versions/{version.version}"
        return _json(svc.version_out(version, version.version), 201, Location=location)

    async def get_version(self, request: web.Request) -> web.Response:
        number = _path_version(request)
        async with self.sessions() as session:
            located = await self._visible(request, session)
            version = await svc.get_version(session, located.character.id, number)
        return _json(svc.version_out(version, located.character.current_version))

    async def set_current(self, request: web.Request) -> web.Response:
        data = await read_model(request, CurrentVersionIn)
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            located = await svc.set_current_version(session, located.character.id, data.version)
        return _json(svc.summary(located))

    # ------------------------------------------------------------------ attributes

    async def replace_attributes(self, request: web.Request) -> web.Response:
        data = await read_model(request, AttributesIn)
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            await svc.replace_attributes(session, located.character.id, data.attributes)
            attributes = await svc.attributes_of(session, located.character.id)
        return _json(AttributesOut(attributes=attributes))

    async def set_attribute(self, request: web.Request) -> web.Response:
        key = _path_key(request)
        data = await read_model(request, AttributeValueIn)
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            created = await svc.set_attribute(session, located.character.id, key, data.value)
            attributes = await svc.attributes_of(session, located.character.id)
        return _json(AttributesOut(attributes=attributes), 201 if created else 200)

    async def delete_attribute(self, request: web.Request) -> web.Response:
        key = _path_key(request)
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            await svc.delete_attribute(session, located.character.id, key)
        return web.Response(status=204)

    # ------------------------------------------------------------------ references

    async def add_reference(self, request: web.Request) -> web.Response:
        async with self.sessions() as session:
            # Permission and existence first: do not read 10 MB for a 404.
            await self._writable(request, session)
        upload = await read_upload(request)
        options = parse_model(ReferenceIn, upload.fields)
        image = await asyncio.to_thread(check_image, upload.data)
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            reference, created = await svc.add_reference(
                session, self.store, located.character.id, image, options
            )
        return _json(svc.reference_out(reference, self.reference_url), 201 if created else 200)

    async def delete_reference(self, request: web.Request) -> web.Response:
        sha256 = request.match_info["sha256"]
        if not _SHA256.match(sha256):
            raise BadRequest(
                "sha256 must be 64 lowercase hex digits", field="sha256", code="bad_sha256"
            )
        async with self.sessions() as session, session.begin():
            located = await self._writable(request, session)
            await svc.delete_reference(session, located.character.id, sha256)
        return web.Response(status=204)


def _path_version(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSION:
        raise BadRequest(
            "version must be a positive whole number", field="version", code="bad_version"
        )
    return int(raw)


def _path_key(request: web.Request) -> str:
    key = request.match_info["key"]
    if not _ATTRIBUTE_KEY.match(key):
        raise BadRequest(
            "an attribute key is 1-120 letters, digits, '_', '.' or '-' (not starting with . or -)",
            field="key",
            code="bad_key",
        )
    return key


def _cursor_uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise BadRequest(
            "cursor is not valid here; pass next_cursor unchanged",
            field="cursor",
            code="bad_cursor",
        ) from None


_ID = PathParam("character_id", "The character's id.", UUID_SCHEMA)
_VERSION = PathParam("version", "A version number.", {"type": "integer", "minimum": 1})
_KEY = PathParam("key", "An attribute key.", {"type": "string", "pattern": _ATTRIBUTE_KEY.pattern})
_SHA = PathParam("sha256", "The image's sha256.", {"type": "string", "pattern": _SHA256.pattern})
_WRITE_ERRORS = (400, 404, 413, 415, 422)
_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}

CHARACTER_ROUTES = (
    Route(
        "POST",
        "/v1/characters",
        CharactersApi.create,
        operation_id="createCharacter",
        summary="Create a character (its version 1 becomes current)",
        tag="characters",
        scope="admin",
        body=CharacterIn,
        replies=(Reply(201, "The new character.", CharacterOut),),
        errors=(*_WRITE_ERRORS, 409),
        description="The name is unique (case-insensitively) within its project, or among "
        "global characters when no project is given.",
    ),
    Route(
        "GET",
        "/v1/characters",
        CharactersApi.list_all,
        operation_id="listCharacters",
        summary="List or search characters",
        tag="characters",
        scope="read",
        query=CharacterListQuery,
        replies=(
            Reply(200, "A page of characters by name; follow next_cursor for more.", CharacterList),
        ),
        errors=(400, 422),
    ),
    Route(
        "GET",
        "/v1/characters/{character_id}",
        CharactersApi.get,
        operation_id="getCharacter",
        summary="Get a character with its versions, attributes and reference images",
        tag="characters",
        scope="read",
        path_params=(_ID,),
        replies=(Reply(200, "The character.", CharacterOut),),
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/v1/characters/{character_id}/versions",
        CharactersApi.add_version,
        operation_id="addCharacterVersion",
        summary="Add an immutable version; it becomes current",
        tag="characters",
        scope="admin",
        path_params=(_ID,),
        body=VersionIn,
        replies=(Reply(201, "The new version.", VersionOut),),
        errors=_WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/characters/{character_id}/versions/{version}",
        CharactersApi.get_version,
        operation_id="getCharacterVersion",
        summary="Get one version of a character",
        tag="characters",
        scope="read",
        path_params=(_ID, _VERSION),
        replies=(Reply(200, "The version.", VersionOut),),
        errors=(400, 404),
    ),
    Route(
        "PUT",
        "/v1/characters/{character_id}/current",
        CharactersApi.set_current,
        operation_id="setCurrentCharacterVersion",
        summary="Make an existing version current (for example, go back to an older one)",
        tag="characters",
        scope="admin",
        path_params=(_ID,),
        body=CurrentVersionIn,
        replies=(Reply(200, "The character.", CharacterSummary),),
        errors=_WRITE_ERRORS,
    ),
    Route(
        "PUT",
        "/v1/characters/{character_id}/attributes",
        CharactersApi.replace_attributes,
        operation_id="replaceCharacterAttributes",
        summary="Replace all attributes",
        tag="characters",
        scope="admin",
        path_params=(_ID,),
        body=AttributesIn,
        replies=(Reply(200, "The attributes now.", AttributesOut),),
        errors=_WRITE_ERRORS,
    ),
    Route(
        "PUT",
        "/v1/characters/{character_id}/attributes/{key}",
        CharactersApi.set_attribute,
        operation_id="setCharacterAttribute",
        summary="Set one attribute",
        tag="characters",
        scope="admin",
        path_params=(_ID, _KEY),
        body=AttributeValueIn,
        replies=(
            Reply(200, "Replaced; the attributes now.", AttributesOut),
            Reply(201, "Added; the attributes now.", AttributesOut),
        ),
        errors=_WRITE_ERRORS,
    ),
    Route(
        "DELETE",
        "/v1/characters/{character_id}/attributes/{key}",
        CharactersApi.delete_attribute,
        operation_id="deleteCharacterAttribute",
        summary="Delete one attribute",
        tag="characters",
        scope="admin",
        path_params=(_ID, _KEY),
        replies=(Reply(204, "Deleted."),),
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/v1/characters/{character_id}/references",
        CharactersApi.add_reference,
        operation_id="addCharacterReference",
        summary="Upload a reference image (PNG, JPEG or WebP; at most 10 MB and 4096x4096)",
        tag="characters",
        scope="admin",
        path_params=(_ID,),
        body_media={
            "multipart/form-data": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": _BINARY,
                    "kind": {
                        "type": "string",
                        "enum": ["face", "full-body", "outfit", "expression"],
                    },
                    "weight": {"type": "number", "minimum": 0, "maximum": 2},
                },
            },
            **dict.fromkeys(sorted(UPLOAD_MEDIA_TYPES), _BINARY),
        },
        replies=(
            Reply(
                200,
                "The same image was already attached with the same kind and weight.",
                ReferenceOut,
            ),
            Reply(201, "Attached.", ReferenceOut),
        ),
        errors=(*_WRITE_ERRORS, 409),
        description="Send multipart/form-data (file part `image`, text parts `kind` and "
        "`weight`) or the raw image with its Content-Type and `?kind=&weight=`. The bytes "
        "are checked with Pillow; they are stored content-addressed by sha256.",
    ),
    Route(
        "DELETE",
        "/v1/characters/{character_id}/references/{sha256}",
        CharactersApi.delete_reference,
        operation_id="deleteCharacterReference",
        summary="Detach a reference image from the character",
        tag="characters",
        scope="admin",
        path_params=(_ID, _SHA),
        replies=(Reply(204, "Detached."),),
        errors=(400, 404),
    ),
)
