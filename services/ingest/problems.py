"""Turning validation failures into :class:`~shared.events.Problem` lists."""

from __future__ import annotations

from pydantic import ValidationError

from services.ingest.hygiene import clean_text
from shared.events import Problem


def problems_from_validation(error: ValidationError, *, prefix: str = "") -> list[Problem]:
    """Pydantic's errors as ``Problem``s with readable dotted field paths.

    Paths and messages are scrubbed: a hostile body's keys end up in them.
    """
    problems = []
    for item in error.errors(include_url=False):
        path = prefix
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = item["msg"]
        if item["type"] not in ("missing",):
            shown = _shown(item.get("input"))
            if shown is not None:
                message = f"{message} (got {shown})"
        problems.append(
            Problem(
                field=clean_text(path or "body")[:200],
                code=item["type"],
                message=clean_text(message)[:1000],
            )
        )
    return problems


def _shown(value: object) -> str | None:
    """A short repr of the offending input, or None when it would not help."""
    if isinstance(value, dict | list) and len(value) > 8:
        return None
    try:
        shown = repr(value)
    except RecursionError:  # pragma: no cover - bodies are depth-limited beforehand
        return None
    return shown if len(shown) <= 80 else None


def clean_problem(problem: Problem) -> Problem:
    """The same problem with text PostgreSQL and JSON accept."""
    return Problem(
        field=clean_text(problem.field)[:200],
        message=clean_text(problem.message)[:1000],
        code=clean_text(problem.code)[:64],
        suggestions=[clean_text(s)[:200] for s in problem.suggestions[:10]],
    )
