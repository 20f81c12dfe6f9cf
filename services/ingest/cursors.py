"""Opaque pagination cursors: the sort key of the last row a page showed.

A cursor is base64url of a small JSON array tagged with what it pages, so a cursor of
one listing cannot be replayed against another. Clients must treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
import json

from services.ingest.errors import BadRequest


def encode_cursor(kind: str, *parts: str) -> str:
    data = json.dumps([kind, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(token: str, kind: str, arity: int) -> list[str]:
    """The parts of a cursor made by :func:`encode_cursor` for ``kind``; 400 otherwise."""
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(data)
    except (binascii.Error, ValueError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != arity + 1
        or value[0] != kind
        or not all(isinstance(v, str) for v in value)
    ):
        raise BadRequest(
            "cursor is not valid here; pass next_cursor unchanged",
            field="cursor",
            code="bad_cursor",
        )
    return list(value[1:])
