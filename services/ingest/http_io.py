"""Reading HTTP requests strictly: bodies, query strings and path segments.

Every failure raises an :class:`~services.ingest.errors.IngestError` naming the field:
a body that cannot be read is 400 (413 when too large, 415 for a content type the
endpoint does not take); a body or query that was read but does not fit is 422; a
malformed id in the path is 400.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.ingest import MAX_BODY_BYTES
from services.ingest.bodies import Undecodable, decode_json
from services.ingest.errors import BadRequest, Invalid, TooLarge, UnsupportedMedia
from services.ingest.hygiene import slugify
from services.ingest.problems import problems_from_validation
from shared.events import Problem, is_slug

M = TypeVar("M", bound=BaseModel)

#: Query parameters every endpoint accepts (browsers may pass the key this way).
COMMON_QUERY = frozenset({"api_key"})
JSON_TYPES = frozenset({"application/json"})


async def read_body(request: web.Request, *, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it grows past ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is {request.content_length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def require_json_content_type(request: web.Request) -> None:
    """A body must be sent as ``application/json`` (no header at all is tolerated)."""
    if "Content-Type" not in request.headers:
        return
    kind = request.content_type
    if kind not in JSON_TYPES and not (kind.startswith("application/") and kind.endswith("+json")):
        raise UnsupportedMedia(
            f"send the body as application/json (got {kind})", field="Content-Type"
        )


async def read_json(
    request: web.Request, *, limit: int = MAX_BODY_BYTES, empty_ok: bool = False
) -> Any:
    """The decoded JSON body (the same strict decoding as the AMQP door).

    An empty body is a 400, or None with ``empty_ok``.
    """
    raw = await read_body(request, limit=limit)
    if not raw.strip():
        if empty_ok:
            return None
        raise BadRequest("the body is empty; send a JSON object", code="empty_body")
    require_json_content_type(request)
    decoded = decode_json(raw, max_bytes=limit)
    if isinstance(decoded, Undecodable):
        error = TooLarge if decoded.kind == "too_large" else BadRequest
        raise error(decoded.reason.split(": ", 1)[-1], code=decoded.kind)
    return decoded


def parse_model(model: type[M], data: Any, *, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(problems_from_validation(exc, prefix=prefix)) from None


async def read_model(request: web.Request, model: type[M]) -> M:
    return parse_model(model, await read_json(request))


def query_model(request: web.Request, model: type[M]) -> M:
    """Query parameters validated by ``model`` (unknown or repeated ones are problems)."""
    params: dict[str, str] = {}
    problems: list[Problem] = []
    for key in dict.fromkeys(request.query.keys()):
        if key in COMMON_QUERY:
            continue
        values = request.query.getall(key)
        if len(values) > 1:
            problems.append(Problem(field=key, code="repeated", message="give this parameter once"))
        params[key] = values[0]
    try:
        result = model.model_validate(params)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc))
        raise Invalid(problems) from None
    if problems:
        raise Invalid(problems)
    return result


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    value = request.match_info[name]
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{name} must be a UUID", field=name, code="bad_id") from None


def path_slug(request: web.Request, name: str) -> str:
    """A slug from the path; anything else (dots, slashes, upper case) is a 400."""
    value = request.match_info[name]
    if not is_slug(value):
        suggestion = slugify(value)
        raise BadRequest(
            f"{name} must be lowercase letters, digits and inner dashes (1-64 characters)",
            field=name,
            code="bad_slug",
            suggestions=[suggestion] if suggestion else [],
        )
    return value
