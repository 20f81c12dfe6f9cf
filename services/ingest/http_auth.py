"""Which projects the caller's API key may touch.

The runtime's middleware (``shared.auth``) checks the *scope* of every endpoint and
stores the key's :class:`~shared.auth.Principal` on the request. A key may also be
limited to some projects; the handlers ask here. With API keys switched off
(``ANIME_REQUIRE_API_KEYS=false``) there is no principal and everything is visible.
"""

from __future__ import annotations

from aiohttp import web

from services.ingest.errors import Forbidden
from shared.auth import Principal


def principal(request: web.Request) -> Principal | None:
    found = request.get("principal")
    return found if isinstance(found, Principal) else None


def visible_projects(request: web.Request) -> frozenset[str] | None:
    """The project slugs the caller may see; None means all of them."""
    caller = principal(request)
    return caller.projects if caller is not None else None


def may_see(request: web.Request, project: str | None) -> bool:
    """Whether the caller may see ``project`` (None: global characters, seen by all)."""
    projects = visible_projects(request)
    return projects is None or project is None or project in projects


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
