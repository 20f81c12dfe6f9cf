"""Errors the ingest domain raises; the HTTP layer answers them as JSON errors.

Each carries the HTTP status it maps to and a list of :class:`~shared.events.Problem`,
so the CLI can print the same explanations the API sends.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shared.events import Problem


class IngestError(Exception):
    """A request that cannot be carried out, with every reason."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        problems: list[Problem] | str,
        *,
        field: str = "body",
        code: str | None = None,
        suggestions: list[str] | None = None,
        **extra: Any,
    ) -> None:
        if isinstance(problems, str):
            problems = [
                Problem(
                    field=field,
                    message=problems,
                    code=code or self.code,
                    suggestions=suggestions or [],
                )
            ]
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems
        self.extra = extra


class BadRequest(IngestError):
    """The request cannot be read (malformed JSON, malformed id in the path)."""


class Unauthorized(IngestError):
    status = 401
    code = "unauthorized"


class Forbidden(IngestError):
    """The API key may not touch this project."""

    status = 403
    code = "forbidden"


class NotFound(IngestError):
    status = 404
    code = "not_found"


class Conflict(IngestError):
    """The request clashes with what exists (a taken name, a final job)."""

    status = 409
    code = "conflict"


class TooLarge(IngestError):
    status = 413
    code = "too_large"


class UnsupportedMedia(IngestError):
    status = 415
    code = "unsupported_media_type"


class Invalid(IngestError):
    """The request was read but its content is not acceptable."""

    status = 422
    code = "invalid"
