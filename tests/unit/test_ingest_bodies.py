"""Decoding bodies for both doors, and what ingest refuses to store or look up."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.ingest.bodies import MAX_JSON_DEPTH, Undecodable, decode_json, json_depth
from services.ingest.hygiene import clean_text, header_token, is_clean, scrub, slugify
from services.ingest.screening import MAX_PROBLEMS, capped, screen
from services.ingest.submission import canonical_hash, validate_request
from shared.events import Problem


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"\xff\xfe{}", "encoding"),
        ('{"a": 1}'.encode("utf-16"), "encoding"),
        (b"\xef\xbb\xbf{}", "not_json"),
        (b"{", "not_json"),
        (b"NaN", "not_json"),
        (b"[Infinity]", "not_json"),
        (b"[1e400]", "not_json"),
        (b"[-1e400]", "not_json"),
        (b"1" * 5000, "not_json"),
        (b"[" * 100_000, "too_deep"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "too_deep"),
        (b"x" * 300_000, "too_large"),
    ],
)
def test_an_unreadable_body_says_why_with_a_stable_first_word(body: bytes, kind: str) -> None:
    result = decode_json(body)
    assert isinstance(result, Undecodable)
    assert result.kind == kind
    assert result.reason.startswith(f"{kind}: ")


@pytest.mark.parametrize(
    "body",
    [b"{}", b"[]", b'"text"', b"null", b"[1.5e300]", b"[" * 32 + b"]" * 32, b'{"a": "\\u0000"}'],
)
def test_readable_json_is_decoded_as_is(body: bytes) -> None:
    assert decode_json(body) == json.loads(body)


def test_depth_counts_nested_arrays_and_objects() -> None:
    assert json_depth(1) == 0
    assert json_depth({"a": [1, {"b": []}]}) == 4


def test_scrub_makes_any_decoded_value_storable_in_jsonb() -> None:
    value = {"a\x00": ["\ud800x", float("inf"), 1, True, None, {"k": "\x00"}]}
    cleaned = scrub(value)
    assert cleaned == {"a\ufffd": ["\ufffdx", "inf", 1, True, None, {"k": "\ufffd"}]}
    json.dumps(cleaned).encode("utf-8")


@pytest.mark.parametrize(
    ("text", "multiline", "clean"),
    [
        ("plain", False, True),
        ("two\nlines", False, False),
        ("two\nlines\tand tab", True, True),
        ("nul\x00", True, False),
        ("bell\x07", True, False),
        ("lone \ud800", True, False),
        ("c1 \x85", True, False),
        ("emoji 😀 and 日本語", False, True),
    ],
)
def test_clean_text_has_no_control_characters_or_lone_surrogates(
    text: str, multiline: bool, clean: bool
) -> None:
    assert is_clean(text, multiline=multiline) is clean


def test_text_and_header_tokens_are_made_safe() -> None:
    assert clean_text("a\x00b\udfff") == "a\ufffdb\ufffd"
    assert header_token("corr id\x00é-1") == "corrid-1"
    assert header_token("\x00\x01") is None
    assert header_token(42) is None  # type: ignore[arg-type]
    assert slugify("Ünïcode Café / Night!") == "unicode-cafe-night"


def _fields(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.field, p.code) for p in problems}


def test_unknown_top_level_fields_are_problems_with_close_names_but_the_envelope_is_fine_over_amqp() -> (
    None
):
    body = {"priorty": 3, "job_id": "x", "event_type": "job.submitted"}
    http = screen(body, via="http").problems
    amqp = screen(body, via="amqp").problems
    assert _fields(http) == {
        ("priorty", "extra_forbidden"),
        ("job_id", "extra_forbidden"),
        ("event_type", "extra_forbidden"),
    }
    assert next(p for p in http if p.field == "priorty").suggestions[0] == "priority"
    assert _fields(amqp) == {("priorty", "extra_forbidden")}


def test_unsafe_text_anywhere_blocks_the_database_and_names_the_place() -> None:
    body = {"prompt": "ok\nfine", "characters": [{"name": "Kai\x00"}], "params": {"k\ud800": 1}}
    result = screen(body, via="http")
    assert result.blocking
    assert ("characters[0].name", "invalid_characters") in _fields(result.problems)
    assert ("params.k\ufffd", "invalid_characters") in _fields(result.problems)
    assert all(p.field != "prompt" for p in result.problems)


def _shot(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": "r-1",
        "project": "neon-skies",
        "characters": [{"name": "Kai"}],
        **overrides,
    }


def test_validate_request_gives_the_request_when_only_database_checks_remain() -> None:
    request, problems = validate_request(_shot(), via="http")
    assert request is not None and problems == []


def test_validate_request_reports_shape_problems_and_withholds_unsafe_requests() -> None:
    request, problems = validate_request(_shot(priority="high", colour=1), via="http")
    assert request is None
    assert _fields(problems) == {("priority", "int_type"), ("colour", "extra_forbidden")}
    request, problems = validate_request(_shot(prompt="\x00"), via="amqp")
    assert request is None and _fields(problems) == {("prompt", "invalid_characters")}
    request, problems = validate_request(_shot(colour=1), via="http")
    assert request is not None and _fields(problems) == {("colour", "extra_forbidden")}


def test_validation_messages_never_carry_unsafe_text() -> None:
    _, problems = validate_request(_shot(params={"\x00": "\ud800"}), via="http")
    for problem in problems:
        assert is_clean(problem.field) and "\x00" not in problem.message


def test_too_many_problems_are_summarised() -> None:
    many = [Problem(field=f"f{i}", message="m") for i in range(MAX_PROBLEMS + 10)]
    kept = capped(many)
    assert len(kept) == MAX_PROBLEMS
    assert kept[-1].code == "too_many_problems" and "11 more" in kept[-1].message


def test_the_request_hash_ignores_key_order_and_the_envelope() -> None:
    a = _shot(prompt="x")
    b = {"job_id": "j", **dict(reversed(list(a.items())))}
    assert canonical_hash(a) == canonical_hash(b)
    assert canonical_hash(a) != canonical_hash(_shot(prompt="y"))


def test_a_well_formed_request_hashes_its_normalised_form() -> None:
    explicit = _shot(priority=5, template="txt2img", params={"steps": 20})
    implicit, _ = validate_request(_shot(), via="http")
    spelled_out, _ = validate_request(explicit, via="http")
    assert canonical_hash(_shot(), implicit) == canonical_hash(explicit, spelled_out)


def test_a_body_with_unknown_fields_hashes_them_so_the_corrected_body_is_a_new_request() -> None:
    typo = _shot(priorty=3)
    fixed, _ = validate_request(_shot(), via="http")
    assert canonical_hash(typo) != canonical_hash(_shot(), fixed)


@pytest.mark.parametrize(
    ("field", "value"),
    [("priority", True), ("priority", "5"), ("priority", 5.0)],
)
def test_numbers_are_not_quietly_converted(field: str, value: object) -> None:
    request, problems = validate_request(_shot(**{field: value}), via="http")
    assert request is None
    assert (field, "int_type") in _fields(problems)


def test_render_parameters_are_strict_too_but_floats_take_integers() -> None:
    request, problems = validate_request(_shot(params={"steps": "20", "cfg": 7}), via="http")
    assert request is None
    assert _fields(problems) == {("params.steps", "int_type")}
    request, problems = validate_request(_shot(params={"steps": 20, "cfg": 7}), via="http")
    assert request is not None and request.params.cfg == 7.0
