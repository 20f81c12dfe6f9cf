"""The committed AsyncAPI document and JSON Schemas are exactly what the code generates."""

import json
from pathlib import Path

from shared.contract import asyncapi_document, event_schemas
from shared.events import EventType
from shared.settings import REPO_ROOT

DOCS = REPO_ROOT / "docs"


def _load(path: Path) -> object:
    return json.loads(path.read_text())


def test_committed_asyncapi_matches_the_code() -> None:
    regenerated = json.loads(json.dumps(asyncapi_document(), sort_keys=True))
    assert _load(DOCS / "asyncapi.json") == regenerated, "run `anime docs generate` and commit"


def test_committed_event_schemas_match_the_code() -> None:
    for name, schema in event_schemas().items():
        assert _load(DOCS / "schemas" / f"{name}.json") == json.loads(json.dumps(schema)), name


def test_asyncapi_documents_every_event_type() -> None:
    text = json.dumps(asyncapi_document())
    for event_type in EventType:
        assert f"{event_type.value}." in text
