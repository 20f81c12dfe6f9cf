"""JSON error answers: every error names the field and says what is wrong."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shared.events import Problem


def error_response(
    status: int, problems: list[Problem] | str, *, field: str = "body", **extra: Any
) -> web.Response:
    if isinstance(problems, str):
        problems = [Problem(field=field, message=problems, code=_CODES.get(status, "error"))]
    body = {"errors": [p.model_dump(mode="json") for p in problems], **extra}
    return web.json_response(body, status=status)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}
