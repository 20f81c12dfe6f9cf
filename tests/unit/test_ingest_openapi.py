"""The OpenAPI document is generated from the route table the server registers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.ingest.api_models import CharacterIn, DefinitionIn, ProjectIn
from services.ingest.cursors import decode_cursor, encode_cursor
from services.ingest.errors import BadRequest
from services.ingest.main import build_runtime
from services.ingest.openapi import ALL_ROUTES, DOCUMENT_PATH, build_openapi, render
from shared.settings import Settings


def test_the_committed_document_is_the_generated_one() -> None:
    committed = DOCUMENT_PATH.read_text()
    assert committed == render(), (
        "docs/openapi.json is stale: run python -m services.ingest.openapi"
    )


def test_the_document_is_openapi_3_1_with_every_route_and_resolvable_references() -> None:
    document = build_openapi()
    assert document["openapi"] == "3.1.0"
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert {(r.method, r.path) for r in ALL_ROUTES} <= operations
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in document["components"]["schemas"], ref


def test_every_operation_states_its_scope_and_documents_401_and_403() -> None:
    document = build_openapi()
    for route in ALL_ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        if route.scope is None:
            assert operation["security"] == []
        else:
            assert operation["x-required-scope"] == route.scope
            assert {"401", "403"} <= set(operation["responses"])


def test_operation_ids_are_unique() -> None:
    ids = [r.operation_id for r in ALL_ROUTES]
    assert len(ids) == len(set(ids))


def test_the_server_registers_exactly_the_documented_routes_with_their_scopes(
    tmp_path: Path,
) -> None:
    runtime = build_runtime(Settings(reference_root=tmp_path))
    registered = {
        (route.method, route.resource.canonical): getattr(
            route.handler, "__anime_required_scope__", None
        )
        for route in runtime.http.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(r.method, r.path): r.scope for r in ALL_ROUTES}
    runtime_routes = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
    assert {k: v for k, v in registered.items() if k not in runtime_routes} == documented
    assert runtime_routes <= set(registered)


def test_cursors_round_trip_and_refuse_tampering() -> None:
    token = encode_cursor("jobs", "2026-01-01T00:00:00+00:00", "abc")
    assert decode_cursor(token, "jobs", 2) == ["2026-01-01T00:00:00+00:00", "abc"]
    for bad, kind in [(token, "characters"), ("!!!", "jobs"), (encode_cursor("jobs", "x"), "jobs")]:
        with pytest.raises(BadRequest):
            decode_cursor(bad, kind, 2)


def test_input_models_forbid_unknown_fields_and_bound_their_text() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ProjectIn.model_validate({"slug": "ok", "name": "n", "extra": 1})
    with pytest.raises(ValidationError):
        DefinitionIn.model_validate({"appearance": "x" * 2001})
    with pytest.raises(ValidationError):
        DefinitionIn.model_validate({"trigger_words": ["a, b"]})
    with pytest.raises(ValidationError):
        CharacterIn.model_validate({"name": "Bad\nName", "definition": {}})
    ok = CharacterIn.model_validate({"name": "  Aiko  ", "definition": {"outfit": "coat\nscarf"}})
    assert ok.name == "Aiko" and ok.project is None
