"""How the CLI prints a failure: the whole reason, then each problem on its own line
(node, input, value, allowed values, hint), wrapped at word boundaries, never cut."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console

#: Allowed values shown per problem; the rest are counted.
SHOW_ALLOWED = 12


def problem_lines(problem: Mapping[str, Any]) -> list[str]:
    """One problem as lines: the message, then what was allowed and the hint."""
    lines = [str(problem.get("message") or "")]
    allowed = problem.get("allowed")
    if isinstance(allowed, list) and "allowed values" not in lines[0]:
        total = problem.get("allowed_total")
        total = total if isinstance(total, int) else len(allowed)
        if not allowed:
            lines.append("allowed: none (the backend lists no values)")
        else:
            shown = ", ".join(repr(a) for a in allowed[:SHOW_ALLOWED])
            more = total - min(len(allowed), SHOW_ALLOWED)
            lines.append(f"allowed: {shown}" + (f" … and {more} more" if more > 0 else ""))
    hint = problem.get("hint")
    if hint and str(hint) not in lines[0]:
        lines.append(f"hint: {hint}")
    return lines


def failure_lines(
    reason: str | None, problems: Iterable[Mapping[str, Any]] = (), details: Iterable[str] = ()
) -> list[str]:
    """The reason, then ``- problem`` lines (from structured problems, else details)."""
    lines = [reason] if reason else []
    structured = list(problems)
    if structured:
        for problem in structured:
            first, *rest = problem_lines(problem)
            lines.append(f"- {first}")
            lines.extend(f"    {line}" for line in rest)
    else:
        lines.extend(f"- {d}" for d in details)
    return lines


def wrap_lines(lines: Iterable[str], width: int, *, indent: str = "  ") -> list[str]:
    """Each line wrapped at word boundaries to ``width``; a continuation is indented
    under its line's text. A word longer than the width stays whole (never cut)."""
    out: list[str] = []
    for line in lines:
        stripped = line.lstrip(" ")
        lead = indent + " " * (len(line) - len(stripped))
        hang = lead + ("  " if stripped.startswith("- ") else "")
        out.extend(
            textwrap.wrap(
                stripped,
                width=max(20, width),
                initial_indent=lead,
                subsequent_indent=hang,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [lead]
        )
    return out


def print_wrapped(console: Console, lines: Iterable[str], *, indent: str = "  ") -> None:
    """Print ``lines`` wrapped at word boundaries to the console's width."""
    for line in wrap_lines(lines, console.width, indent=indent):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
