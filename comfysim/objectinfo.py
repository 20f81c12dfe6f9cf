"""Node class catalogue: the captured ``GET /object_info`` reply plus live patches.

The base data is the full ``/object_info`` body recorded from ComfyUI 0.3.64
(``data/object_info.json``, 478 classes). It is loaded lazily, once per process.
A few combos are not static on a real server and are patched on every read:

* ``LoadImage.image`` / ``LoadImageMask.image`` list the image files in ``input/``;
* checkpoint-name and LoRA-name combos list the model names the simulator was
  started with (``--models`` / ``--loras``); the captured server had none, so they
  are empty lists by default, exactly like the capture.
"""

from __future__ import annotations

import copy
import json
import mimetypes
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

_DATA_FILE = Path(__file__).with_name("data") / "object_info.json"

#: (class, input) pairs whose combo lists checkpoint files.
CHECKPOINT_INPUTS: tuple[tuple[str, str], ...] = (
    ("CheckpointLoaderSimple", "ckpt_name"),
    ("CheckpointLoader", "ckpt_name"),
    ("ImageOnlyCheckpointLoader", "ckpt_name"),
    ("unCLIPCheckpointLoader", "ckpt_name"),
    ("CreateHookModelAsLora", "ckpt_name"),
    ("CreateHookModelAsLoraModelOnly", "ckpt_name"),
)
#: (class, input) pairs whose combo lists LoRA files.
LORA_INPUTS: tuple[tuple[str, str], ...] = (
    ("LoraLoader", "lora_name"),
    ("LoraLoaderModelOnly", "lora_name"),
    ("CreateHookLora", "lora_name"),
    ("CreateHookLoraModelOnly", "lora_name"),
)
#: (class, input) pairs whose combo lists the image files in input/.
INPUT_IMAGE_INPUTS: tuple[tuple[str, str], ...] = (
    ("LoadImage", "image"),
    ("LoadImageMask", "image"),
)

#: Folder names answered by ``GET /models`` (as captured).
MODEL_FOLDERS: tuple[str, ...] = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)


@lru_cache(maxsize=1)
def base_object_info() -> dict[str, Any]:
    """Return the captured ``/object_info`` body (parsed once, never mutate it)."""
    with _DATA_FILE.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def list_input_images(input_dir: Path) -> list[str]:
    """List image files directly inside ``input_dir``, sorted, like LoadImage does."""
    try:
        entries = list(Path(input_dir).iterdir())
    except FileNotFoundError:
        return []
    out: list[str] = []
    for entry in entries:
        if not entry.is_file():
            continue
        content_type = mimetypes.guess_type(entry.name)[0]
        if content_type is not None and content_type.split("/")[0] == "image":
            out.append(entry.name)
    return sorted(out)


class ObjectInfo:
    """The node catalogue of one simulator instance (base capture + live patches)."""

    def __init__(
        self,
        input_dir: Path,
        models: Iterable[str] = (),
        loras: Iterable[str] = (),
    ) -> None:
        self.input_dir = input_dir
        self.models: list[str] = sorted(set(models))
        self.loras: list[str] = sorted(set(loras))

    def _patches(self) -> dict[str, dict[str, list[str]]]:
        patches: dict[str, dict[str, list[str]]] = {}
        images = list_input_images(self.input_dir)
        for cls, name in INPUT_IMAGE_INPUTS:
            patches.setdefault(cls, {})[name] = images
        for cls, name in CHECKPOINT_INPUTS:
            patches.setdefault(cls, {})[name] = list(self.models)
        for cls, name in LORA_INPUTS:
            patches.setdefault(cls, {})[name] = list(self.loras)
        return patches

    @staticmethod
    def _apply(entry: dict[str, Any], inputs: dict[str, list[str]]) -> dict[str, Any]:
        patched = copy.deepcopy(entry)
        for category in ("required", "optional"):
            specs = patched.get("input", {}).get(category, {})
            for name, choices in inputs.items():
                spec = specs.get(name)
                if isinstance(spec, list) and spec and isinstance(spec[0], list):
                    spec[0] = list(choices)
        return patched

    def has_class(self, class_type: Any) -> bool:
        """True when ``class_type`` is a registered node class."""
        return isinstance(class_type, str) and class_type in base_object_info()

    def get(self, class_type: str) -> dict[str, Any] | None:
        """Return the (patched) ``/object_info`` entry of one class, or None."""
        base: dict[str, Any] | None = base_object_info().get(class_type)
        if base is None:
            return None
        patch = self._patches().get(class_type)
        if patch is None:
            return base
        return self._apply(base, patch)

    def full(self) -> dict[str, Any]:
        """Return the whole (patched) catalogue, in the captured class order."""
        base = base_object_info()
        out = dict(base)
        for cls, patch in self._patches().items():
            if cls in base:
                out[cls] = self._apply(base[cls], patch)
        return out

    def is_output_node(self, class_type: str) -> bool:
        """True for classes flagged ``output_node`` (SaveImage, PreviewImage, ...)."""
        entry = base_object_info().get(class_type)
        return bool(entry and entry.get("output_node") is True)

    def return_types(self, class_type: str) -> tuple[Any, ...]:
        """The class's RETURN_TYPES (a tuple, as in ComfyUI, so bad slots raise IndexError)."""
        entry = base_object_info().get(class_type)
        if entry is None:
            return ()
        return tuple(entry.get("output", []))

    def model_folder(self, folder: str) -> list[str] | None:
        """Files of one model folder for ``GET /models/{folder}`` (None if unknown)."""
        if folder not in MODEL_FOLDERS:
            return None
        if folder == "checkpoints":
            return list(self.models)
        if folder == "loras":
            return list(self.loras)
        return []
