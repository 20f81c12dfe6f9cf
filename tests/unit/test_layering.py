"""The rooms of the house: the floor (``shared/``) imports no wing; wings never import
each other; only the CLI, which runs them all, may use the services' code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.settings import REPO_ROOT

SERVICES = ("ingest", "renderer", "archiver", "notifier")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, lazily (inside functions) included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((REPO_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize(
    "path", python_files("shared"), ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_the_floor_imports_no_wing(path: Path) -> None:
    wrong = {m for m in imported_modules(path) if m.split(".")[0] in ("services", "cli")}
    assert not wrong, f"{path.relative_to(REPO_ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_nor_the_cli(service: str) -> None:
    for path in python_files(f"services/{service}"):
        for module in imported_modules(path):
            parts = module.split(".")
            assert parts[0] != "cli", f"{path} imports {module}"
            if parts[0] == "services" and len(parts) > 1:
                assert parts[1] == service, f"{path} imports {module}"
