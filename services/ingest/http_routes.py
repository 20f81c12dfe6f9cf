"""The route table: one declaration per endpoint, used to serve it *and* to document it.

Each API module declares its endpoints as :class:`Route` values (method, path, handler,
scope, parameters, body and replies). :func:`register` adds them to the aiohttp app,
marking each handler with ``shared.auth.requires(scope)`` so the runtime's middleware
enforces the scope; :mod:`services.ingest.openapi` turns the same table into the
OpenAPI document. An endpoint cannot be served without being documented, nor
documented with a scope other than the one enforced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from shared.auth import Scope, requires

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: An API class's method, unbound: ``ProjectsApi.create``.
Method = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class PathParam:
    name: str
    description: str
    schema: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"type": "string"})


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    description: str
    model: type[BaseModel] | None = None
    #: For non-JSON bodies (images): media type → JSON schema.
    media: Mapping[str, Mapping[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Route:
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    handler: Method
    operation_id: str
    summary: str
    tag: str
    scope: Scope | None
    replies: tuple[Reply, ...]
    path_params: tuple[PathParam, ...] = ()
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    #: Other request media types (uploads): media type → JSON schema.
    body_media: Mapping[str, Mapping[str, Any]] | None = None
    #: Error statuses besides the automatic ones (401/403 for scoped routes).
    errors: tuple[int, ...] = ()
    description: str = ""


def bind(route: Route, target: object) -> Handler:
    """``route.handler`` bound to ``target``, marked with the route's scope."""
    method = route.handler

    async def handler(request: web.Request) -> web.StreamResponse:
        return await method(target, request)

    handler.__name__ = handler.__qualname__ = route.operation_id
    handler.__doc__ = route.summary
    return requires(route.scope)(handler) if route.scope is not None else handler


def register(app: web.Application, routes: Iterable[Route], target: object) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, bind(route, target))


UUID_SCHEMA: Mapping[str, Any] = {"type": "string", "format": "uuid"}
SLUG_SCHEMA: Mapping[str, Any] = {
    "type": "string",
    "pattern": r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
}
