"""Checks on a decoded body that come before the request model and the database.

* Unknown top-level fields are reported (with the closest known names) instead of
  being dropped silently: ``"priorty": 3`` is a typo the client wants to hear about.
  Over AMQP the event envelope (``job_id``, ``correlation_id`` …) is allowed too.
* Text that PostgreSQL or a log line cannot hold (NUL, control characters, lone
  surrogates) is refused wherever it appears, keys included. Such a request is never
  looked up in the database: asyncpg cannot even send it as a parameter.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Literal

from services.ingest.hygiene import clean_text, is_clean, unsafe_characters, walk_strings
from shared.events import SHOT_REQUEST_FIELDS, Event, Problem

#: Envelope fields another system may put on a ``job.submitted`` event.
ENVELOPE_FIELDS = frozenset(Event.model_fields)
#: Text fields where newlines and tabs are fine.
MULTILINE_FIELDS = frozenset({"prompt", "negative_prompt"})
#: More problems than this in one body are summarised in a last problem.
MAX_PROBLEMS = 50


@dataclasses.dataclass(frozen=True)
class Screening:
    problems: list[Problem]
    #: True when the body must not reach the database (unsafe text).
    blocking: bool


def screen(raw: Any, *, via: Literal["amqp", "http"]) -> Screening:
    if not isinstance(raw, dict):
        return Screening([], blocking=False)
    problems = unknown_fields(raw, allowed=_allowed(via))
    unsafe = unsafe_text(raw)
    return Screening(problems + unsafe, blocking=bool(unsafe))


def _allowed(via: Literal["amqp", "http"]) -> frozenset[str]:
    return SHOT_REQUEST_FIELDS | ENVELOPE_FIELDS if via == "amqp" else SHOT_REQUEST_FIELDS


def unknown_fields(raw: dict[str, Any], *, allowed: frozenset[str]) -> list[Problem]:
    problems = []
    for key in raw:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), sorted(SHOT_REQUEST_FIELDS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        problems.append(
            Problem(
                field=clean_text(str(key))[:200],
                code="extra_forbidden",
                message=f"unknown field{hint}",
                suggestions=close,
            )
        )
    return problems


def unsafe_text(raw: dict[str, Any]) -> list[Problem]:
    problems = []
    for path, text, is_key in walk_strings(raw):
        top = path.split(".", 1)[0].split("[", 1)[0]
        if is_clean(text, multiline=not is_key and top in MULTILINE_FIELDS):
            continue
        found = unsafe_characters(text) or ["line breaks"]
        what = "field name" if is_key else "text"
        problems.append(
            Problem(
                field=clean_text(path)[:200],
                code="invalid_characters",
                message=f"{what} contains characters that are not allowed: {', '.join(found[:5])}",
            )
        )
    return problems


def capped(problems: list[Problem]) -> list[Problem]:
    """At most :data:`MAX_PROBLEMS`, the last one saying how many were left out."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    left = len(problems) - (MAX_PROBLEMS - 1)
    return [
        *problems[: MAX_PROBLEMS - 1],
        Problem(field="body", code="too_many_problems", message=f"… and {left} more problems"),
    ]
