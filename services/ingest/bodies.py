"""Decoding a request body, the same way for both doors.

A body that cannot be decoded at all (too large, not UTF-8, not JSON, nested beyond
reason) is not a request anyone can fix field by field: over AMQP it is parked in
ingest's dead-letter queue with the reason in its headers; over HTTP it is a 400 (413
when too large). Everything that *does* decode goes on to :mod:`submission`, which
answers with a ``job.rejected`` listing every problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal

from services.ingest import MAX_BODY_BYTES

#: Deeper JSON than this is refused before anything else looks at it. A shot request
#: is four levels deep; recursion-based code (``json.dumps``, pydantic, PostgreSQL's
#: jsonb parser) fails somewhere between a few hundred and a few thousand.
MAX_JSON_DEPTH = 32

Failure = Literal["too_large", "encoding", "not_json", "too_deep"]


@dataclasses.dataclass(frozen=True)
class Undecodable:
    """Why a body could not be decoded; ``reason`` starts with a stable word and a colon."""

    kind: Failure
    reason: str


def decode_json(body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Any | Undecodable:
    """Strict JSON: UTF-8 only, no NaN/Infinity (nor numbers that overflow to them),
    at most ``max_bytes`` and :data:`MAX_JSON_DEPTH` levels."""
    if len(body) > max_bytes:
        return Undecodable("too_large", f"too_large: body is {len(body)} bytes > {max_bytes}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Undecodable(
            "encoding", f"encoding: body is not UTF-8 ({exc.reason} at byte {exc.start})"
        )
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        return Undecodable("too_deep", f"too_deep: JSON nested deeper than {MAX_JSON_DEPTH}")
    except ValueError as exc:
        return Undecodable("not_json", f"not_json: {str(exc)[:200]}")
    if json_depth(value) > MAX_JSON_DEPTH:
        return Undecodable("too_deep", f"too_deep: JSON nested deeper than {MAX_JSON_DEPTH}")
    return value


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value
