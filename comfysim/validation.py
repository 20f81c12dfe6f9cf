"""Prompt validation, a close port of ComfyUI 0.3.64 ``execution.validate_prompt``.

The structure deliberately follows the real code (including its quirks) so that
error types, messages, ``details``, ``extra_info``, the order of ``node_errors``
and the ``dependent_outputs`` lists come out the same:

* whole-prompt errors (``invalid_prompt``, ``prompt_no_outputs``) stop at once;
* every output node is validated recursively (upstream first); results are
  memoised in ``validated`` in post-order, which fixes the ``node_errors`` order;
* an upstream failure marks downstream nodes invalid *without* errors, so
  ``error.details`` only lists the output nodes' own problems;
* literal inputs are converted in place (``"64"`` becomes ``64`` for an INT), and
  that converted workflow is what gets queued;
* a link to a missing output slot raises ``IndexError`` inside validation and is
  reported as ``exception_during_validation`` with a traceback.

Only the input-type checks need the node catalogue, so any class present in
``/object_info`` validates exactly like on the real server, even the ones the
simulator cannot execute.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfysim.nodes import Dirs, resolve_input_path
from comfysim.objectinfo import ObjectInfo

__all__ = ["ValidationResult", "full_type_name", "validate_node_input", "validate_prompt"]


def full_type_name(klass: type) -> str:
    """``module.QualName`` of an exception class, ``QualName`` for builtins (as ComfyUI)."""
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


def _validate_load_image(dirs: Dirs, image: Any) -> bool | str:
    path = resolve_input_path(str(image), dirs.input_dir, dirs.output_dir, dirs.temp_dir)
    if not path.exists():
        return f"Invalid image file: {image}"
    return True


#: Classes with a ``VALIDATE_INPUTS`` classmethod: (argument names, function).
CUSTOM_VALIDATORS: dict[str, tuple[tuple[str, ...], Callable[..., bool | str]]] = {
    "LoadImage": (("image",), _validate_load_image),
    "LoadImageMask": (("image",), _validate_load_image),
}


def validate_node_input(received_type: Any, input_type: Any, strict: bool = False) -> bool:
    """Whether an output of ``received_type`` may feed an input of ``input_type``."""
    if received_type == input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received_types = {t.strip() for t in received_type.split(",")}
    input_types = {t.strip() for t in input_type.split(",")}
    if "*" in received_types or "*" in input_types:
        return True
    if received_types == input_types:
        return True
    if strict:
        return input_types.issubset(received_types)
    return len(received_types.intersection(input_types)) > 0


@dataclass
class ValidationResult:
    """Outcome of :func:`validate_prompt` (mirrors ComfyUI's 4-tuple)."""

    ok: bool
    error: dict[str, Any] | None
    good_outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


def _whole_prompt_error(type_: str, message: str, details: str) -> ValidationResult:
    error = {"type": type_, "message": message, "details": details, "extra_info": {}}
    return ValidationResult(False, error, [], {})


def _input_info(
    class_inputs: dict[str, Any], name: str
) -> tuple[Any, str | None, dict[str, Any] | None]:
    for category in ("required", "optional", "hidden"):
        specs = class_inputs.get(category)
        if isinstance(specs, dict) and name in specs:
            spec = specs[name]
            if not isinstance(spec, list | tuple):
                return spec, category, {}
            input_type = spec[0]
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return input_type, category, extra
    return None, None, None


class _Validator:
    def __init__(self, prompt: Any, info: ObjectInfo, dirs: Dirs) -> None:
        self.prompt = prompt
        self.info = info
        self.dirs = dirs
        self.validated: dict[Any, tuple[bool, list[dict[str, Any]], Any]] = {}
        self._class_cache: dict[str, dict[str, Any]] = {}

    def _class_entry(self, class_type: str) -> dict[str, Any]:
        entry = self._class_cache.get(class_type)
        if entry is None:
            found = self.info.get(class_type)
            entry = found if found is not None else {}
            self._class_cache[class_type] = entry
        return entry

    def validate_inputs(self, unique_id: Any) -> tuple[bool, list[dict[str, Any]], Any]:
        prompt = self.prompt
        if unique_id in self.validated:
            return self.validated[unique_id]

        inputs = prompt[unique_id]["inputs"]
        class_type = prompt[unique_id]["class_type"]
        entry = self._class_entry(class_type)
        class_inputs: dict[str, Any] = entry.get("input", {})
        valid_inputs: list[str] = []
        for category in ("required", "optional"):
            for name in class_inputs.get(category, {}):
                if name not in valid_inputs:
                    valid_inputs.append(name)

        errors: list[dict[str, Any]] = []
        valid = True
        custom = CUSTOM_VALIDATORS.get(class_type)
        validate_function_inputs: tuple[str, ...] = custom[0] if custom else ()

        for x in valid_inputs:
            input_type, input_category, extra_info = _input_info(class_inputs, x)
            assert extra_info is not None
            if x not in inputs:
                if input_category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": f"{x}",
                            "extra_info": {"input_name": x},
                        }
                    )
                continue

            val = inputs[x]
            info = [input_type, extra_info]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(
                        {
                            "type": "bad_linked_input",
                            "message": "Bad linked input, must be a length-2 list of "
                            "[node_id, slot_index]",
                            "details": f"{x}",
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "received_value": val,
                            },
                        }
                    )
                    continue

                o_id = val[0]
                o_class_type = prompt[o_id]["class_type"]
                r = self.info.return_types(o_class_type)
                received_type = r[val[1]]
                if not validate_node_input(received_type, input_type):
                    details = (
                        f"{x}, received_type({received_type}) mismatch input_type({input_type})"
                    )
                    errors.append(
                        {
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": details,
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "received_type": received_type,
                                "linked_node": val,
                            },
                        }
                    )
                    continue
                try:
                    linked = self.validate_inputs(o_id)
                    if linked[0] is False:
                        valid = False
                        continue
                except Exception as ex:
                    typ, _, tb = sys.exc_info()
                    assert typ is not None
                    valid = False
                    reasons = [
                        {
                            "type": "exception_during_inner_validation",
                            "message": "Exception when validating inner node",
                            "details": str(ex),
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "exception_message": str(ex),
                                "exception_type": full_type_name(typ),
                                "traceback": traceback.format_tb(tb),
                                "linked_node": val,
                            },
                        }
                    ]
                    self.validated[o_id] = (False, reasons, o_id)
                    continue
            else:
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                        inputs[x] = val
                    if input_type == "INT":
                        val = int(val)
                        inputs[x] = val
                    if input_type == "FLOAT":
                        val = float(val)
                        inputs[x] = val
                    if input_type == "STRING":
                        val = str(val)
                        inputs[x] = val
                    if input_type == "BOOLEAN":
                        val = bool(val)
                        inputs[x] = val
                except Exception as ex:
                    errors.append(
                        {
                            "type": "invalid_input_type",
                            "message": f"Failed to convert an input value to a {input_type} value",
                            "details": f"{x}, {val}, {ex}",
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "received_value": val,
                                "exception_message": str(ex),
                            },
                        }
                    )
                    continue

                if x not in validate_function_inputs:
                    if "min" in extra_info and val < extra_info["min"]:
                        errors.append(
                            {
                                "type": "value_smaller_than_min",
                                "message": f"Value {val} smaller than min of {extra_info['min']}",
                                "details": f"{x}",
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": info,
                                    "received_value": val,
                                },
                            }
                        )
                        continue
                    if "max" in extra_info and val > extra_info["max"]:
                        errors.append(
                            {
                                "type": "value_bigger_than_max",
                                "message": f"Value {val} bigger than max of {extra_info['max']}",
                                "details": f"{x}",
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": info,
                                    "received_value": val,
                                },
                            }
                        )
                        continue
                    if isinstance(input_type, list) or input_type == "COMBO":
                        if input_type == "COMBO":
                            combo_options = extra_info.get("options", [])
                        else:
                            combo_options = input_type
                        if val not in combo_options:
                            input_config: Any = info
                            if len(combo_options) > 20:
                                list_info = f"(list of length {len(combo_options)})"
                                input_config = None
                            else:
                                list_info = str(combo_options)
                            errors.append(
                                {
                                    "type": "value_not_in_list",
                                    "message": "Value not in list",
                                    "details": f"{x}: '{val}' not in {list_info}",
                                    "extra_info": {
                                        "input_name": x,
                                        "input_config": input_config,
                                        "received_value": val,
                                    },
                                }
                            )
                            continue

        if custom is not None:
            arg_names, function = custom
            # Only literal inputs are known at validation time (linked ones are
            # skipped by ComfyUI's get_input_data as well).
            kwargs = {
                name: inputs[name]
                for name in arg_names
                if name in inputs and not isinstance(inputs[name], list)
            }
            if len(kwargs) == len(arg_names):
                result = function(self.dirs, **kwargs)
                if result is not True:
                    for name in kwargs:
                        details = f"{name}"
                        if result is not False:
                            details += f" - {result!s}"
                        errors.append(
                            {
                                "type": "custom_validation_failed",
                                "message": "Custom validation failed for node",
                                "details": details,
                                "extra_info": {"input_name": name},
                            }
                        )

        ret: tuple[bool, list[dict[str, Any]], Any]
        if len(errors) > 0 or valid is not True:
            ret = (False, errors, unique_id)
        else:
            ret = (True, [], unique_id)
        self.validated[unique_id] = ret
        return ret


def validate_prompt(
    prompt: Any,
    partial_execution_list: Any,
    info: ObjectInfo,
    dirs: Dirs,
) -> ValidationResult:
    """Validate an API-format workflow like ComfyUI's ``validate_prompt``.

    Malformed structures (e.g. a node that is not an object) raise, which the
    HTTP layer turns into a 500 exactly like the real server.
    """
    outputs: list[Any] = []
    for x in prompt:
        if "class_type" not in prompt[x]:
            return _whole_prompt_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{x}'",
            )
        class_type = prompt[x]["class_type"]
        if info.get(class_type) is None:
            return _whole_prompt_error(
                "invalid_prompt",
                f"Cannot execute because node {class_type} does not exist.",
                f"Node ID '#{x}'",
            )
        wanted = partial_execution_list is None or x in partial_execution_list
        if info.is_output_node(class_type) and wanted and x not in outputs:
            outputs.append(x)

    if len(outputs) == 0:
        return _whole_prompt_error("prompt_no_outputs", "Prompt has no outputs", "")

    validator = _Validator(prompt, info, dirs)
    good_outputs: list[Any] = []
    errors: list[tuple[Any, list[dict[str, Any]]]] = []
    node_errors: dict[Any, Any] = {}
    for o in outputs:
        valid = False
        reasons: list[dict[str, Any]] = []
        try:
            m = validator.validate_inputs(o)
            valid = m[0]
            reasons = m[1]
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            assert typ is not None
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(ex),
                    "extra_info": {
                        "exception_type": full_type_name(typ),
                        "traceback": traceback.format_tb(tb),
                    },
                }
            ]
            validator.validated[o] = (False, reasons, o)

        if valid is True:
            good_outputs.append(o)
        else:
            if len(reasons) > 0:
                errors.append((o, reasons))
            # Quirk kept from ComfyUI: every failing node validated so far gets
            # this output appended to its dependent_outputs.
            for node_id, result in validator.validated.items():
                if result[0] is not True and len(result[1]) > 0:
                    if node_id not in node_errors:
                        node_errors[node_id] = {
                            "errors": result[1],
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        }
                    node_errors[node_id]["dependent_outputs"].append(o)

    if len(good_outputs) == 0:
        lines = [f"{err['message']}: {err['details']}" for _, errs in errors for err in errs]
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "\n".join(lines),
            "extra_info": {},
        }
        return ValidationResult(False, error, [], node_errors)
    return ValidationResult(True, None, good_outputs, node_errors)
