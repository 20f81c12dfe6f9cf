"""Workflow templates: loading, compiling, and checking against a server's object_info."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.events import Lora, RenderParams
from shared.workflows import (
    DEFAULT_TEMPLATES_DIR,
    BoundReference,
    TemplateError,
    TemplateRegistry,
    UnknownTemplateError,
    WorkflowTemplate,
    compile_workflow,
    derive_prompt_id,
    filename_prefix_for,
    prompt_color,
    validate_against_object_info,
)
from tests.unit.test_comfyui_captures import CAPTURES, load_object_info

JOB = uuid.UUID("0b7e9a52-4a0e-4d8e-9d1c-0f1e2d3c4b5a")
PREFIX = filename_prefix_for(JOB, 1)


@pytest.fixture(scope="module")
def registry() -> TemplateRegistry:
    return TemplateRegistry.load(DEFAULT_TEMPLATES_DIR)


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    return load_object_info()


def _compile(template: WorkflowTemplate, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "prompt": "Kai Nakamura, rooftop at dusk",
        "negative": "lowres",
        "params": RenderParams(
            steps=28, cfg=6.5, width=640, height=768, batch_size=2, sampler="dpmpp_2m"
        ),
        "loras": [],
        "reference_images": [],
        "filename_prefix": PREFIX,
        "seed": 1234,
    }
    kwargs.update(overrides)
    return compile_workflow(template, **kwargs)


def _write(folder: Path, name: str, content: str | dict[str, Any]) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / name).write_text(text)


# =========================================================================== loading


def test_shipped_templates_all_load(registry: TemplateRegistry) -> None:
    assert registry.names() == ["model-free", "txt2img", "txt2img-reference"]
    assert registry.problems == []


def test_broken_template_file_is_skipped_with_its_filename_and_reason(tmp_path: Path) -> None:
    good = json.loads((DEFAULT_TEMPLATES_DIR / "model-free.json").read_text())
    _write(tmp_path, "a-good.json", good)
    _write(tmp_path, "not-json.json", "{ this is not json")
    _write(tmp_path, "no-workflow.json", {"name": "no-workflow"})
    bad_binding = copy.deepcopy(good) | {"name": "bad-binding"}
    bad_binding["bindings"]["seed"] = {"node": "99", "input": "seed"}
    _write(tmp_path, "bad-binding.json", bad_binding)
    bad_input = copy.deepcopy(good) | {"name": "bad-input"}
    bad_input["bindings"]["width"] = {"node": "1", "input": "widht"}
    _write(tmp_path, "bad-input.json", bad_input)
    bare_list = copy.deepcopy(good) | {"name": "bare-list"}
    bare_list["workflow"]["2"]["inputs"]["sigma"] = [1, 2, 3]
    _write(tmp_path, "bare-list.json", bare_list)
    typo = copy.deepcopy(good) | {"name": "typo", "bindigs": {}}
    _write(tmp_path, "typo.json", typo)
    _write(tmp_path, "z-duplicate.json", good)

    registry = TemplateRegistry.load(tmp_path)

    assert registry.names() == ["model-free"]
    reasons = {p.path.name: p.reason for p in registry.problems}
    assert set(reasons) == {
        "not-json.json",
        "no-workflow.json",
        "bad-binding.json",
        "bad-input.json",
        "bare-list.json",
        "typo.json",
        "z-duplicate.json",
    }
    assert "Invalid JSON" in reasons["not-json.json"]
    assert "workflow: Field required" in reasons["no-workflow.json"]
    assert "binding seed: node 99 is not in the workflow" in reasons["bad-binding.json"]
    assert "has no input 'widht'" in reasons["bad-input.json"]
    assert '{"__value__": [...]}' in reasons["bare-list.json"]
    assert "bindigs" in reasons["typo.json"]
    assert "already used by a-good.json" in reasons["z-duplicate.json"]
    assert str(registry.problems[0]).startswith(registry.problems[0].path.name + ": ")


def test_a_dropped_in_template_is_picked_up(tmp_path: Path) -> None:
    mine = json.loads((DEFAULT_TEMPLATES_DIR / "model-free.json").read_text())
    mine["name"] = "my-look"
    _write(tmp_path, "my-look.json", mine)
    assert TemplateRegistry.load(tmp_path).get("my-look").name == "my-look"


def test_missing_template_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TemplateRegistry.load(tmp_path / "nope")


def test_unknown_template_error_names_the_available_ones(registry: TemplateRegistry) -> None:
    with pytest.raises(UnknownTemplateError) as info:
        registry.get("img2img")
    assert "model-free, txt2img, txt2img-reference" in str(info.value)
    assert "txt2img" in registry
    assert len(registry) == 3


# =========================================================================== compile


def test_model_free_applies_only_its_declared_bindings(registry: TemplateRegistry) -> None:
    template = registry.get("model-free")
    before = copy.deepcopy(template.workflow)
    graph = _compile(template, loras=[Lora(name="kai.safetensors")])
    assert graph["1"]["inputs"] == {
        "width": 640,
        "height": 768,
        "batch_size": 2,
        "color": prompt_color("Kai Nakamura, rooftop at dusk"),
    }
    assert graph["2"]["inputs"] == before["2"]["inputs"], "no seed/sampler/etc. to apply"
    assert graph["3"]["inputs"]["filename_prefix"] == PREFIX
    assert set(graph) == {"1", "2", "3"}, "no LoRA binding: LoRAs are not applied"
    assert template.workflow == before, "compiling must not modify the template"


def test_prompt_colour_is_deterministic_and_differs_between_prompts() -> None:
    assert prompt_color("a") == prompt_color("a")
    assert prompt_color("a") != prompt_color("b")
    assert 0 <= prompt_color("a") <= 0xFFFFFF


def test_txt2img_gets_every_parameter(registry: TemplateRegistry) -> None:
    params = RenderParams(
        steps=28,
        cfg=6.5,
        width=640,
        height=768,
        batch_size=2,
        sampler="dpmpp_2m",
        scheduler="karras",
        checkpoint="anything-v5.safetensors",
    )
    graph = _compile(registry.get("txt2img"), params=params)
    assert graph["6"]["inputs"]["text"] == "Kai Nakamura, rooftop at dusk"
    assert graph["7"]["inputs"]["text"] == "lowres"
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (1234, 28, 6.5)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("dpmpp_2m", "karras")
    assert graph["5"]["inputs"] == {"width": 640, "height": 768, "batch_size": 2}
    assert graph["4"]["inputs"]["ckpt_name"] == "anything-v5.safetensors"
    assert graph["9"]["inputs"]["filename_prefix"] == PREFIX


def test_no_checkpoint_keeps_the_template_default(registry: TemplateRegistry) -> None:
    graph = _compile(registry.get("txt2img"))
    assert graph["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"


def test_loras_are_chained_between_checkpoint_and_its_consumers(
    registry: TemplateRegistry,
) -> None:
    graph = _compile(
        registry.get("txt2img"),
        loras=[Lora(name="kai.safetensors", strength=0.8), Lora(name="mika.safetensors")],
    )
    first, second = graph["10"], graph["11"]
    assert first["class_type"] == second["class_type"] == "LoraLoader"
    assert first["inputs"] == {
        "model": ["4", 0],
        "clip": ["4", 1],
        "lora_name": "kai.safetensors",
        "strength_model": 0.8,
        "strength_clip": 0.8,
    }
    assert (second["inputs"]["model"], second["inputs"]["clip"]) == (["10", 0], ["10", 1])
    assert graph["3"]["inputs"]["model"] == ["11", 0]
    assert graph["6"]["inputs"]["clip"] == graph["7"]["inputs"]["clip"] == ["11", 1]
    assert graph["8"]["inputs"]["vae"] == ["4", 2], "VAE does not go through LoRAs"


def test_no_loras_leaves_the_graph_as_the_template(registry: TemplateRegistry) -> None:
    template = registry.get("txt2img")
    assert set(_compile(template)) == set(template.workflow)


def test_reference_template_binds_the_first_reference_and_its_weight(
    registry: TemplateRegistry,
) -> None:
    refs = [BoundReference("refs/aaa.png", weight=0.6), BoundReference("refs/bbb.png")]
    graph = _compile(
        registry.get("txt2img-reference"), reference_images=refs, loras=[Lora(name="k")]
    )
    assert graph["10"]["inputs"]["image"] == "refs/aaa.png"
    assert graph["12"]["inputs"]["weight"] == 0.6
    lora_id = "13"
    assert graph[lora_id]["inputs"]["model"] == ["4", 0]
    assert graph["11"]["inputs"]["model"] == [lora_id, 0], "IP-Adapter gets the LoRA'd model"
    assert graph["3"]["inputs"]["model"] == ["12", 0], "sampler keeps the IP-Adapter model"


def test_reference_template_without_a_reference_is_refused(registry: TemplateRegistry) -> None:
    with pytest.raises(TemplateError, match="needs a reference image"):
        _compile(registry.get("txt2img-reference"))


def test_list_values_are_written_as_wrapped_literals() -> None:
    template = WorkflowTemplate.model_validate(
        {
            "name": "lists",
            "workflow": {"1": {"class_type": "X", "inputs": {"text": ""}}},
            "bindings": {"negative": {"node": "1", "input": "text"}},
        }
    )
    graph = compile_workflow(
        template,
        prompt="",
        negative=["a", "b"],  # type: ignore[arg-type]
        params=RenderParams(),
        filename_prefix="x",
        seed=0,
    )
    assert graph["1"]["inputs"]["text"] == {"__value__": ["a", "b"]}


def test_prompt_id_is_a_deterministic_uuid_per_job_and_attempt() -> None:
    first = derive_prompt_id(JOB, 1)
    assert first == derive_prompt_id(str(JOB), 1)
    assert first != derive_prompt_id(JOB, 2)
    assert first != derive_prompt_id(uuid.uuid4(), 1)
    assert uuid.UUID(first).version == 5
    with pytest.raises(ValueError):
        derive_prompt_id(JOB, 0)


def test_filename_prefix_is_unique_per_job_and_attempt() -> None:
    assert filename_prefix_for(JOB, 3) == f"jobs/{JOB}/a3/img"


# =========================================================================== object_info


def test_model_free_template_validates_on_a_server_without_models(
    registry: TemplateRegistry, object_info: dict[str, Any]
) -> None:
    assert validate_against_object_info(_compile(registry.get("model-free")), object_info) == []


def test_capture_14_problems_are_named_before_submitting(object_info: dict[str, Any]) -> None:
    problems = validate_against_object_info(CAPTURES["14_request_prompt"], object_info)
    assert len(problems) == 2
    sampler, checkpoint = problems
    assert sampler.startswith(
        "node 3 (KSampler) input sampler_name: 'euler_a' is not one of the allowed values "
        "['euler', 'euler_cfg_pp', 'euler_ancestral',"
    )
    assert "(42 in total)" in sampler
    assert "did you mean" in sampler and "'euler_ancestral'" in sampler
    assert checkpoint == (
        "node 4 (CheckpointLoaderSimple) input ckpt_name: 'anything-v5.safetensors' is not one "
        "of the allowed values [] (the server lists none: are the files installed on it?)"
    )


def test_txt2img_on_a_server_without_models_names_each_missing_file(
    registry: TemplateRegistry, object_info: dict[str, Any]
) -> None:
    graph = _compile(registry.get("txt2img"), loras=[Lora(name="kai.safetensors")])
    problems = validate_against_object_info(graph, object_info)
    assert [p.split(":")[0] for p in problems] == [
        "node 4 (CheckpointLoaderSimple) input ckpt_name",
        "node 10 (LoraLoader) input lora_name",
    ]


def test_reference_template_reports_its_missing_custom_nodes(
    registry: TemplateRegistry, object_info: dict[str, Any]
) -> None:
    graph = _compile(
        registry.get("txt2img-reference"), reference_images=[BoundReference("refs/new.png")]
    )
    problems = validate_against_object_info(graph, object_info)
    assert "node 11 (IPAdapterUnifiedLoader): node class is not installed on this server" in (
        problems
    )
    assert "node 12 (IPAdapter): node class is not installed on this server" in problems
    # LoadImage lists input/ as it was when object_info was fetched; a reference
    # uploaded since must not be reported.
    assert not any("LoadImage" in p for p in problems)


def _empty_image(**inputs: Any) -> dict[str, Any]:
    base = {"width": 64, "height": 64, "batch_size": 1, "color": 0}
    return {"class_type": "EmptyImage", "inputs": base | inputs}


def _blur(**inputs: Any) -> dict[str, Any]:
    base = {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}
    return {"class_type": "ImageBlur", "inputs": base | inputs}


def _save(**inputs: Any) -> dict[str, Any]:
    base = {"images": ["2", 0], "filename_prefix": "x"}
    return {"class_type": "SaveImage", "inputs": base | inputs}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"2": {"class_type": "NoSuchNodeClass", "inputs": {"image": ["1", 0]}}},
            "node 2 (NoSuchNodeClass): node class is not installed on this server",
        ),
        (
            {"2": {"class_type": "ImageBlurr", "inputs": {"image": ["1", 0]}}},
            "node 2 (ImageBlurr): node class is not installed on this server; "
            "did you mean ImageBlur or ImageBlend?",
        ),
        (
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 64, "batch_size": 1, "color": 0},
                }
            },
            "node 1 (EmptyImage) input height: required input is missing",
        ),
        (
            {"1": _empty_image(width=99999)},
            "node 1 (EmptyImage) input width: 99999 is above the maximum 16384",
        ),
        (
            {"2": _blur(sigma=0.0)},
            "node 2 (ImageBlur) input sigma: 0.0 is below the minimum 0.1",
        ),
        (
            {"1": _empty_image(width="wide")},
            "node 1 (EmptyImage) input width: 'wide' is not a valid INT",
        ),
        (
            {"2": _blur(image=5)},
            "node 2 (ImageBlur) input image: expects a link to a IMAGE output, got the literal 5",
        ),
        (
            {"3": _save(images=["7", 0])},
            "node 3 (SaveImage) input images: linked to node 7, which is not in the workflow",
        ),
        (
            {"3": _save(images=["1", 5])},
            "node 3 (SaveImage) input images: linked to output 5 of node 1 (EmptyImage), "
            "which has 1 output(s)",
        ),
        (
            {
                "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
                "3": _save(images=["1", 1]),
            },
            "node 3 (SaveImage) input images: linked to node 1 (LoadImage) output 1 of type "
            "MASK, but expects IMAGE",
        ),
        (
            {"3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}},
            "workflow has no output node (SaveImage, PreviewImage ...): "
            "the server would refuse it (prompt_no_outputs)",
        ),
    ],
)
def test_object_info_check_names_node_input_and_allowed_values(
    object_info: dict[str, Any], change: dict[str, Any], expected: str
) -> None:
    graph = {"1": _empty_image(), "2": _blur(), "3": _save()} | change
    assert (
        validate_against_object_info({"1": _empty_image(), "2": _blur(), "3": _save()}, object_info)
        == []
    )
    assert expected in validate_against_object_info(graph, object_info)
