"""The simulator that ``anime up`` and ``anime demo`` start lists every checkpoint and
LoRA the shipped templates and the seeded characters name; ``anime submit --param``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.demo import demo_request
from cli.main import app
from cli.simulator import simulator_models
from cli.submitting import parse_params
from services.ingest.seed import HIROSHI, KAI_VERSIONS, SAKURA
from shared.settings import REPO_ROOT

TEMPLATES = REPO_ROOT / "templates"


def _named(kind: str) -> set[str]:
    """Every ``kind`` (ckpt_name, lora_name) value in the shipped template files."""
    names: set[str] = set()
    for path in TEMPLATES.glob("*.json"):
        for node in json.loads(path.read_text())["workflow"].values():
            value = node.get("inputs", {}).get(kind)
            if isinstance(value, str):
                names.add(value)
    return names


def test_the_simulator_lists_every_model_and_lora_of_templates_and_seeded_characters() -> None:
    setup = simulator_models(TEMPLATES)
    assert _named("ckpt_name") <= set(setup.models)
    assert "v1-5-pruned-emaonly.safetensors" in setup.models
    seeded = {v["lora"]["name"] for v in [*KAI_VERSIONS, SAKURA, HIROSHI] if v.get("lora")}
    assert seeded and seeded <= set(setup.loras)
    assert _named("lora_name") <= set(setup.loras)
    argv = setup.argv()
    assert argv[argv.index("--models") + 1].split(",") == setup.models
    assert argv[argv.index("--loras") + 1].split(",") == setup.loras


def test_the_demo_asks_only_for_what_the_simulator_lists() -> None:
    checkpoint = demo_request()["params"].get("checkpoint")
    assert checkpoint is None or checkpoint in simulator_models(TEMPLATES).models


def test_a_template_folder_of_its_own_is_read(tmp_path: Path) -> None:
    source = json.loads((TEMPLATES / "txt2img.json").read_text())
    source["workflow"]["4"]["inputs"]["ckpt_name"] = "anything-v5.safetensors"
    source["requires"]["models"] = ["checkpoints/x.safetensors", "loras/y.safetensors"]
    (tmp_path / "txt2img.json").write_text(json.dumps(source))
    setup = simulator_models(tmp_path, characters=[{"lora": {"name": "z.safetensors"}}])
    assert setup.models == ["anything-v5.safetensors", "x.safetensors"]
    assert setup.loras == ["y.safetensors", "z.safetensors"]


def test_params_are_typed_by_render_params() -> None:
    assert parse_params(["steps=30", "width=768", "cfg=6", "seed=none", "sampler=dpmpp_2m"]) == {
        "steps": 30,
        "width": 768,
        "cfg": 6.0,
        "seed": None,
        "sampler": "dpmpp_2m",
    }


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("steps=x", "steps takes an integer"),
        ("steps=1000", "less than or equal to 150"),
        ("width=770", "multiple of 8"),
        ("colour=red", "unknown parameter"),
        ("steps", "KEY=VALUE"),
    ],
)
def test_a_bad_param_is_one_line_and_exit_code_2(option: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_params([option])
    result = CliRunner().invoke(app, ["submit", "-c", "Kai Nakamura", "--param", option])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.output
