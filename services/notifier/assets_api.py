"""The archive's read side: list a project's images, read one's metadata, fetch its file.

``GET /v1/projects/{project}/assets`` (filters, cursor pagination),
``GET /v1/assets/{id}`` (metadata with the job's record) and
``GET /v1/assets/{id}/file`` (the PNG, read from the asset root). Scope ``read``; a key
limited to projects gets 403 for another project's listing and 404 for its assets.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from services.notifier.access import error, guarded
from services.notifier.assets_query import asset_document, find_assets, parse_query
from shared.auth import may_see
from shared.db.models import Asset
from shared.db.session import SessionFactory
from shared.events import is_slug
from shared.storage import Storage


class AssetsApi:
    def __init__(self, *, sessions: SessionFactory, storage: Storage) -> None:
        self.sessions = sessions
        self.storage = storage

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/projects/{project}/assets", guarded(self.list_assets))
        app.router.add_get("/v1/assets/{asset_id}", guarded(self.get_asset))
        app.router.add_get("/v1/assets/{asset_id}/file", guarded(self.get_file))

    async def list_assets(self, request: web.Request) -> web.StreamResponse:
        """A page of a project's images, oldest first; follow ``next_cursor`` for more."""
        project = request.match_info["project"]
        if not is_slug(project):
            return error(400, "project", "project must be a slug")
        if not may_see(request, project):
            return error(403, "project", "this key may not read that project", "forbidden")
        query = parse_query(project, request.query)
        if isinstance(query, list):
            body = {
                "errors": [
                    {"field": f, "code": "invalid", "message": m, "suggestions": []}
                    for f, m in query
                ]
            }
            return web.json_response(body, status=400)
        async with self.sessions() as session:
            assets, next_cursor = await find_assets(session, query)
        return web.json_response(
            {
                "project": project,
                "assets": [asset_document(a) for a in assets],
                "next_cursor": next_cursor,
            }
        )

    async def get_asset(self, request: web.Request) -> web.StreamResponse:
        """One image's metadata, with the job's full record (prompt, seed, characters…)."""
        asset = await self._visible_asset(request)
        if isinstance(asset, web.Response):
            return asset
        return web.json_response(asset_document(asset, with_record=True))

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        """The archived PNG itself (its ETag is its sha256)."""
        asset = await self._visible_asset(request)
        if isinstance(asset, web.Response):
            return asset
        etag = f'"{asset.sha256}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        try:
            data = await self.storage.get(asset.path)
        except (FileNotFoundError, ValueError):
            return error(404, "asset_id", "the file is missing from the archive", "missing")
        name = f"{asset.project_slug}-{asset.job_id}-{asset.index + 1:02d}.png"
        headers["Content-Disposition"] = f'inline; filename="{name}"'
        return web.Response(body=data, content_type=asset.mime, headers=headers)

    async def _visible_asset(self, request: web.Request) -> Asset | web.Response:
        try:
            asset_id = uuid.UUID(request.match_info["asset_id"])
        except ValueError:
            return error(400, "asset_id", "asset id must be a UUID")
        async with self.sessions() as session:
            asset = await session.get(Asset, asset_id)
        if asset is None or not may_see(request, asset.project_slug):
            return error(404, "asset_id", f"no asset {asset_id}", "not_found")
        return asset
