"""Reading an image upload: ``multipart/form-data`` or the raw image as the body.

* multipart: a file part named ``image`` (or ``file``), optional text parts ``kind``
  and ``weight``;
* raw: ``Content-Type: image/png|image/jpeg|image/webp`` (or
  ``application/octet-stream``) with ``?kind=&weight=`` in the query string.

The bytes are read with a hard cap (413 past it); whether they are an image is
decided later, by Pillow, not by the Content-Type.
"""

from __future__ import annotations

import dataclasses

from aiohttp import BodyPartReader, web

from services.ingest.errors import Invalid, TooLarge, UnsupportedMedia
from services.ingest.http_io import COMMON_QUERY, read_body
from services.ingest.images import MAX_IMAGE_BYTES, UPLOAD_MEDIA_TYPES
from shared.events import Problem

FILE_FIELDS = frozenset({"image", "file"})
TEXT_FIELDS = frozenset({"kind", "weight"})
RAW_TYPES = UPLOAD_MEDIA_TYPES | {"application/octet-stream"}


@dataclasses.dataclass(frozen=True)
class Upload:
    data: bytes
    fields: dict[str, str]


async def read_upload(request: web.Request, *, limit: int = MAX_IMAGE_BYTES) -> Upload:
    kind = request.content_type
    if kind == "multipart/form-data":
        return await _multipart(request, limit=limit)
    if kind in RAW_TYPES:
        fields = {k: v for k, v in request.query.items() if k not in COMMON_QUERY}
        unknown = sorted(set(fields) - TEXT_FIELDS)
        if unknown:
            raise Invalid(_unknown(unknown))
        return Upload(await read_body(request, limit=limit), fields)
    raise UnsupportedMedia(
        f"upload the image as multipart/form-data or as the raw body with an image "
        f"Content-Type ({', '.join(sorted(UPLOAD_MEDIA_TYPES))}); got {kind}",
        field="Content-Type",
    )


async def _multipart(request: web.Request, *, limit: int) -> Upload:
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise TooLarge(f"the upload is {request.content_length} bytes; the limit is {limit}")
    reader = await request.multipart()
    data: bytes | None = None
    fields: dict[str, str] = {}
    unknown: list[str] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise Invalid("nested multipart bodies are not accepted", field="body")
        name = part.name or ""
        if name in FILE_FIELDS and data is None:
            data = await _read_part(part, limit=limit, what="image")
        elif name in TEXT_FIELDS and name not in fields:
            raw = await _read_part(part, limit=100, what=name)
            try:
                fields[name] = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise Invalid(f"{name} must be UTF-8 text", field=name) from None
        else:
            unknown.append(name or "(unnamed part)")
            await part.release()
    if unknown:
        raise Invalid(_unknown(unknown))
    if data is None:
        raise Invalid(
            "no image: send it as a file part named 'image'", field="image", code="missing"
        )
    return Upload(data, fields)


async def _read_part(part: BodyPartReader, *, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is larger than the limit of {limit} bytes", field=what)
        chunks.append(chunk)
    return b"".join(chunks)


def _unknown(names: list[str]) -> list[Problem]:
    return [
        Problem(
            field=name[:200],
            code="extra_forbidden",
            message=f"unknown field; expected image, {', '.join(sorted(TEXT_FIELDS))}",
        )
        for name in names
    ]
