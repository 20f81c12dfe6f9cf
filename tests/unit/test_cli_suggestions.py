"""Character suggestions name each character once (issue 12, item 6)."""

from __future__ import annotations

from services.ingest.characters import close_names


def test_a_close_name_sharing_a_word_is_suggested_once() -> None:
    names = ["Kai Nakamura", "Mira Sato", "Kai Nakamura"]
    assert close_names("Kai Nakamur", names) == ["Kai Nakamura"]
    assert close_names("kai", names) == ["Kai Nakamura"]


def test_names_differing_only_in_case_are_one_suggestion() -> None:
    assert close_names("kai nakamura x", ["Kai Nakamura", "KAI NAKAMURA"]) == ["KAI NAKAMURA"]
