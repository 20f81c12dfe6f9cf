"""Failure classification: which ComfyUI failures are transient, and what we show."""

from __future__ import annotations

from typing import Any

import pytest

from services.renderer.comfyui import (
    ComfyConnectionError,
    ComfyError,
    ComfyExecutionError,
    ComfyFileNotFound,
    ComfyHTTPError,
    ComfyInterrupted,
    ComfyOutOfMemory,
    ComfyPromptDeleted,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyServerError,
    ComfyTimeoutError,
    ComfyValidationError,
    classify_execution_error,
)
from services.renderer.comfyui.models import ExecutionErrorData, PromptAccepted, PromptRejected
from services.renderer.comfyui.sanitize import strip_paths
from tests.unit.test_comfyui_captures import CAPTURES


def _rejection(body: dict[str, Any]) -> ComfyValidationError:
    rejected = PromptRejected.model_validate(body)
    return ComfyValidationError(
        "rejected", error=rejected.error, node_errors=rejected.node_errors, prompt_id="p"
    )


def _execution_error(**overrides: Any) -> ExecutionErrorData:
    data: dict[str, Any] = {
        "prompt_id": "p1",
        "node_id": "3",
        "node_type": "KSampler",
        "executed": ["4", "5"],
        "exception_message": "boom",
        "exception_type": "RuntimeError",
        "traceback": ['  File "/home/render/ComfyUI/execution.py", line 496, in execute\n'],
    }
    data.update(overrides)
    return ExecutionErrorData.model_validate(data)


# --------------------------------------------------------------------------- validation (400)


def test_client_reports_node_errors_when_error_details_are_empty() -> None:
    # Capture 14: error.details is "", everything useful is in node_errors.
    error = _rejection(CAPTURES["14_body"])
    assert error.readable() == [
        "node 3 (KSampler) input sampler_name: value_not_in_list: "
        "'euler_a' not in (list of length 42)",
        "node 4 (CheckpointLoaderSimple) input ckpt_name: value_not_in_list: "
        "'anything-v5.safetensors' not in []",
    ]
    assert error.transient is False
    assert error.kind == "validation"
    assert error.details() == error.readable()
    assert "ckpt_name" in str(error)


@pytest.mark.parametrize(
    ("case", "line"),
    [
        (
            "unknown_node_class",
            "prompt: invalid_prompt: Cannot execute because node NoSuchNodeClass does not "
            "exist. (Node ID '#2')",
        ),
        (
            "missing_required_input",
            "node 1 (EmptyImage) input height: required_input_missing: Required input is missing",
        ),
        (
            "invalid_value_bigger_than_max",
            "node 1 (EmptyImage) input width: value_bigger_than_max: "
            "Value 99999 bigger than max of 16384",
        ),
        (
            "invalid_value_smaller_than_min",
            "node 2 (ImageBlur) input sigma: value_smaller_than_min: "
            "Value 0.0 smaller than min of 0.1",
        ),
        (
            "invalid_value_not_in_list",
            "node 3 (ImageScale) input upscale_method: value_not_in_list: "
            "'super-resolution-9000' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', "
            "'lanczos']",
        ),
        (
            "loadimage_missing_file",
            "node 1 (LoadImage) input image: custom_validation_failed: "
            "Invalid image file: does-not-exist.png",
        ),
        (
            "bad_link_slot_index",
            "node 4 (SaveImage): exception_during_validation: tuple index out of range",
        ),
        (
            "return_type_mismatch",
            "node 3 (SaveImage) input images: return_type_mismatch: "
            "images, received_type(MASK) mismatch input_type(IMAGE)",
        ),
        ("prompt_no_outputs", "prompt: prompt_no_outputs: Prompt has no outputs"),
        ("no_prompt_key", "prompt: no_prompt: No prompt provided"),
    ],
)
def test_every_captured_400_becomes_readable_lines(case: str, line: str) -> None:
    error = _rejection(CAPTURES["04_cases"][case]["body"])
    assert line in error.readable()
    assert error.transient is False


def test_readable_lines_never_leak_server_paths() -> None:
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "m", "details": ""},
        "node_errors": {
            "1": {
                "class_type": "LoadImage",
                "dependent_outputs": ["2"],
                "errors": [
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": "image - Invalid image file: /srv/comfy/input/x.png",
                        "extra_info": {"input_name": "image"},
                    }
                ],
            }
        },
    }
    assert _rejection(body).readable() == [
        "node 1 (LoadImage) input image: custom_validation_failed: Invalid image file: x.png"
    ]


def test_partial_acceptance_lists_the_dropped_outputs() -> None:
    accepted = PromptAccepted.model_validate(
        CAPTURES["04_cases"]["partially_valid_prompt_is_accepted"]["body"]
    )
    error = ComfyValidationError(
        "partial", node_errors=accepted.node_errors, partial=True, prompt_id=accepted.prompt_id
    )
    assert error.partial is True
    assert error.dropped_outputs == ["5"]
    assert error.readable() == [
        "node 6 (ImageBlur) input blur_radius: value_bigger_than_max: "
        "Value 500 bigger than max of 31"
    ]


# --------------------------------------------------------------------------- execution errors


@pytest.mark.parametrize(
    ("exception_type", "message"),
    [
        ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB"),
        ("torch.cuda.OutOfMemoryError", "CUDA out of memory."),
        ("RuntimeError", "MPS backend out of memory (MPS allocated: 17.00 GB)"),
        ("RuntimeError", "Allocation on device 0 would exceed allowed memory. (out of memory)"),
        ("RuntimeError", "Allocation on device"),
    ],
)
def test_out_of_memory_is_transient(exception_type: str, message: str) -> None:
    error = classify_execution_error(
        _execution_error(exception_type=exception_type, exception_message=message)
    )
    assert isinstance(error, ComfyOutOfMemory)
    assert error.transient is True
    assert error.kind == "out_of_memory"


def test_other_execution_errors_are_permanent_by_default() -> None:
    # Capture 06: a corrupt input image.
    (entry,) = CAPTURES["06_history_body"].values()
    data = ExecutionErrorData.model_validate(entry["status"]["messages"][-1][1])
    error = classify_execution_error(data)
    assert type(error) is ComfyExecutionError
    assert error.transient is False
    assert error.exception_type == "PIL.UnidentifiedImageError"
    assert (error.node_id, error.node_type) == ("1", "LoadImage")
    assert error.details() == [
        "node 1 (LoadImage): PIL.UnidentifiedImageError: "
        "cannot identify image file 'corrupt_capture.png'"
    ]


def test_configured_exception_types_are_transient() -> None:
    data = _execution_error(exception_type="requests.exceptions.ConnectionError")
    error = classify_execution_error(
        data, transient_types=frozenset({"requests.exceptions.ConnectionError"})
    )
    assert error.transient is True
    assert not isinstance(error, ComfyOutOfMemory)


def test_execution_error_tracebacks_and_messages_are_stripped_of_server_paths() -> None:
    (entry,) = CAPTURES["06_history_body"].values()
    data = ExecutionErrorData.model_validate(entry["status"]["messages"][-1][1])
    error = classify_execution_error(data)
    surfaced = " ".join([str(error), error.exception_message, *error.traceback])
    assert "<COMFYUI_ROOT>" not in surfaced
    assert "<VENV>" not in surfaced
    assert 'File "execution.py", line 496' in error.traceback[0]
    assert 'File "PIL/Image.py", line 3730' in error.traceback[-1]
    home = classify_execution_error(_execution_error())
    assert "/home/render" not in " ".join(home.traceback)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('File "/opt/ComfyUI/nodes.py", line 3', 'File "nodes.py", line 3'),
        ("open '/home/u/ComfyUI/input/x.png'", "open 'x.png'"),
        ("C:\\Users\\bob\\ComfyUI\\nodes.py failed", "nodes.py failed"),
        ("/venv/lib/python3.11/site-packages/torch/nn.py", "torch/nn.py"),
        ("steps 1/20, url http://host:8188/view", "steps 1/20, url http://host:8188/view"),
        ("GET /prompt failed", "GET /prompt failed"),
    ],
)
def test_strip_paths_keeps_only_useful_tails(text: str, expected: str) -> None:
    assert strip_paths(text) == expected


# --------------------------------------------------------------------------- the rest


def test_interrupt_is_permanent_only_when_this_client_asked_for_it() -> None:
    asked = ComfyInterrupted("i", prompt_id="p", requested=True)
    not_asked = ComfyInterrupted("i", prompt_id="p", requested=False)
    assert (asked.transient, not_asked.transient) == (False, True)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ComfyConnectionError("refused", maybe_delivered=False), True),
        (ComfyTimeoutError("slow"), True),
        (ComfyServerError("500", status=500), True),
        (ComfyProtocolError("not json"), True),
        (ComfyPromptLost("gone", prompt_id="p"), True),
        (ComfyHTTPError("403", status=403), False),
        (ComfyFileNotFound("404", status=404), False),
        (ComfyPromptDeleted("deleted", prompt_id="p"), False),
        (ComfyValidationError("400"), False),
    ],
)
def test_every_error_class_has_the_documented_transient_flag(
    error: ComfyError, transient: bool
) -> None:
    assert error.transient is transient
    assert isinstance(error, ComfyError)
