"""Hostile workflow template files dropped into a templates folder.

``TemplateRegistry.load`` must skip every broken file with its name and a reason, keep
loading the good ones, and never hang or read without bound.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shared.settings import REPO_ROOT
from shared.workflows import TemplateRegistry
from tests.support.chaos_hostile import NON_SLUGS, RAW_BODIES, STRINGS, TALLY

CATEGORY = "template files"

VALID = json.loads((REPO_ROOT / "templates" / "model-free.json").read_text())


def broken_templates(count: int, *, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for index in range(count):
        doc: Any = json.loads(json.dumps(VALID))
        doc["name"] = f"hostile-{index}"
        kind = index % 16
        if kind == 0:
            out.append(("not json", rng.choice(RAW_BODIES) or b"{"))
            continue
        if kind == 1:
            # Numbers are coerced to text ("0" is a fine name): only non-slug text here.
            doc["name"] = rng.choice([*NON_SLUGS, None, [], {}, True])
        elif kind == 2:
            doc["workflow"] = rng.choice([{}, [], "graph", None, 1])
        elif kind == 3:
            doc["workflow"]["1"].pop("class_type")
        elif kind == 4:
            doc["workflow"]["2"]["inputs"] = rng.choice([[], "x", 1])
        elif kind == 5:
            doc["workflow"]["2"]["inputs"]["image"] = [rng.choice(["99", "../1", "x"]), 0]
        elif kind == 6:
            doc["workflow"]["2"]["inputs"]["image"] = ["1", 0, "extra"]
        elif kind == 7:
            doc["bindings"]["width"] = {
                "node": rng.choice(["42", "../1", "1; rm"]),
                "input": "width",
            }
        elif kind == 8:
            doc["bindings"]["height"] = {"node": "1", "input": rng.choice(STRINGS[:30])}
        elif kind == 9:
            doc[rng.choice(["nmae", "bindigns", "workfow", "extra"])] = 1
        elif kind == 10:
            doc["requires"] = rng.choice([{"models": "x"}, {"gpus": 2}, []])
        elif kind == 11:
            doc["bindings"]["loras"] = {"model": {"node": "77", "output": 0}}
        elif kind == 12:
            doc["name"] = "model-free"  # the name the valid template already has
        elif kind == 13:
            depth = rng.choice([200, 5000])
            doc["workflow"]["1"]["inputs"]["color"] = "@@NESTED@@"
            text = json.dumps(doc).replace('"@@NESTED@@"', "[" * depth + "1" + "]" * depth)
            out.append((f"nested {depth} deep", text.encode()))
            continue
        elif kind == 14:
            out.append(("invalid utf-8", json.dumps(doc).encode()[:-20] + b"\xff\xfe\xc0" + b"}"))
            continue
        else:
            doc["bindings"]["seed"] = rng.choice([[{}], {"node": 1}, "1", [{"node": "1"}]])
        out.append((f"kind {kind}", json.dumps(doc, default=str).encode()))
    return out


def test_hostile_template_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "templates" / "model-free.json", folder / "model-free.json")
    expected: dict[str, str] = {}
    for index, (why, data) in enumerate(broken_templates(300, seed=61)):
        name = f"t{index:04d}.json"
        (folder / name).write_bytes(data)
        expected[name] = why
    # Things that are not plain files, and files that point elsewhere.
    (folder / "dir.json").mkdir()
    expected["dir.json"] = "a directory"
    (folder / "passwd.json").symlink_to("/etc/passwd")
    expected["passwd.json"] = "symlink out of the folder"
    (folder / "loop-a.json").symlink_to(folder / "loop-b.json")
    (folder / "loop-b.json").symlink_to(folder / "loop-a.json")
    expected["loop-a.json"] = expected["loop-b.json"] = "symlink loop"
    (folder / "dangling.json").symlink_to(folder / "missing.json")
    expected["dangling.json"] = "dangling symlink"
    (folder / "big.json").write_bytes(b" " * (8 * 1024 * 1024) + b"{}")
    expected["big.json"] = "8 MB of nothing"
    (folder / "bom.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({**VALID, "name": "bom"}).encode()
    )
    (folder / ".json").write_bytes(b"{}")
    expected[".json"] = "no stem"

    registry = TemplateRegistry.load(folder)

    # A BOM-prefixed file is either read (as "bom") or refused with a reason; both fine.
    problems = {p.path.name: p.reason for p in registry.problems}
    assert set(registry.names()) <= {"model-free", "bom"}
    assert "model-free" in registry.names()
    for name, why in expected.items():
        reason = problems.get(name)
        if reason and reason.strip():
            TALLY.ok(CATEGORY)
        else:
            TALLY.bad(CATEGORY, f"{name} ({why}) was not refused with a reason")
    if "bom" not in registry.names():
        assert problems.get("bom.json")
    failures = [f for f in TALLY.failures if f.startswith(f"[{CATEGORY}]")]
    assert not failures, failures[:20]


_PROBE = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from shared.workflows import TemplateRegistry
    registry = TemplateRegistry.load(sys.argv[1])
    print(sorted(registry.names()), [(p.path.name, p.reason) for p in registry.problems])
    """
)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_template_folder_entries_that_never_end_are_refused(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "templates" / "model-free.json", folder / "model-free.json")
    if kind == "fifo":
        os.mkfifo(folder / "pipe.json")
    else:
        (folder / "zero.json").symlink_to("/dev/zero")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(folder)],
            capture_output=True,
            text=True,
            timeout=8,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"TemplateRegistry.load never returned ({kind})")
    assert done.returncode == 0, done.stderr[-500:]
    assert "model-free" in done.stdout
