"""Deterministic prompt composition (documented in docs/prompting.md).

Positive: for each character in request order, its trigger words, prompt fragments,
appearance and outfit; then the shot prompt. Negative: the shot's negative prompt, then
each character's negative fragments. Empty parts are skipped and repeated fragments are
kept once (first occurrence wins), so the same inputs always give the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.events import CharacterSnapshot

SEPARATOR = ", "


def _unique(parts: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for part in parts:
        cleaned = " ".join(part.split())
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
    return SEPARATOR.join(_unique(parts))


def compose_negative(characters: list[CharacterSnapshot], shot_negative: str) -> str:
    parts = [shot_negative]
    for character in characters:
        parts.extend(character.definition.negative_fragments)
    return SEPARATOR.join(_unique(parts))
