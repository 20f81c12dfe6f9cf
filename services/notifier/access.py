"""API-key checks for the notifier's routes (``read`` scope, project-limited keys)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.auth import requires, visible_projects

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Endpoint, *, query_key: bool = False) -> Endpoint:
    """``handler`` behind the ``read`` scope (works for bound methods too).

    ``query_key``: also take ``?api_key=`` (WebSocket and SSE routes only: browsers open
    them without a way to set a header).
    """

    async def endpoint(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    endpoint.__doc__ = handler.__doc__
    return requires("read", query_key=query_key)(endpoint)


#: The projects the caller's key may see; None for every project (or auth off).
allowed_projects = visible_projects


def error(status: int, field: str, message: str, code: str = "invalid") -> web.Response:
    """The error shape every service answers with."""
    return web.json_response(
        {"errors": [{"field": field, "code": code, "message": message, "suggestions": []}]},
        status=status,
    )
