"""Reference images, stored content-addressed: ``<root>/<sha[:2]>/<sha256>``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from aiohttp import web

from services.ingest.http_errors import error_response

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
        app.router.add_get("/v1/references/{sha256}", self.get)

    async def get(self, request: web.Request) -> web.StreamResponse:
        """The bytes of a reference image, by sha256 (renderers fetch them from here)."""
        try:
            path = self.store.path_for(request.match_info["sha256"])
        except ValueError:
            return error_response(400, "expected a lowercase sha256 hex digest", field="sha256")
        if not path.is_file():
            return error_response(404, "no such reference image", field="sha256")
        return web.FileResponse(
            path, headers={"Cache-Control": "public, max-age=31536000, immutable"}
        )
