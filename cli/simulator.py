"""The ComfyUI simulator set-up that ``anime up`` and ``anime demo`` both start.

The simulator validates checkpoint and LoRA names like ComfyUI does, against what it is
told is installed. So it is told every name a shipped job can ask for: the checkpoints
and LoRAs the templates use by default (their workflow inputs and ``requires.models``)
and the LoRA of every version of every seeded character.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shared.workflows import TemplateRegistry

#: Input names of loader nodes, and the ``requires.models`` folder for each kind.
CHECKPOINT_INPUTS = frozenset({"ckpt_name"})
LORA_INPUTS = frozenset({"lora_name"})
CHECKPOINT_FOLDERS = frozenset({"checkpoints"})
LORA_FOLDERS = frozenset({"loras"})


@dataclasses.dataclass(frozen=True)
class SimulatorModels:
    models: list[str]
    loras: list[str]

    def argv(self) -> list[str]:
        """comfysim's ``--models``/``--loras`` options (omitted when empty)."""
        out: list[str] = []
        if self.models:
            out += ["--models", ",".join(self.models)]
        if self.loras:
            out += ["--loras", ",".join(self.loras)]
        return out


def seeded_character_versions() -> list[Mapping[str, Any]]:
    """Every version definition of every character ``anime seed`` loads."""
    # The CLI is where the services are wired together (it seeds through ingest too).
    from services.ingest.seed import HIROSHI, KAI_VERSIONS, SAKURA

    return [*KAI_VERSIONS, SAKURA, HIROSHI]


def simulator_models(
    templates_dir: Path | str, characters: Iterable[Mapping[str, Any]] | None = None
) -> SimulatorModels:
    """The checkpoint and LoRA names the templates and the seeded characters name."""
    models: set[str] = set()
    loras: set[str] = set()
    registry = TemplateRegistry.load(templates_dir)
    for name in registry.names():
        template = registry.get(name)
        for required in template.requires.models:
            folder, _, file = required.rpartition("/")
            if folder in CHECKPOINT_FOLDERS:
                models.add(file)
            elif folder in LORA_FOLDERS:
                loras.add(file)
        for node in template.workflow.values():
            for key, value in (node.get("inputs") or {}).items():
                if not isinstance(value, str):
                    continue  # a link to another node's output
                if key in CHECKPOINT_INPUTS:
                    models.add(value)
                elif key in LORA_INPUTS:
                    loras.add(value)
    for version in seeded_character_versions() if characters is None else characters:
        lora = version.get("lora")
        if isinstance(lora, Mapping) and isinstance(lora.get("name"), str):
            loras.add(lora["name"])
    return SimulatorModels(models=sorted(models), loras=sorted(loras))
