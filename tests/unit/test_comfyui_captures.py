"""Real ComfyUI transcripts, trimmed to what the tests need, and the reply-model tests.

The bodies below are copied verbatim from ``comfyui-captures/*.json`` (ComfyUI
0.3.64, commit a125cd8, CPU; server paths already replaced by ``<COMFYUI_ROOT>``):
only requests and timing were dropped. Keeping them here makes the tests run in a
clean clone. The full ``/object_info`` (capture 13) is too big to inline; it is
read from ``comfysim/data/object_info.json`` (an identical copy) by
:func:`load_object_info`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.renderer.comfyui.models import (
    BinaryFrame,
    HistoryReply,
    PromptAccepted,
    PromptRejected,
    QueueReply,
    SystemStats,
    WsUnknown,
    parse_binary_frame,
    parse_ws_text,
)

_REPO = Path(__file__).resolve().parents[2]
_OBJECT_INFO_PATHS = (
    _REPO / "comfysim" / "data" / "object_info.json",
    Path("/work/shared/comfyui-captures/13-object-info-full.json"),
)


def load_object_info() -> dict[str, Any]:
    """Capture 13: the full ``GET /object_info`` of a real server without models."""
    for path in _OBJECT_INFO_PATHS:
        if path.is_file():
            data = json.loads(path.read_text())
            body = data.get("body", data) if "_meta" in data else data
            assert isinstance(body, dict)
            return body
    pytest.skip("capture 13 (object_info) is not available in this checkout")


CAPTURES: dict[str, Any] = json.loads(
    r"""
{
"01_post_body": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "number": 13, "node_errors": {}},
"01_history_body": {"7714e8d9-bfc6-440d-abd5-ba1befefc59d": {"prompt": [13, "7714e8d9-bfc6-440d-abd5-ba1befefc59d", {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 2, "color": 3047912}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}}, "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}}, "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "capture_ok"}}}, {"extra_pnginfo": {"pipeline_job": "job-123"}, "client_id": "154d8e8d1f714bd789fad1361d9df73d"}, ["4"]], "outputs": {"4": {"images": [{"filename": "capture_ok_00003_.png", "subfolder": "", "type": "output"}, {"filename": "capture_ok_00004_.png", "subfolder": "", "type": "output"}]}}, "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "timestamp": 1795238633134}], ["execution_cached", {"nodes": [], "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "timestamp": 1795238633135}], ["execution_success", {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "timestamp": 1795238633158}]]}, "meta": {"4": {"node_id": "4", "display_node": "4", "parent_node": null, "real_node_id": "4"}}}},
"01_ws": [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "154d8e8d1f714bd789fad1361d9df73d"}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "execution_start", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "timestamp": 1795238633134}}, {"type": "execution_cached", "data": {"nodes": [], "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "timestamp": 1795238633135}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d"}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "executing", "data": {"node": "2", "display_node": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d"}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}, "3": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "3", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "3", "parent_node_id": null, "real_node_id": "3"}}}}, {"type": "executing", "data": {"node": "3", "display_node": "3", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d"}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}, "3": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "3", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "3", "parent_node_id": null, "real_node_id": "3"}}}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}, "3": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "3", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "3", "parent_node_id": null, "real_node_id": "3"}, "4": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "4", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "4", "parent_node_id": null, "real_node_id": "4"}}}}, {"type": "executing", "data": {"node": "4", "display_node": "4", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d"}}, {"type": "executed", "data": {"node": "4", "display_node": "4", "output": {"images": [{"filename": "capture_ok_00003_.png", "subfolder": "", "type": "output"}, {"filename": "capture_ok_00004_.png", "subfolder": "", "type": "output"}]}, "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d"}}, {"type": "progress_state", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "2", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}, "3": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "3", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "3", "parent_node_id": null, "real_node_id": "3"}, "4": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "4", "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "display_node_id": "4", "parent_node_id": null, "real_node_id": "4"}}}}, {"type": "execution_success", "data": {"prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d", "timestamp": 1795238633158}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}, {"type": "executing", "data": {"node": null, "prompt_id": "7714e8d9-bfc6-440d-abd5-ba1befefc59d"}}],
"02_ws": [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "c8f19a2adca440249c690cf38664ce57"}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "execution_start", "data": {"prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "timestamp": 1795238633672}}, {"type": "execution_cached", "data": {"nodes": ["1", "2", "3", "4"], "prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "timestamp": 1795238633673}}, {"type": "executed", "data": {"node": "4", "display_node": "4", "output": {"images": [{"filename": "capture_ok_00003_.png", "subfolder": "", "type": "output"}, {"filename": "capture_ok_00004_.png", "subfolder": "", "type": "output"}]}, "prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f"}}, {"type": "progress_state", "data": {"prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "nodes": {"4": {"value": 1, "max": 1, "state": "finished", "node_id": "4", "prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "display_node_id": "4", "parent_node_id": null, "real_node_id": "4"}}}}, {"type": "execution_success", "data": {"prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "timestamp": 1795238633673}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}, {"type": "executing", "data": {"node": null, "prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f"}}],
"02_history_body": {"52ffdb5a-e955-432a-88ce-d843f947b33f": {"prompt": [14, "52ffdb5a-e955-432a-88ce-d843f947b33f", {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 2, "color": 3047912}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}}, "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}}, "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "capture_ok"}}}, {"client_id": "c8f19a2adca440249c690cf38664ce57"}, ["4"]], "outputs": {"4": {"images": [{"filename": "capture_ok_00003_.png", "subfolder": "", "type": "output"}, {"filename": "capture_ok_00004_.png", "subfolder": "", "type": "output"}]}}, "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {"prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "timestamp": 1795238633672}], ["execution_cached", {"nodes": ["1", "2", "3", "4"], "prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "timestamp": 1795238633673}], ["execution_success", {"prompt_id": "52ffdb5a-e955-432a-88ce-d843f947b33f", "timestamp": 1795238633673}]]}, "meta": {"4": {"node_id": "4", "display_node": "4", "parent_node": null, "real_node_id": "4"}}}},
"03_post_body": {"prompt_id": "job-42-7606c6b9", "number": 15, "node_errors": {}},
"04_cases": {"unknown_node_class": {"status": 400, "body": {"error": {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNodeClass does not exist.", "details": "Node ID '#2'", "extra_info": {}}, "node_errors": {}}}, "missing_class_type": {"status": 400, "body": {"error": {"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.", "details": "Node ID '#3'", "extra_info": {}}, "node_errors": {}}}, "missing_required_input": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"1": {"errors": [{"type": "required_input_missing", "message": "Required input is missing", "details": "height", "extra_info": {"input_name": "height"}}], "dependent_outputs": ["4"], "class_type": "EmptyImage"}}}}, "missing_required_link_on_output_node": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "Required input is missing: images", "extra_info": {}}, "node_errors": {"4": {"errors": [{"type": "required_input_missing", "message": "Required input is missing", "details": "images", "extra_info": {"input_name": "images"}}], "dependent_outputs": ["4"], "class_type": "SaveImage"}}}}, "invalid_value_not_in_list": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"3": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "upscale_method: 'super-resolution-9000' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']", "extra_info": {"input_name": "upscale_method", "input_config": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}], "received_value": "super-resolution-9000"}}], "dependent_outputs": ["4"], "class_type": "ImageScale"}}}}, "invalid_value_bigger_than_max": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"1": {"errors": [{"type": "value_bigger_than_max", "message": "Value 99999 bigger than max of 16384", "details": "width", "extra_info": {"input_name": "width", "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}], "received_value": 99999}}], "dependent_outputs": ["4"], "class_type": "EmptyImage"}}}}, "invalid_value_smaller_than_min": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"2": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0.0 smaller than min of 0.1", "details": "sigma", "extra_info": {"input_name": "sigma", "input_config": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}], "received_value": 0.0}}], "dependent_outputs": ["4"], "class_type": "ImageBlur"}}}}, "invalid_input_type": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"1": {"errors": [{"type": "invalid_input_type", "message": "Failed to convert an input value to a INT value", "details": "width, wide, invalid literal for int() with base 10: 'wide'", "extra_info": {"input_name": "width", "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}], "received_value": "wide", "exception_message": "invalid literal for int() with base 10: 'wide'"}}], "dependent_outputs": ["4"], "class_type": "EmptyImage"}}}}, "bad_link_slot_index": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "Exception when validating node: tuple index out of range", "extra_info": {}}, "node_errors": {"4": {"errors": [{"type": "exception_during_validation", "message": "Exception when validating node", "details": "tuple index out of range", "extra_info": {"exception_type": "IndexError", "traceback": ["  File \"<COMFYUI_ROOT>/execution.py\", line 1010, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 790, in validate_inputs\n    received_type = r[val[1]]\n                    ~^^^^^^^^\n"]}}], "dependent_outputs": ["4"], "class_type": "SaveImage"}}}}, "return_type_mismatch": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "Return type mismatch between linked nodes: images, received_type(MASK) mismatch input_type(IMAGE)", "extra_info": {}}, "node_errors": {"3": {"errors": [{"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes", "details": "images, received_type(MASK) mismatch input_type(IMAGE)", "extra_info": {"input_name": "images", "input_config": ["IMAGE", {"tooltip": "The images to save."}], "received_type": "MASK", "linked_node": ["2", 1]}}], "dependent_outputs": ["3"], "class_type": "SaveImage"}}}}, "loadimage_missing_file": {"status": 400, "body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"1": {"errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node", "details": "image - Invalid image file: does-not-exist.png", "extra_info": {"input_name": "image"}}], "dependent_outputs": ["2"], "class_type": "LoadImage"}}}}, "prompt_no_outputs": {"status": 400, "body": {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": {}}}, "no_prompt_key": {"status": 400, "body": {"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}, "node_errors": {}}}, "malformed_json_body": {"status": 500, "body_text": "500 Internal Server Error\n\nServer got itself in trouble"}, "partially_valid_prompt_is_accepted": {"status": 200, "body": {"prompt_id": "e7f27e05-dd66-43ac-b5b7-39fde37ed4fd", "number": 29, "node_errors": {"6": {"errors": [{"type": "value_bigger_than_max", "message": "Value 500 bigger than max of 31", "details": "blur_radius", "extra_info": {"input_name": "blur_radius", "input_config": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}], "received_value": 500}}], "dependent_outputs": ["5"], "class_type": "ImageBlur"}}}}},
"05_system_stats": {"system": {"os": "posix", "ram_total": 25276502016, "ram_free": 23948320768, "comfyui_version": "0.3.64", "required_frontend_version": "1.27.10", "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95", "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]", "pytorch_version": "2.13.0+cpu", "embedded_python": false, "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8188"]}, "devices": [{"name": "cpu", "type": "cpu", "index": null, "vram_total": 25276502016, "vram_free": 23948320768, "torch_vram_total": 25276502016, "torch_vram_free": 23948320768}]},
"05_queue_idle": {"queue_running": [], "queue_pending": []},
"05_history_unknown": {},
"05_history_max_items": {"e7f27e05-dd66-43ac-b5b7-39fde37ed4fd": {"prompt": [29, "e7f27e05-dd66-43ac-b5b7-39fde37ed4fd", {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 2, "color": 3368652}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}}, "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}}, "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "capture_val"}}, "5": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "capture_partial_bad"}}, "6": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 500, "sigma": 1.0}}}, {"client_id": "018da3a7df124ed4a8aa304ff2897f3b"}, ["4"]], "outputs": {"4": {"images": [{"filename": "capture_val_00003_.png", "subfolder": "", "type": "output"}, {"filename": "capture_val_00004_.png", "subfolder": "", "type": "output"}]}}, "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {"prompt_id": "e7f27e05-dd66-43ac-b5b7-39fde37ed4fd", "timestamp": 1795238634716}], ["execution_cached", {"nodes": [], "prompt_id": "e7f27e05-dd66-43ac-b5b7-39fde37ed4fd", "timestamp": 1795238634717}], ["execution_success", {"prompt_id": "e7f27e05-dd66-43ac-b5b7-39fde37ed4fd", "timestamp": 1795238634730}]]}, "meta": {"4": {"node_id": "4", "display_node": "4", "parent_node": null, "real_node_id": "4"}}}},
"06_ws": [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "51e861f1408c472e8d8f9f3b39bd9745"}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "execution_start", "data": {"prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "timestamp": 1795238635585}}, {"type": "execution_cached", "data": {"nodes": [], "prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "timestamp": 1795238635586}}, {"type": "progress_state", "data": {"prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "nodes": {"1": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "1", "prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5"}}, {"type": "execution_error", "data": {"prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "node_id": "1", "node_type": "LoadImage", "executed": [], "exception_message": "cannot identify image file '<COMFYUI_ROOT>/input/corrupt_capture.png'\n", "exception_type": "PIL.UnidentifiedImageError", "traceback": ["  File \"<COMFYUI_ROOT>/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                                                              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 277, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/nodes.py\", line 1647, in load_image\n    img = node_helpers.pillow(Image.open, image_path)\n          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/node_helpers.py\", line 31, in pillow\n    x = fn(arg)\n        ^^^^^^^\n", "  File \"<VENV>/lib/python3.11/site-packages/PIL/Image.py\", line 3730, in open\n    raise UnidentifiedImageError(msg)\n"], "current_inputs": {"image": ["corrupt_capture.png"]}, "current_outputs": ["2", "3", "1"], "timestamp": 1795238635628}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}, {"type": "executing", "data": {"node": null, "prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5"}}],
"06_history_body": {"d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5": {"prompt": [30, "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", {"1": {"class_type": "LoadImage", "inputs": {"image": "corrupt_capture.png"}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}}, "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "capture_err"}}}, {"client_id": "51e861f1408c472e8d8f9f3b39bd9745"}, ["3"]], "outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [["execution_start", {"prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "timestamp": 1795238635585}], ["execution_cached", {"nodes": [], "prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "timestamp": 1795238635586}], ["execution_error", {"prompt_id": "d9f6ef7a-84fe-4804-9259-3f4dc3e9eec5", "node_id": "1", "node_type": "LoadImage", "executed": [], "exception_message": "cannot identify image file '<COMFYUI_ROOT>/input/corrupt_capture.png'\n", "exception_type": "PIL.UnidentifiedImageError", "traceback": ["  File \"<COMFYUI_ROOT>/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                                                              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n", "  File \"<COMFYUI_ROOT>/execution.py\", line 277, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/nodes.py\", line 1647, in load_image\n    img = node_helpers.pillow(Image.open, image_path)\n          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n", "  File \"<COMFYUI_ROOT>/node_helpers.py\", line 31, in pillow\n    x = fn(arg)\n        ^^^^^^^\n", "  File \"<VENV>/lib/python3.11/site-packages/PIL/Image.py\", line 3730, in open\n    raise UnidentifiedImageError(msg)\n"], "current_inputs": {"image": ["corrupt_capture.png"]}, "current_outputs": ["2", "3", "1"], "timestamp": 1795238635628}]]}, "meta": {}}},
"07_ws": [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "034a1280f8d345bb8f40117cceb04690"}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "execution_start", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "timestamp": 1795238636135}}, {"type": "execution_cached", "data": {"nodes": [], "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "timestamp": 1795238636137}}, {"type": "progress_state", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "nodes": {"1": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "1", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c"}}, {"type": "progress_state", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "progress_state", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "10": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "10", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "10", "parent_node_id": null, "real_node_id": "10"}}}}, {"type": "executing", "data": {"node": "10", "display_node": "10", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c"}}, {"type": "progress_state", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "10": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "10", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "10", "parent_node_id": null, "real_node_id": "10"}}}}, {"type": "progress_state", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "10": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "10", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "10", "parent_node_id": null, "real_node_id": "10"}, "11": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "11", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "display_node_id": "11", "parent_node_id": null, "real_node_id": "11"}}}}, {"type": "executing", "data": {"node": "11", "display_node": "11", "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c"}}, {"type": "execution_interrupted", "data": {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "node_id": "11", "node_type": "ImageBlur", "executed": ["10", "1"], "timestamp": 1795238639291}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}, {"type": "executing", "data": {"node": null, "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c"}}],
"07_history_body": {"1cfbf1f1-d462-4e88-924f-527d5e76278c": {"prompt": [31, "1cfbf1f1-d462-4e88-924f-527d5e76278c", {"1": {"class_type": "EmptyImage", "inputs": {"width": 1536, "height": 1536, "batch_size": 1, "color": 8421504}}, "10": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 8.0}}, "11": {"class_type": "ImageBlur", "inputs": {"image": ["10", 0], "blur_radius": 31, "sigma": 8.0}}, "12": {"class_type": "ImageBlur", "inputs": {"image": ["11", 0], "blur_radius": 31, "sigma": 8.0}}, "90": {"class_type": "ImageScale", "inputs": {"image": ["12", 0], "upscale_method": "nearest-exact", "width": 64, "height": 64, "crop": "disabled"}}, "99": {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "capture_interrupt"}}}, {"client_id": "034a1280f8d345bb8f40117cceb04690"}, ["99"]], "outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [["execution_start", {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "timestamp": 1795238636135}], ["execution_cached", {"nodes": [], "prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "timestamp": 1795238636137}], ["execution_interrupted", {"prompt_id": "1cfbf1f1-d462-4e88-924f-527d5e76278c", "node_id": "11", "node_type": "ImageBlur", "executed": ["10", "1"], "timestamp": 1795238639291}]]}, "meta": {}}},
"07_queue_running": {"queue_running": [[31, "1cfbf1f1-d462-4e88-924f-527d5e76278c", {"1": {"class_type": "EmptyImage", "inputs": {"width": 1536, "height": 1536, "batch_size": 1, "color": 8421504}}, "10": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 8.0}}, "11": {"class_type": "ImageBlur", "inputs": {"image": ["10", 0], "blur_radius": 31, "sigma": 8.0}}, "12": {"class_type": "ImageBlur", "inputs": {"image": ["11", 0], "blur_radius": 31, "sigma": 8.0}}, "90": {"class_type": "ImageScale", "inputs": {"image": ["12", 0], "upscale_method": "nearest-exact", "width": 64, "height": 64, "crop": "disabled"}}, "99": {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "capture_interrupt"}}}, {"client_id": "034a1280f8d345bb8f40117cceb04690"}, ["99"]]], "queue_pending": []},
"08_queue_busy": {"queue_running": [[32, "0573799b-05d0-4c85-9f1e-a3b94a693bf3", {"1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1, "color": 1}}, "10": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 8.0}}, "11": {"class_type": "ImageBlur", "inputs": {"image": ["10", 0], "blur_radius": 31, "sigma": 8.0}}, "90": {"class_type": "ImageScale", "inputs": {"image": ["11", 0], "upscale_method": "nearest-exact", "width": 64, "height": 64, "crop": "disabled"}}, "99": {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "capture_q_a"}}}, {"client_id": "6d9df1ccbb134f5191188aa7726d6c1c"}, ["99"]]], "queue_pending": [[-35, "599a1e78-1015-485e-b1ad-b3afd3d1ec77", {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 2, "color": 4}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}}, "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}}, "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "capture_q_d"}}}, {"client_id": "6d9df1ccbb134f5191188aa7726d6c1c"}, ["4"]], [34, "7c4ded65-bf9d-48b1-9984-df5e78f9601b", {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 2, "color": 3}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}}, "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}}, "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "capture_q_c"}}}, {"client_id": "6d9df1ccbb134f5191188aa7726d6c1c"}, ["4"]], [33, "328ea03b-99fa-4cd7-bc70-125773ca8a8f", {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 2, "color": 2}}, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}}, "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}}, "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "capture_q_b"}}}, {"client_id": "6d9df1ccbb134f5191188aa7726d6c1c"}, ["4"]]]},
"08_post_front": {"prompt_id": "599a1e78-1015-485e-b1ad-b3afd3d1ec77", "number": -35, "node_errors": {}},
"09_ws_no_flags": [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "438b2b8b51794d6280551205b9c87d05"}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "execution_start", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "timestamp": 1795238643255}}, {"type": "execution_cached", "data": {"nodes": [], "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "timestamp": 1795238643255}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3"}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}}}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "2", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "executing", "data": {"node": "2", "display_node": "2", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3"}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 0, "max": 3, "state": "running", "node_id": "2", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress", "data": {"value": 0, "max": 3, "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "node": "2"}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 1, "max": 3, "state": "running", "node_id": "2", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress", "data": {"value": 1, "max": 3, "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "node": "2"}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 2, "max": 3, "state": "running", "node_id": "2", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress", "data": {"value": 2, "max": 3, "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "node": "2"}}, {"type": "progress_state", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 3, "max": 3, "state": "finished", "node_id": "2", "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "execution_success", "data": {"prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3", "timestamp": 1795238643256}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}, {"type": "executing", "data": {"node": null, "prompt_id": "caa2887e-1319-4de1-b6dc-127d278e86f3"}}],
"09_ws_flags": [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "ac999d39c42140bfa035e3fffc4814da"}}, {"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 104857600}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, {"type": "execution_start", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "timestamp": 1795238643862}}, {"type": "execution_cached", "data": {"nodes": ["1"], "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "timestamp": 1795238643862}}, {"type": "progress_state", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "nodes": {"2": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "executing", "data": {"node": "2", "display_node": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c"}}, {"type": "progress_state", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "nodes": {"2": {"value": 0, "max": 3, "state": "running", "node_id": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress", "data": {"value": 0, "max": 3, "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "node": "2"}}, {"type": "progress_state", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "nodes": {"2": {"value": 1, "max": 3, "state": "running", "node_id": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress", "data": {"value": 1, "max": 3, "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "node": "2"}}, {"type": "progress_state", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "nodes": {"2": {"value": 2, "max": 3, "state": "running", "node_id": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "progress", "data": {"value": 2, "max": 3, "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "node": "2"}}, {"type": "progress_state", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "nodes": {"2": {"value": 3, "max": 3, "state": "finished", "node_id": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}, {"type": "execution_success", "data": {"prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "timestamp": 1795238643863}}, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}, {"type": "executing", "data": {"node": null, "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c"}}],
"09_binary_no_flags": {"kind": "binary", "length": 203, "first_16_bytes_hex": "000000010000000289504e470d0a1a0a", "event_type": 1, "event_name": "PREVIEW_IMAGE", "image_format_code": 2, "image_format": "PNG", "image_bytes": 195, "image_magic_hex": "89504e470d0a1a0a", "t_ms": 305.0},
"09_binary_flags": {"kind": "binary", "length": 368, "first_16_bytes_hex": "00000004000000a57b226e6f64655f69", "event_type": 4, "event_name": "PREVIEW_IMAGE_WITH_METADATA", "metadata_length": 165, "metadata": {"node_id": "2", "prompt_id": "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2", "image_type": "image/png"}, "image_bytes": 195, "image_magic_hex": "89504e470d0a1a0a", "t_ms": 306.0},
"12_queue_after_restart": {"queue_running": [], "queue_pending": []},
"14_request_prompt": {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "anything-v5.safetensors"}}, "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "Kai Nakamura, anime style, rooftop at dusk", "clip": ["4", 1]}}, "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres, bad anatomy", "clip": ["4", 1]}}, "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}}, "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler_a", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}, "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}, "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "kai", "images": ["8", 0]}}},
"14_body": {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'anything-v5.safetensors' not in []", "extra_info": {"input_name": "ckpt_name", "input_config": [[], {"tooltip": "The name of the checkpoint (model) to load."}], "received_value": "anything-v5.safetensors"}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}, "3": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "sampler_name: 'euler_a' not in (list of length 42)", "extra_info": {"input_name": "sampler_name", "input_config": null, "received_value": "euler_a"}}], "dependent_outputs": ["9"], "class_type": "KSampler"}}}
}
"""
)


# --------------------------------------------------------------------------- helpers


def _frame_from_capture(described: dict[str, Any]) -> bytes:
    """Rebuild a binary frame from its capture description (bytes were not stored)."""
    image = bytes.fromhex(described["image_magic_hex"]).ljust(described["image_bytes"], b"\0")
    if described["event_type"] == 1:
        code: int = described["image_format_code"]
        return (1).to_bytes(4, "big") + code.to_bytes(4, "big") + image
    meta = json.dumps(described["metadata"]).encode()
    return (4).to_bytes(4, "big") + len(meta).to_bytes(4, "big") + meta + image


# --------------------------------------------------------------------------- POST /prompt


@pytest.mark.parametrize("key", ["01_post_body", "03_post_body", "08_post_front"])
def test_post_prompt_200_bodies_parse(key: str) -> None:
    accepted = PromptAccepted.model_validate(CAPTURES[key])
    assert accepted.prompt_id
    assert accepted.node_errors == {}


def test_queue_number_is_read_as_a_float_even_when_negative() -> None:
    assert PromptAccepted.model_validate(CAPTURES["08_post_front"]).number == -35.0
    assert PromptAccepted.model_validate({**CAPTURES["01_post_body"], "number": 5.0}).number == 5.0


def test_client_chosen_prompt_id_comes_back_unchanged() -> None:
    assert PromptAccepted.model_validate(CAPTURES["03_post_body"]).prompt_id == "job-42-7606c6b9"


@pytest.mark.parametrize(
    "case",
    [name for name, case in CAPTURES["04_cases"].items() if case["status"] == 400],
)
def test_every_400_body_of_the_validation_capture_parses(case: str) -> None:
    rejected = PromptRejected.model_validate(CAPTURES["04_cases"][case]["body"])
    assert rejected.error.type
    for node_error in rejected.node_errors.values():
        assert node_error.class_type
        assert node_error.errors


def test_partial_acceptance_reply_is_a_200_that_still_carries_node_errors() -> None:
    case = CAPTURES["04_cases"]["partially_valid_prompt_is_accepted"]
    accepted = PromptAccepted.model_validate(case["body"])
    assert case["status"] == 200
    assert set(accepted.node_errors) == {"6"}
    assert accepted.node_errors["6"].dependent_outputs == ["5"]


def test_txt2img_400_parses_although_input_config_is_null() -> None:
    rejected = PromptRejected.model_validate(CAPTURES["14_body"])
    assert rejected.error.details == ""
    sampler = rejected.node_errors["3"].errors[0]
    assert sampler.input_name == "sampler_name"
    assert sampler.extra_info["input_config"] is None


def test_old_servers_empty_node_errors_list_and_string_error_are_accepted() -> None:
    rejected = PromptRejected.model_validate({"error": "no prompt", "node_errors": []})
    assert rejected.error.message == "no prompt"
    assert rejected.node_errors == {}


def test_reply_without_prompt_id_is_rejected() -> None:
    with pytest.raises(ValidationError):
        PromptAccepted.model_validate({"number": 1, "node_errors": {}})


# --------------------------------------------------------------------------- history, queue


def test_success_history_lists_images_with_node_ids_and_server_timestamps() -> None:
    entry = HistoryReply.model_validate(CAPTURES["01_history_body"]).entry(
        "7714e8d9-bfc6-440d-abd5-ba1befefc59d"
    )
    assert entry is not None
    assert [(i.filename, i.node_id, i.type) for i in entry.images()] == [
        ("capture_ok_00003_.png", "4", "output"),
        ("capture_ok_00004_.png", "4", "output"),
    ]
    started, finished = entry.timestamp("execution_start"), entry.timestamp("execution_success")
    assert started is not None and finished is not None
    assert (finished - started).total_seconds() == pytest.approx(0.024)
    assert entry.prompt.outputs_to_execute == ["4"]


@pytest.mark.parametrize(
    ("key", "status", "event"),
    [
        ("02_history_body", "success", "execution_success"),
        ("05_history_max_items", "success", "execution_success"),
        ("06_history_body", "error", "execution_error"),
        ("07_history_body", "error", "execution_interrupted"),
    ],
)
def test_history_bodies_parse_with_their_outcome_message(key: str, status: str, event: str) -> None:
    (entry,) = HistoryReply.model_validate(CAPTURES[key]).root.values()
    assert entry.status is not None
    assert entry.status.status_str == status
    assert entry.status.message(event) is not None


def test_history_of_an_unknown_id_is_empty_not_an_error() -> None:
    assert HistoryReply.model_validate(CAPTURES["05_history_unknown"]).entry("x") is None


def test_pending_queue_is_returned_in_run_order_not_heap_order() -> None:
    queue = QueueReply.model_validate(CAPTURES["08_queue_busy"])
    heap_numbers = [item.number for item in queue.queue_pending]
    run_numbers = [item.number for item in queue.pending_in_run_order()]
    assert run_numbers == sorted(heap_numbers)
    assert queue.running_ids() == ["0573799b-05d0-4c85-9f1e-a3b94a693bf3"]


@pytest.mark.parametrize("key", ["05_queue_idle", "07_queue_running", "12_queue_after_restart"])
def test_queue_bodies_parse(key: str) -> None:
    QueueReply.model_validate(CAPTURES[key])


def test_system_stats_parse() -> None:
    stats = SystemStats.model_validate(CAPTURES["05_system_stats"])
    assert stats.system.comfyui_version == "0.3.64"
    assert stats.devices[0].name == "cpu"


# --------------------------------------------------------------------------- websocket


@pytest.mark.parametrize(
    "key", ["01_ws", "02_ws", "06_ws", "07_ws", "09_ws_no_flags", "09_ws_flags"]
)
def test_every_captured_websocket_text_frame_parses_to_a_known_type(key: str) -> None:
    for message in CAPTURES[key]:
        parsed = parse_ws_text(json.dumps(message))
        assert not isinstance(parsed, WsUnknown), message["type"]
        assert parsed.type == message["type"]


def test_unknown_websocket_message_types_are_tolerated() -> None:
    parsed = parse_ws_text('{"type": "crystools.monitor", "data": {"cpu_utilization": 3}}')
    assert isinstance(parsed, WsUnknown)


@pytest.mark.parametrize(
    "frame", ["not json", "[1, 2]", '{"type": "executing"}', '{"type": "progress", "data": {}}']
)
def test_malformed_websocket_frames_raise_value_error(frame: str) -> None:
    with pytest.raises(ValueError):
        parse_ws_text(frame)


def test_binary_preview_frames_from_the_capture_parse() -> None:
    plain = parse_binary_frame(_frame_from_capture(CAPTURES["09_binary_no_flags"]))
    assert plain == BinaryFrame(event_type=1, image_format="PNG", payload_size=195)
    with_meta = parse_binary_frame(_frame_from_capture(CAPTURES["09_binary_flags"]))
    assert with_meta.event_type == 4
    assert with_meta.prompt_id == "afc6fffb-3dd4-48c6-abdc-181ffde5ce6c"
    assert with_meta.payload_size == 195


def test_binary_text_frame_parses() -> None:
    frame = parse_binary_frame((3).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"7hello")
    assert (frame.node_id, frame.text) == ("7", "hello")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",
        (1).to_bytes(4, "big"),
        (4).to_bytes(4, "big") + (9999).to_bytes(4, "big") + b"{}",
        (4).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"[]",
        (3).to_bytes(4, "big") + (50).to_bytes(4, "big") + b"x",
    ],
)
def test_truncated_or_lying_binary_frames_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_binary_frame(data)
