"""Issue 12, item 2: the structured failure problems, and how the CLI prints them."""

from __future__ import annotations

from typing import Any

from cli.failures import failure_lines, wrap_lines
from services.renderer.rendering import validation_problems
from shared.workflows import object_info_problems, validate_against_object_info
from tests.unit.test_comfyui_captures import CAPTURES
from tests.unit.test_comfyui_errors import _rejection

LONG = (
    "node 4 (CheckpointLoaderSimple) input ckpt_name: 'v1-5-pruned-emaonly.safetensors' is "
    "not one of the allowed values [] (the server lists none: are the files installed on it?)"
)


def test_comfyuis_node_errors_become_structured_problems_in_readable_order() -> None:
    error = _rejection(CAPTURES["14_body"])
    problems = validation_problems(error)
    assert [p.message for p in problems] == error.readable()
    sampler, checkpoint = problems
    assert (sampler.node, sampler.node_class, sampler.input, sampler.value) == (
        "3",
        "KSampler",
        "sampler_name",
        "euler_a",
    )
    assert sampler.allowed is None  # the server did not send the list
    assert (checkpoint.node, checkpoint.node_class, checkpoint.input) == (
        "4",
        "CheckpointLoaderSimple",
        "ckpt_name",
    )
    assert checkpoint.value == "anything-v5.safetensors"
    assert checkpoint.allowed == [] and checkpoint.allowed_total == 0
    assert checkpoint.hint


def test_newer_comfyui_combo_configs_give_the_allowed_values() -> None:
    body: dict[str, Any] = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "failed"},
        "node_errors": {
            "10": {
                "class_type": "LoraLoader",
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "lora_name: 'kai.safetensors' not in ['a.safetensors']",
                        "extra_info": {
                            "input_name": "lora_name",
                            "input_config": ["COMBO", {"options": ["a.safetensors"]}],
                            "received_value": "kai.safetensors",
                        },
                    }
                ],
            }
        },
    }
    (problem,) = validation_problems(_rejection(body))
    assert problem.input == "lora_name" and problem.value == "kai.safetensors"
    assert problem.allowed == ["a.safetensors"] and problem.allowed_total == 1


def test_object_info_problems_name_node_input_value_and_allowed_values() -> None:
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0]}},
    }
    object_info = {
        "CheckpointLoaderSimple": {
            "input": {"required": {"ckpt_name": [["a.safetensors", "x.safetensor"]]}},
            "output": ["MODEL"],
        },
        "SaveImage": {"input": {"required": {"images": ["MODEL"]}}, "output_node": True},
    }
    (problem,) = object_info_problems(workflow, object_info)
    assert (problem.node, problem.node_class, problem.input) == (
        "4",
        "CheckpointLoaderSimple",
        "ckpt_name",
    )
    assert problem.value == "x.safetensors"
    assert problem.allowed == ["a.safetensors", "x.safetensor"] and problem.allowed_total == 2
    assert problem.hint is not None and "x.safetensor" in problem.hint
    assert validate_against_object_info(workflow, object_info) == [problem.message]


def test_cli_lines_keep_every_word_whole_and_put_each_problem_on_its_own_line() -> None:
    problem = {"message": LONG, "allowed": [], "allowed_total": 0, "hint": "install it"}
    lines = failure_lines("workflow 'txt2img' does not fit backend", [problem])
    assert lines == ["workflow 'txt2img' does not fit backend", f"- {LONG}", "    hint: install it"]
    wrapped = wrap_lines(lines, 40)
    assert all(len(line) <= 40 for line in wrapped if " " in line.strip())
    words = " ".join(wrapped).split()
    assert "'v1-5-pruned-emaonly.safetensors'" in words
    assert " ".join(words) == " ".join(" ".join(lines).split())
