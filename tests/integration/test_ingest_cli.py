"""``anime keys`` and ``anime characters`` against the real database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.characters import characters_app
from cli.keys import keys_app
from shared.settings import get_settings
from tests.support.ingest_images import image_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ANIME_DATABASE_URL", database_url)
    monkeypatch.setenv("ANIME_REFERENCE_ROOT", str(tmp_path / "references"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def run(app: Any, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return json.loads(result.stdout) if "--json" in args and code == 0 else result.output


def test_keys_are_created_listed_and_revoked(cli_env: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = run(
        keys_app,
        "create",
        "--name",
        name,
        "--scope",
        "submit",
        "--scope",
        "read",
        "--project",
        "neon-skies",
        "--json",
    )
    assert created["key"].startswith(f"ak_{created['prefix']}_")
    assert (created["scopes"], created["projects"]) == (["read", "submit"], ["neon-skies"])

    listed = run(keys_app, "list", "--json")
    assert created["prefix"] in [k["prefix"] for k in listed]
    assert "key" not in listed[0]

    assert run(keys_app, "revoke", created["prefix"], "--json") == {"revoked": 1}
    assert created["prefix"] not in [k["prefix"] for k in run(keys_app, "list", "--json")]
    revoked = [
        k for k in run(keys_app, "list", "--all", "--json") if k["prefix"] == created["prefix"]
    ]
    assert revoked[0]["revoked_at"] is not None
    run(keys_app, "revoke", created["prefix"], code=1)


def test_bad_key_options_are_usage_errors(cli_env: Path) -> None:
    run(keys_app, "create", "--name", "x", "--scope", "root", code=2)
    run(keys_app, "create", "--name", "x", "--scope", "read", "--project", "../etc", code=2)


def test_a_character_is_managed_from_files(cli_env: Path) -> None:
    name = f"Cli Aiko {uuid.uuid4().hex[:6]}"
    v1 = cli_env / "aiko.yaml"
    v1.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "definition": {"appearance": "short blue hair", "trigger_words": ["aiko"]},
                "attributes": {"age": "19"},
            }
        )
    )
    v2 = cli_env / "aiko-v2.json"
    v2.write_text(json.dumps({"appearance": "short blue hair", "outfit": "winter coat"}))

    created = run(characters_app, "create", str(v1), "--json")
    assert created["current_version"] == 1 and created["attributes"] == {"age": "19"}
    added = run(characters_app, "add-version", name, str(v2), "--note", "winter", "--json")
    assert added["version"] == 2 and added["current"]
    back = run(characters_app, "set-current", name.lower(), "1", "--json")
    assert back["current_version"] == 1
    run(characters_app, "set-attr", name, "hair", "blue")
    run(characters_app, "del-attr", name, "age")

    png = cli_env / "face.png"
    png.write_bytes(image_bytes())
    reference = run(characters_app, "add-reference", name, str(png), "--kind", "face", "--json")
    assert reference["mime"] == "image/png"

    shown = run(characters_app, "show", created["id"], "--json")
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["attributes"] == {"hair": "blue"}
    assert [r["sha256"] for r in shown["references"]] == [reference["sha256"]]
    assert name in [c["name"] for c in run(characters_app, "list", "--search", name, "--json")]


def test_character_mistakes_are_explained(cli_env: Path, seeded: Path) -> None:
    bad = cli_env / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "definition": {"colour": "red"}}))
    output = run(characters_app, "create", str(bad), code=2)
    assert "definition.colour" in output
    missing = run(characters_app, "show", "Kai Nakamure", code=1)
    assert "Kai Nakamura" in missing
    run(characters_app, "set-current", "Kai Nakamura", "99", code=2)
    text = cli_env / "face.png"
    text.write_bytes(b"not an image")
    run(characters_app, "add-reference", "Kai Nakamura", str(text), code=2)
