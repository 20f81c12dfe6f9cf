"""JSON error answers: every error names the field and says what is wrong.

Body: ``{"errors": [{"field", "message", "code", "suggestions"}]}``. Handlers either
return :func:`error_response` or raise an :class:`~services.ingest.errors.IngestError`;
:func:`json_errors`
(an aiohttp middleware) turns the exception, aiohttp's own errors (no such route,
method not allowed, body too large) and anything unexpected into the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.ingest.errors import IngestError
from shared.events import Problem
from shared.logging import get_logger

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
}


def error_response(
    status: int, problems: list[Problem] | str, *, field: str = "body", **extra: Any
) -> web.Response:
    if isinstance(problems, str):
        problems = [Problem(field=field, message=problems, code=_CODES.get(status, "error"))]
    body = {"errors": [p.model_dump(mode="json") for p in problems], **extra}
    return web.json_response(body, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IngestError as error:
        return error_response(error.status, error.problems, **error.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: "the request body is too large",
        }.get(exc.status, exc.reason)
        response = error_response(exc.status, message, field="request")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("http.unhandled", method=request.method, path=request.path)
        return error_response(500, "internal error (logged)", field="request")
