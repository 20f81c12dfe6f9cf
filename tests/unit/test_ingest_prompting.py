"""Prompt composition is deterministic: these texts are pinned for the studio's characters.

Changing them changes every future render of these characters; update docs/prompting.md
with them.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.ingest.prompting import compose_negative, compose_prompt, fragments
from services.ingest.seed import HIROSHI, KAI_VERSIONS, SAKURA
from shared.events import CharacterDefinition, CharacterSnapshot


def snapshot(name: str, definition: dict[str, Any], version: int = 1) -> CharacterSnapshot:
    return CharacterSnapshot(
        character_id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        name=name,
        version=version,
        version_id=uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}/{version}"),
        definition=CharacterDefinition.model_validate(definition),
    )


KAI = snapshot("Kai Nakamura", KAI_VERSIONS[2], 3)
SAKURA_HANA = snapshot("Sakura Hana", SAKURA)
HIROSHI_TANAKA = snapshot("Hiroshi Tanaka", HIROSHI)


def test_kai_nakamura_v3_alone() -> None:
    assert compose_prompt([KAI], "rooftop at dusk") == (
        "kainakamura, kai_v3, 1boy, solo, determined expression, wind-swept hair, young man, "
        "messy black hair with a silver streak, brown eyes, athletic build, small scar over left "
        "eyebrow, dark grey hooded jacket over black shirt, red scarf, fingerless gloves, "
        "rooftop at dusk"
    )
    assert compose_negative([KAI], "lowres") == (
        "lowres, extra fingers, blurry face, deformed hands, childlike"
    )


def test_sakura_hana_alone() -> None:
    assert compose_prompt([SAKURA_HANA], "cherry blossoms") == (
        "sakurahana, 1girl, smiling, teenage girl, long pink hair, green eyes, hair clip shaped "
        "like a cherry blossom, sailor school uniform, navy skirt, pink ribbon, cherry blossoms"
    )
    assert compose_negative([SAKURA_HANA], "") == "extra fingers"


def test_hiroshi_tanaka_alone() -> None:
    assert compose_prompt([HIROSHI_TANAKA], "rainy office at night") == (
        "hiroshitanaka, 1man, mature male, middle-aged man, short grey hair, glasses, stubble, "
        "rumpled brown suit, loosened tie, rainy office at night"
    )
    assert compose_negative([HIROSHI_TANAKA], "bright colours") == (
        "bright colours, young, extra fingers"
    )


def test_a_multi_character_shot_in_request_order_without_solo_or_repeats() -> None:
    characters = [KAI, SAKURA_HANA, HIROSHI_TANAKA]
    assert compose_prompt(characters, "three friends on a rooftop, night") == (
        "kainakamura, kai_v3, 1boy, determined expression, wind-swept hair, young man, messy "
        "black hair with a silver streak, brown eyes, athletic build, small scar over left "
        "eyebrow, dark grey hooded jacket over black shirt, red scarf, fingerless gloves, "
        "sakurahana, 1girl, smiling, teenage girl, long pink hair, green eyes, hair clip shaped "
        "like a cherry blossom, sailor school uniform, navy skirt, pink ribbon, hiroshitanaka, "
        "1man, mature male, middle-aged man, short grey hair, glasses, stubble, rumpled brown "
        "suit, loosened tie, three friends on a rooftop, night"
    )
    assert compose_negative(characters, "lowres, Extra Fingers") == (
        "lowres, Extra Fingers, blurry face, deformed hands, childlike, young"
    )


def test_the_order_of_characters_is_the_order_of_their_fragments() -> None:
    forward = compose_prompt([SAKURA_HANA, HIROSHI_TANAKA], "")
    backward = compose_prompt([HIROSHI_TANAKA, SAKURA_HANA], "")
    assert forward.startswith("sakurahana") and backward.startswith("hiroshitanaka")
    assert sorted(forward.split(", ")) == sorted(backward.split(", "))


def test_the_same_inputs_always_give_the_same_text() -> None:
    texts = {compose_prompt([KAI, SAKURA_HANA], "rain") for _ in range(20)}
    assert len(texts) == 1


def test_fragments_are_split_at_commas_trimmed_and_kept_once_case_insensitively() -> None:
    assert fragments(["  a,  b ", "B, c,,", "", "A  b"]) == ["a", "b", "c", "A b"]
