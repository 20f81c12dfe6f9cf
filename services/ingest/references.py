"""Reference images, stored content-addressed: ``<root>/<sha[:2]>/<sha256>``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from aiohttp import web

from services.ingest.http_errors import error_response
from services.ingest.http_routes import PathParam, Reply, Route, register

_HEX = frozenset("0123456789abcdef")


class ReferenceStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store bytes once (atomically); the same content always lands on the same path."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(path)
        return sha, path


class ReferencesApi:
    def __init__(self, store: ReferenceStore) -> None:
        self.store = store

    def register(self, app: web.Application) -> None:
        register(app, REFERENCE_ROUTES, self)

    async def get(self, request: web.Request) -> web.StreamResponse:
        """The bytes of a reference image, by sha256 (renderers fetch them from here).

        Public: renderers fetch these URLs from ``job.accepted`` without a key, and a
        sha256 cannot be guessed.
        """
        try:
            path = self.store.path_for(request.match_info["sha256"])
        except ValueError:
            return error_response(400, "expected a lowercase sha256 hex digest", field="sha256")
        if not path.is_file():
            return error_response(404, "no such reference image", field="sha256")
        with path.open("rb") as handle:
            head = handle.read(16)
        return web.FileResponse(
            path,
            headers={
                "Cache-Control": "public, max-age=31536000, immutable",
                "Content-Type": sniff_mime(head),
            },
        )


def sniff_mime(head: bytes) -> str:
    """The image type from the first bytes of a stored file."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


REFERENCE_ROUTES = (
    Route(
        "GET",
        "/v1/references/{sha256}",
        ReferencesApi.get,
        operation_id="getReferenceImage",
        summary="The bytes of a reference image, by sha256 (public: renderers fetch it)",
        tag="characters",
        scope=None,
        path_params=(
            PathParam(
                "sha256", "The image's sha256.", {"type": "string", "pattern": "^[0-9a-f]{64}$"}
            ),
        ),
        replies=(
            Reply(
                200,
                "The image, immutable and cacheable.",
                media={
                    m: {"type": "string", "contentMediaType": m}
                    for m in ("image/png", "image/jpeg", "image/webp")
                },
            ),
        ),
        errors=(400, 404),
    ),
)
