"""Deterministic prompt composition (documented in docs/prompting.md).

Positive: for each character in request order, its trigger words, prompt fragments,
appearance and outfit; then the shot prompt. Negative: the shot's negative prompt, then
each character's negative fragments.

Every part is split at commas into fragments; whitespace is collapsed, empty fragments
are dropped and a fragment already present (compared case-insensitively) is kept only
where it first appeared. In a shot with more than one character the fragment ``solo``
is dropped, as it contradicts the shot. Fragments are joined with ``", "``. The same
inputs always give the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.events import CharacterSnapshot

SEPARATOR = ", "
#: Fragments that only make sense with one character in the shot.
SINGLE_CHARACTER_TAGS = frozenset({"solo"})


def fragments(parts: Iterable[str]) -> list[str]:
    """The parts split at commas, whitespace collapsed, empties and repeats dropped."""
    seen: set[str] = set()
    out: list[str] = []
    for part in parts:
        for piece in part.split(","):
            cleaned = " ".join(piece.split())
            key = cleaned.casefold()
            if cleaned and key not in seen:
                seen.add(key)
                out.append(cleaned)
    return out


def character_fragments(character: CharacterSnapshot) -> list[str]:
    d = character.definition
    return [*d.trigger_words, *d.prompt_fragments, d.appearance, d.outfit]


def compose_prompt(characters: list[CharacterSnapshot], shot_prompt: str) -> str:
    parts: list[str] = []
    for character in characters:
        parts.extend(character_fragments(character))
    parts.append(shot_prompt)
    composed = fragments(parts)
    if len(characters) > 1:
        composed = [f for f in composed if f.casefold() not in SINGLE_CHARACTER_TAGS]
    return SEPARATOR.join(composed)


def compose_negative(characters: list[CharacterSnapshot], shot_negative: str) -> str:
    parts = [shot_negative]
    for character in characters:
        parts.extend(character.definition.negative_fragments)
    return SEPARATOR.join(fragments(parts))
