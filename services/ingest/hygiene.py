"""Text hygiene: what PostgreSQL, AMQP headers and logs can safely hold.

Hostile requests carry NUL bytes, lone UTF-16 surrogates, control characters and
non-finite numbers. PostgreSQL's ``text`` and ``jsonb`` refuse NUL and lone
surrogates, ``jsonb`` refuses ``Infinity``; asyncpg cannot even send such a string as a
query parameter. So ingest finds them *before* any database lookup (they become a
:class:`~shared.events.Problem`) and scrubs them from anything it stores as evidence.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import deque
from collections.abc import Iterator
from typing import Any

REPLACEMENT = "\ufffd"

#: C0 controls except tab, newline and carriage return; DEL and C1 controls; surrogates.
_UNSAFE_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_STORAGE_UNSAFE_RE = re.compile(r"[\x00\ud800-\udfff]")


def unsafe_characters(value: str) -> list[str]:
    """The distinct unsafe characters of ``value``, as readable code points."""
    found = sorted(set(_UNSAFE_RE.findall(value)))
    return [f"U+{ord(c):04X}" for c in found]


def is_clean(value: str, *, multiline: bool = False) -> bool:
    """No NUL, control character or lone surrogate (newlines/tabs only if ``multiline``)."""
    if _UNSAFE_RE.search(value):
        return False
    return multiline or not any(c in value for c in "\n\r\t")


def clean_text(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced, so PostgreSQL and JSON accept it."""
    return _STORAGE_UNSAFE_RE.sub(REPLACEMENT, value)


def scrub(value: Any) -> Any:
    """A JSON value PostgreSQL's ``jsonb`` accepts, keeping everything else as it was.

    Strings (and keys) lose NUL and lone surrogates; non-finite floats become strings.
    Callers bound the depth beforehand (see :mod:`services.ingest.bodies`).
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return clean_text(str(value))


def header_token(value: str | None, *, max_length: int = 200) -> str | None:
    """A value fit for an id header (correlation ids): printable ASCII, bounded, or None."""
    if not isinstance(value, str):
        return None
    kept = "".join(c for c in value if " " < c < "\x7f")[:max_length]
    return kept or None


def walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str, bool]]:
    """Every string in a decoded JSON value: ``(field path, text, is_key)``."""
    queue: deque[tuple[str, Any]] = deque([(path, value)])
    while queue:
        where, item = queue.popleft()
        if isinstance(item, str):
            yield where or "body", item, False
        elif isinstance(item, dict):
            for key, child in item.items():
                key_text = str(key)
                child_path = f"{where}.{key_text}" if where else key_text
                yield child_path, key_text, True
                queue.append((child_path, child))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                queue.append((f"{where}[{index}]", child))


def slugify(text: str) -> str:
    """A slug close to ``text`` (for suggestions): ``"Neon Skies!"`` → ``"neon-skies"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:64].rstrip("-")
