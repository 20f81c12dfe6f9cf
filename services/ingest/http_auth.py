"""Which projects the caller's API key may touch.

The runtime's middleware (``shared.auth``) checks the *scope* of every endpoint and
stores the key's :class:`~shared.auth.Principal` on the request. A key may also be
limited to some projects; the handlers ask here. With API keys switched off
(``ANIME_REQUIRE_API_KEYS=false``) there is no principal and everything is visible.
"""

from __future__ import annotations

from aiohttp import web

from services.ingest.errors import Forbidden
from shared.auth import may_see, principal_of, visible_projects

__all__ = ["may_see", "principal_of", "require_project", "visible_projects"]


def require_project(request: web.Request, project: str | None, *, field: str = "project") -> None:
    """403 unless the caller's key covers ``project``.

    ``project=None`` means something global (a global character): only keys that are
    not limited to projects may change those.
    """
    projects = visible_projects(request)
    if projects is None:
        return
    if project is None:
        raise Forbidden(
            "this key is limited to projects; global characters need an unlimited key", field=field
        )
    if project not in projects:
        allowed = ", ".join(sorted(projects)) or "none"
        raise Forbidden(
            f"this key may not use project {project!r} (allowed: {allowed})", field=field
        )
