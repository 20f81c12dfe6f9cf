"""API keys with scopes, for every HTTP and WebSocket endpoint.

A key looks like ``ak_<prefix>_<secret>``; only its sha256 is stored (keys are long
random tokens, so a fast hash is enough). Scopes: ``submit``, ``read``, ``admin``
(admin implies the others). A key may be limited to some projects.

Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Only routes
marked ``requires(scope, query_key=True)`` (WebSocket upgrades and event streams, which
browsers' WebSocket and EventSource open without a way to set a header) also take
``?api_key=<key>``; anywhere else a query key is refused with 401 (a key in a URL ends
up in logs and histories). Missing or unknown key: 401. Known key without the scope: 403.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from aiohttp import web
from sqlalchemy import select, update

from shared.db.models import ApiKey
from shared.db.session import SessionFactory

Scope = Literal["submit", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("submit", "read", "admin")
KEY_PREFIX = "ak"
_REQUIRED_ATTR = "__anime_required_scope__"
_QUERY_KEY_ATTR = "__anime_query_key__"
#: The query parameter browsers' WebSocket and EventSource use for the key.
QUERY_KEY = "api_key"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]
    #: Project slugs the key may touch; None means every project.
    projects: frozenset[str] | None

    def allows(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def may_see(self, project: str) -> bool:
        return self.projects is None or project in self.projects


#: Where the middleware puts the caller's key on the request.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal | None:
    """The caller's key, or None when keys are not required."""
    return request.get(PRINCIPAL)


def visible_projects(request: web.Request) -> frozenset[str] | None:
    """The project slugs the caller may see; None means all of them."""
    caller = principal_of(request)
    return caller.projects if caller is not None else None


def may_see(request: web.Request, project: str | None) -> bool:
    """Whether the caller may see ``project`` (None: something global, seen by all)."""
    projects = visible_projects(request)
    return projects is None or project is None or project in projects


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its display prefix."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


async def create_key(
    sessions: SessionFactory, *, name: str, scopes: list[str], projects: list[str] | None = None
) -> tuple[str, ApiKey]:
    """Store a new key; returns the key itself (shown once) and its row."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(
            f"scopes must be among {', '.join(SCOPES)} (got {', '.join(scopes) or 'none'})"
        )
    key, prefix = new_key()
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
        scopes=sorted(set(scopes)),
        projects=projects,
    )
    async with sessions() as session, session.begin():
        session.add(row)
    return key, row


async def revoke_key(sessions: SessionFactory, prefix_or_id: str) -> int:
    """Revoke keys by display prefix or id; returns how many were revoked."""
    async with sessions() as session, session.begin():
        condition = ApiKey.prefix == prefix_or_id
        with contextlib.suppress(ValueError):
            condition = condition | (ApiKey.id == uuid.UUID(prefix_or_id))
        result = await session.execute(
            update(ApiKey)
            .where(condition, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return int(getattr(result, "rowcount", 0) or 0)


class KeyChecker:
    """Looks keys up, with a short cache so each request does not hit the database."""

    def __init__(self, sessions: SessionFactory, *, ttl: float = 5.0) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, key: str) -> Principal | None:
        if not key.startswith(f"{KEY_PREFIX}_") or len(key) > 200:
            return None
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        async with self.sessions() as session:
            row = (
                await session.scalars(
                    select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
                )
            ).first()
        principal = (
            Principal(
                key_id=row.id,
                name=row.name,
                scopes=frozenset(row.scopes),
                projects=frozenset(row.projects) if row.projects is not None else None,
            )
            if row is not None
            else None
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic(), principal)
        return principal


def requires(scope: Scope, *, query_key: bool = False) -> Callable[[F], F]:
    """Mark an aiohttp handler as needing ``scope``; unmarked handlers are public.

    ``query_key``: the route also takes ``?api_key=`` (only for WebSocket and SSE routes,
    which a browser opens without a way to send a header).
    """

    def mark(handler: F) -> F:
        setattr(handler, _REQUIRED_ATTR, scope)
        setattr(handler, _QUERY_KEY_ATTR, query_key)
        return handler

    return mark


def header_key(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def presented_key(request: web.Request, *, query_allowed: bool = False) -> str | None:
    """The key the caller sent: a header, or ``?api_key=`` where ``query_allowed``."""
    return header_key(request) or (request.query.get(QUERY_KEY) if query_allowed else None)


def auth_middleware(checker: KeyChecker, *, enabled: bool = True) -> Any:
    """An aiohttp middleware enforcing ``@requires`` marks (401/403 as JSON errors)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope: Scope | None = getattr(handler, _REQUIRED_ATTR, None)
        if scope is None or not enabled:
            return await handler(request)
        query_allowed = bool(getattr(handler, _QUERY_KEY_ATTR, False))
        if QUERY_KEY in request.query and not query_allowed:
            return _error(
                401,
                "unauthorized",
                "?api_key= is accepted only when opening a WebSocket or an event stream; "
                "send the key as Authorization: Bearer <key>",
            )
        key = presented_key(request, query_allowed=query_allowed)
        principal = await checker.principal(key) if key else None
        if principal is None:
            return _error(
                401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)"
            )
        if not principal.allows(scope):
            return _error(403, "forbidden", f"this key lacks the {scope!r} scope")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"errors": [{"field": "api_key", "code": code, "message": message, "suggestions": []}]},
        status=status,
    )
