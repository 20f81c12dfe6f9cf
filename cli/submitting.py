"""``anime submit --param KEY=VALUE``: job parameters typed by ``RenderParams``."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from shared.events import RenderParams

_NONE_WORDS = frozenset({"none", "null"})


def _kinds(annotation: Any) -> tuple[type, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for a in typing.get_args(annotation) if isinstance(a, type))
    return (annotation,) if isinstance(annotation, type) else (str,)


def _convert(key: str, text: str) -> Any:
    kinds = _kinds(RenderParams.model_fields[key].annotation)
    if type(None) in kinds and text.strip().lower() in _NONE_WORDS:
        return None
    for kind in (int, float):
        if kind in kinds:
            try:
                return kind(text)
            except ValueError:
                raise ValueError(
                    f"--param {key}={text}: {key} takes a{'n integer' if kind is int else ' number'}"
                ) from None
    return text


def parse_params(options: Iterable[str]) -> dict[str, Any]:
    """``["steps=30", "cfg=6.5"]`` → ``{"steps": 30, "cfg": 6.5}``, checked against the
    limits of ``RenderParams``; a ``ValueError`` with one readable line otherwise."""
    params: dict[str, Any] = {}
    known = list(RenderParams.model_fields)
    for option in options:
        key, sep, text = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param {option!r}: write KEY=VALUE, e.g. --param steps=30")
        if key not in RenderParams.model_fields:
            raise ValueError(f"--param {key}: unknown parameter (known: {', '.join(known)})")
        params[key] = _convert(key, text)
    try:
        RenderParams.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"--param {where}={params.get(where)!r}: {first['msg']}") from None
    return params
