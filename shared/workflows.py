"""Workflow templates: API-format ComfyUI graphs with declared parameter bindings.

A template is a JSON file in ``templates/`` (format in ``docs/templates.md``)::

    {"name": "txt2img", "description": "...",
     "requires": {"models": ["checkpoints/v1-5-pruned-emaonly.safetensors"],
                  "custom_nodes": []},
     "workflow": {"3": {"class_type": "KSampler", "inputs": {...}}, ...},
     "bindings": {"seed": {"node": "3", "input": "seed"}, ...}}

``bindings`` say where each job parameter goes, so the renderer never guesses
node ids. :func:`compile_workflow` deep-copies the graph and fills the bound
inputs; a parameter the template does not bind is simply not applied (the
model-free template has no seed, no prompt text, no LoRAs). Before submitting,
:func:`validate_against_object_info` checks the compiled graph against the
server's ``/object_info`` so a missing model or a misspelt sampler is reported
with the node, the input and the allowed values instead of a bare HTTP 400.

Also here, because ingest, renderer and archiver all need the same answer:
:func:`derive_prompt_id` and :func:`filename_prefix_for`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from shared.events import FailureProblem, Lora, ReferenceImage, RenderParams, derived_id

log = structlog.get_logger(__name__)

#: The ``templates/`` folder at the repository root (override in settings).
DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

#: Template names are slugs: they travel in ``JobSpec.template``.
TEMPLATE_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


# =========================================================================== ids


def derive_prompt_id(job_id: uuid.UUID | str, attempt: int) -> str:
    """The ComfyUI ``prompt_id`` for one attempt of one job: a deterministic uuid5.

    Deterministic so a renderer that crashed mid-render can find its prompt again
    (``ComfyUIClient.locate``) without having stored anything; per attempt so a
    retry never overwrites the history entry of the attempt before it (the server
    does not check prompt ids for uniqueness).
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    return str(derived_id("comfyui-prompt", str(job_id), attempt))


def filename_prefix_for(job_id: uuid.UUID | str, attempt: int) -> str:
    """SaveImage prefix ``jobs/<job_id>/a<attempt>/img``.

    Unique per job *and* attempt: ComfyUI caches node outputs by their inputs, so
    an identical prefix would let a resubmission be served from cache without
    writing a file (trap 8); the ``/`` makes SaveImage write into a per-job
    subfolder of output/.
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    return f"jobs/{job_id}/a{attempt}/img"


def prompt_color(prompt: str) -> int:
    """A 24-bit RGB colour derived from the prompt text (sha256, first 3 bytes).

    The model-free template binds it to ``EmptyImage.color`` so different prompts
    give visibly different test images and the same prompt the same image.
    """
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:3], "big")


def reference_upload_name(reference: ReferenceImage) -> str:
    """A content-addressed file name for uploading a reference image to ComfyUI.

    Naming by sha256 makes re-uploads idempotent and never mixes up two images.
    """
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(reference.mime, "png")
    return f"{reference.sha256}.{ext}"


@dataclass(frozen=True, slots=True)
class BoundReference:
    """A reference image as the compiled workflow needs it: already on the server."""

    #: Value for a LoadImage ``image`` input (``UploadedFile.load_image_value()``).
    filename: str
    #: IP-Adapter weight (``ReferenceImage.weight``).
    weight: float = 1.0
    kind: str = "face"


# =========================================================================== template file


def _node_sort_key(node_id: str) -> tuple[int, int, str]:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _as_list(value: object) -> object:
    # A binding may name one target or a list of them.
    return [value] if isinstance(value, dict) else value


class _TemplatePart(BaseModel):
    # Unknown keys in a template are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Target(_TemplatePart):
    """One place a parameter is written: ``inputs[input]`` of workflow node ``node``."""

    node: str = Field(min_length=1)
    input: str = Field(min_length=1)


#: One target or a list of targets; normalised to a list.
Targets = Annotated[list[Target], BeforeValidator(_as_list)]


class OutputRef(_TemplatePart):
    """An output slot of a node (``[node, output]`` as a link)."""

    node: str = Field(min_length=1)
    output: int = Field(ge=0)


class LoraBinding(_TemplatePart):
    """Where per-character LoRA loaders are chained in.

    ``model`` (and ``clip``) name the outputs that feed the rest of the graph,
    normally ``CheckpointLoaderSimple`` outputs 0 (MODEL) and 1 (CLIP). For each
    LoRA a loader node is inserted after them, each loader feeding the next, and
    every input that linked to ``model``/``clip`` is rewired to the last loader.
    Without ``clip``, ``LoraLoaderModelOnly`` is used.
    """

    model: OutputRef
    clip: OutputRef | None = None
    #: Loader class; defaults to LoraLoader (or LoraLoaderModelOnly without clip).
    class_type: str | None = None


class Bindings(_TemplatePart):
    """Declared targets for every job parameter; an omitted one is not applied."""

    prompt: Targets = Field(default_factory=list)
    negative: Targets = Field(default_factory=list)
    seed: Targets = Field(default_factory=list)
    steps: Targets = Field(default_factory=list)
    cfg: Targets = Field(default_factory=list)
    width: Targets = Field(default_factory=list)
    height: Targets = Field(default_factory=list)
    batch_size: Targets = Field(default_factory=list)
    sampler: Targets = Field(default_factory=list)
    scheduler: Targets = Field(default_factory=list)
    checkpoint: Targets = Field(default_factory=list)
    filename_prefix: Targets = Field(default_factory=list)
    #: LoadImage ``image`` input(s) that receive the first reference image.
    reference_image: Targets = Field(default_factory=list)
    #: Weight input(s) (e.g. IP-Adapter ``weight``) that receive its weight.
    reference_weight: Targets = Field(default_factory=list)
    #: INT colour input(s) that receive :func:`prompt_color` of the prompt.
    prompt_color: Targets = Field(default_factory=list)
    loras: LoraBinding | None = None

    def targets(self) -> Iterable[tuple[str, Target]]:
        """Every (binding name, target) pair, for validation."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, list):
                for target in value:
                    yield name, target


class Requirements(_TemplatePart):
    """What a server needs to run the template (documentation and pre-checks)."""

    #: ``<models folder>/<file>``, e.g. ``checkpoints/v1-5-pruned-emaonly.safetensors``.
    models: list[str] = Field(default_factory=list)
    #: Custom node packs, e.g. ``ComfyUI_IPAdapter_plus``.
    custom_nodes: list[str] = Field(default_factory=list)


def _is_link(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


class WorkflowTemplate(_TemplatePart):
    """A validated template file."""

    name: str = Field(pattern=TEMPLATE_NAME_PATTERN)
    description: str = ""
    requires: Requirements = Field(default_factory=Requirements)
    #: The API-format graph, kept as plain JSON so compiling is a deep copy.
    workflow: dict[str, dict[str, Any]] = Field(min_length=1)
    bindings: Bindings = Field(default_factory=Bindings)

    @model_validator(mode="after")
    def _check_graph(self) -> WorkflowTemplate:
        problems: list[str] = []
        for node_id, node in self.workflow.items():
            class_type = node.get("class_type")
            if not isinstance(class_type, str) or not class_type:
                problems.append(f"node {node_id}: missing class_type")
            inputs = node.get("inputs", {})
            if not isinstance(inputs, dict):
                problems.append(f"node {node_id}: inputs must be an object")
                continue
            for name, value in inputs.items():
                if isinstance(value, list):
                    if not _is_link(value):
                        problems.append(
                            f"node {node_id} input {name}: a list that is not a link "
                            '[node_id, output]; write literal lists as {"__value__": [...]}'
                        )
                    elif str(value[0]) not in self.workflow:
                        problems.append(
                            f"node {node_id} input {name}: links to node {value[0]}, "
                            "which is not in the workflow"
                        )
        for binding, target in self.bindings.targets():
            bound = self.workflow.get(target.node)
            if bound is None:
                problems.append(f"binding {binding}: node {target.node} is not in the workflow")
            elif target.input not in bound.get("inputs", {}):
                problems.append(
                    f"binding {binding}: node {target.node} ({bound.get('class_type')}) has no "
                    f"input {target.input!r} (give it a default value in the workflow)"
                )
        loras = self.bindings.loras
        if loras is not None:
            for ref in (loras.model, loras.clip):
                if ref is not None and ref.node not in self.workflow:
                    problems.append(f"binding loras: node {ref.node} is not in the workflow")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# =========================================================================== registry


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """A template file that was skipped, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}"


class UnknownTemplateError(KeyError):
    """``TemplateRegistry.get`` was asked for a name it does not have."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.available = list(available)

    def __str__(self) -> str:
        return f"unknown template {self.name!r}; available: {', '.join(self.available) or 'none'}"


class TemplateError(ValueError):
    """A template cannot be compiled for the given job (e.g. a missing reference)."""


def _summarize(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


#: A template file larger than this is refused (real API workflows are a few KB).
MAX_TEMPLATE_BYTES = 2 * 1024 * 1024


class TemplateRegistry:
    """All valid templates of a folder, by name.

    Users add a template by dropping a ``*.json`` file into the folder. A broken
    file is skipped with its file name and reason in :attr:`problems` (and a log
    line); it never stops the others from loading.
    """

    def __init__(
        self,
        templates: Mapping[str, WorkflowTemplate],
        problems: Sequence[TemplateProblem] = (),
    ) -> None:
        self._templates = dict(templates)
        #: Files that were skipped, with the reason.
        self.problems = list(problems)

    @classmethod
    def load(cls, directory: Path | str = DEFAULT_TEMPLATES_DIR) -> TemplateRegistry:
        """Load every ``*.json`` in ``directory`` (not recursive), in name order.

        Raises ``FileNotFoundError`` if the folder itself is missing: a renderer
        without templates is a deployment error, not a bad template.
        """
        folder = Path(directory)
        if not folder.is_dir():
            raise FileNotFoundError(f"template folder {folder} does not exist")
        templates: dict[str, WorkflowTemplate] = {}
        sources: dict[str, Path] = {}
        problems: list[TemplateProblem] = []
        for path in sorted(folder.glob("*.json")):
            try:
                # A FIFO or a device named *.json would block or never end: regular,
                # reasonably small files only.
                if not path.is_file():
                    problems.append(TemplateProblem(path, "not a regular file"))
                    continue
                if path.stat().st_size > MAX_TEMPLATE_BYTES:
                    problems.append(
                        TemplateProblem(path, f"larger than {MAX_TEMPLATE_BYTES} bytes")
                    )
                    continue
                template = WorkflowTemplate.model_validate_json(path.read_bytes())
            except OSError as exc:
                problems.append(TemplateProblem(path, f"cannot read: {exc.strerror or exc}"))
                continue
            except ValidationError as exc:
                problems.append(TemplateProblem(path, _summarize(exc)))
                continue
            if template.name in templates:
                problems.append(
                    TemplateProblem(
                        path,
                        f"name {template.name!r} already used by {sources[template.name].name}",
                    )
                )
                continue
            if template.name != path.stem:
                log.info("templates.name_differs", file=path.name, name=template.name)
            templates[template.name] = template
            sources[template.name] = path
        for problem in problems:
            log.warning("templates.skipped", file=problem.path.name, reason=problem.reason)
        return cls(templates, problems)

    def names(self) -> list[str]:
        """Template names, sorted."""
        return sorted(self._templates)

    def get(self, name: str) -> WorkflowTemplate:
        """The template called ``name``; raises :class:`UnknownTemplateError`."""
        try:
            return self._templates[name]
        except KeyError:
            raise UnknownTemplateError(name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __len__(self) -> int:
        return len(self._templates)


# =========================================================================== compile


def _literal(value: Any) -> Any:
    # A bare list in an input is read as a link [node, output]; literal lists
    # must be wrapped (protocol section 2).
    return {"__value__": value} if isinstance(value, list) else value


def _apply(graph: dict[str, Any], targets: Sequence[Target], value: Any) -> None:
    for target in targets:
        graph[target.node]["inputs"][target.input] = _literal(copy.deepcopy(value))


def _links_to(value: object, ref: OutputRef) -> bool:
    return _is_link(value) and str(value[0]) == ref.node and value[1] == ref.output  # type: ignore[index]


def _chain_loras(graph: dict[str, Any], binding: LoraBinding, loras: Sequence[Lora]) -> None:
    # Find the consumers first, so the loaders we add are not rewired themselves.
    consumers: list[tuple[str, str, str]] = []
    for node_id, node in graph.items():
        for name, value in node.get("inputs", {}).items():
            if _links_to(value, binding.model):
                consumers.append((node_id, name, "model"))
            elif binding.clip is not None and _links_to(value, binding.clip):
                consumers.append((node_id, name, "clip"))

    numeric = [int(n) for n in graph if n.isdigit()]
    next_id = max(numeric, default=0) + 1
    model_link: list[Any] = [binding.model.node, binding.model.output]
    clip_link: list[Any] | None = (
        [binding.clip.node, binding.clip.output] if binding.clip is not None else None
    )
    for lora in loras:
        node_id = str(next_id)
        next_id += 1
        if clip_link is not None:
            graph[node_id] = {
                "class_type": binding.class_type or "LoraLoader",
                "inputs": {
                    "model": model_link,
                    "clip": clip_link,
                    "lora_name": lora.name,
                    "strength_model": lora.strength,
                    "strength_clip": lora.strength,
                },
                "_meta": {"title": f"LoRA {lora.name}"},
            }
            clip_link = [node_id, 1]
        else:
            graph[node_id] = {
                "class_type": binding.class_type or "LoraLoaderModelOnly",
                "inputs": {
                    "model": model_link,
                    "lora_name": lora.name,
                    "strength_model": lora.strength,
                },
                "_meta": {"title": f"LoRA {lora.name}"},
            }
        model_link = [node_id, 0]

    for node_id, name, kind in consumers:
        link = model_link if kind == "model" else clip_link
        graph[node_id]["inputs"][name] = list(link or [])


def compile_workflow(
    template: WorkflowTemplate,
    *,
    prompt: str,
    negative: str,
    params: RenderParams,
    loras: Sequence[Lora] = (),
    reference_images: Sequence[BoundReference] = (),
    filename_prefix: str,
    seed: int,
) -> dict[str, Any]:
    """Fill ``template`` with one job's parameters; the template is not modified.

    Each parameter is written to the targets its binding declares and ignored
    when the template declares none. ``params.checkpoint`` of ``None`` keeps the
    template's default checkpoint. LoRAs are chained in the given order (pass
    them de-duplicated: a LoRA listed twice is applied twice). A template that
    binds ``reference_image`` uses the first of ``reference_images`` and raises
    :class:`TemplateError` when there is none.
    """
    graph: dict[str, Any] = copy.deepcopy(template.workflow)
    b = template.bindings
    _apply(graph, b.prompt, prompt)
    _apply(graph, b.negative, negative)
    _apply(graph, b.seed, seed)
    _apply(graph, b.steps, params.steps)
    _apply(graph, b.cfg, params.cfg)
    _apply(graph, b.width, params.width)
    _apply(graph, b.height, params.height)
    _apply(graph, b.batch_size, params.batch_size)
    _apply(graph, b.sampler, params.sampler)
    _apply(graph, b.scheduler, params.scheduler)
    if params.checkpoint is not None:
        _apply(graph, b.checkpoint, params.checkpoint)
    _apply(graph, b.filename_prefix, filename_prefix)
    _apply(graph, b.prompt_color, prompt_color(prompt))
    if b.reference_image or b.reference_weight:
        if not reference_images:
            raise TemplateError(
                f"template {template.name!r} needs a reference image and the job has none"
            )
        first = reference_images[0]
        _apply(graph, b.reference_image, first.filename)
        _apply(graph, b.reference_weight, first.weight)
    if b.loras is not None and loras:
        _chain_loras(graph, b.loras, loras)
    return graph


# =========================================================================== validation

_PRIMITIVES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
_SHOW_CHOICES = 8
#: At most this many allowed values travel in a structured problem.
ALLOWED_IN_PROBLEM = 20


def _spec_parts(spec: object) -> tuple[object, dict[str, Any]]:
    """``[type_or_choices, {options}]`` → (type_or_choices, options)."""
    if isinstance(spec, list | tuple) and spec:
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        return spec[0], options
    return spec, {}


def _choices(kind: object, options: Mapping[str, Any]) -> list[Any] | None:
    if isinstance(kind, list):
        return kind
    if kind == "COMBO" and isinstance(options.get("options"), list):
        return list(options["options"])
    return None


def _type_name(kind: object) -> str:
    return "COMBO" if isinstance(kind, list) else str(kind)


def _compatible(produced: object, expected: object) -> bool:
    produced_name, expected_name = _type_name(produced), _type_name(expected)
    if "*" in (produced_name, expected_name) or expected_name == "COMBO":
        return True
    return bool(set(produced_name.split(",")) & set(expected_name.split(",")))


def _choice_problem(where: str, value: object, choices: list[Any]) -> FailureProblem:
    shown = ", ".join(repr(c) for c in choices[:_SHOW_CHOICES])
    if len(choices) > _SHOW_CHOICES:
        shown += f", ... ({len(choices)} in total)"
    text = f"{where}: {value!r} is not one of the allowed values [{shown}]"
    hints: list[str] = []
    if not choices:
        text += " (the server lists none: are the files installed on it?)"
        hints.append("install the file on the backend, or name one it lists")
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=0.6)
    if close:
        suggestion = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        text += "; " + suggestion
        hints.insert(0, suggestion)
    return FailureProblem(
        message=text,
        value=_jsonable(value),
        allowed=[_jsonable(c) for c in choices[:ALLOWED_IN_PROBLEM]],
        allowed_total=len(choices),
        hint="; ".join(hints) or None,
    )


def _jsonable(value: object) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)


def _number_problem(where: str, value: object, kind: str, options: Mapping[str, Any]) -> str | None:
    raw: Any = value  # the server simply calls int()/float() on it; so do we
    try:
        number: float = int(raw) if kind == "INT" else float(raw)
    except (TypeError, ValueError, OverflowError):
        return f"{where}: {value!r} is not a valid {kind}"
    low, high = options.get("min"), options.get("max")
    if isinstance(low, int | float) and number < low:
        return f"{where}: {value!r} is below the minimum {low}"
    if isinstance(high, int | float) and number > high:
        return f"{where}: {value!r} is above the maximum {high}"
    return None


def _check_input(
    workflow: Mapping[str, Any],
    object_info: Mapping[str, Any],
    where: str,
    value: object,
    spec: object,
) -> FailureProblem | str | None:
    kind, options = _spec_parts(spec)
    if _is_link(value):
        assert isinstance(value, list)
        source_id, slot = str(value[0]), int(value[1])
        source = workflow.get(source_id)
        if not isinstance(source, Mapping):
            return f"{where}: linked to node {source_id}, which is not in the workflow"
        source_class = source.get("class_type")
        source_info = object_info.get(source_class) if isinstance(source_class, str) else None
        if not isinstance(source_info, Mapping):
            return None  # the unknown class is reported on its own node
        outputs = source_info.get("output", [])
        if not isinstance(outputs, list) or slot >= len(outputs):
            count = len(outputs) if isinstance(outputs, list) else 0
            return (
                f"{where}: linked to output {slot} of node {source_id} ({source_class}), "
                f"which has {count} output(s)"
            )
        if not _compatible(outputs[slot], kind):
            return (
                f"{where}: linked to node {source_id} ({source_class}) output {slot} of type "
                f"{_type_name(outputs[slot])}, but expects {_type_name(kind)}"
            )
        return None
    if isinstance(value, dict) and "__value__" in value:
        return None  # a wrapped literal list: nothing the object_info spec can check
    if isinstance(value, list):
        return f'{where}: a list that is not a link; wrap literal lists as {{"__value__": [...]}}'
    choices = _choices(kind, options)
    if choices is not None and any(k.endswith("_upload") and v for k, v in options.items()):
        # Upload combos (LoadImage "image_upload") list input/ as it was when
        # /object_info was fetched; files uploaded since (our reference images)
        # are missing from that snapshot. The server checks the file itself.
        return None
    if choices is not None:
        return None if value in choices else _choice_problem(where, value, choices)
    name = _type_name(kind)
    if name in ("INT", "FLOAT"):
        return _number_problem(where, value, name, options)
    if name in _PRIMITIVES or name in ("COMBO", "*"):
        # STRING and BOOLEAN accept anything the server can convert; a COMBO
        # without listed options is filled remotely and cannot be checked here.
        return None
    return f"{where}: expects a link to a {name} output, got the literal {value!r}"


def validate_against_object_info(
    workflow: Mapping[str, Any], object_info: Mapping[str, Any]
) -> list[str]:
    """Check a workflow against a server's ``/object_info`` before submitting it.

    Returns one readable line per problem (empty list = looks valid): the
    ``message`` of each of :func:`object_info_problems`.
    """
    return [p.message for p in object_info_problems(workflow, object_info)]


def object_info_problems(
    workflow: Mapping[str, Any], object_info: Mapping[str, Any]
) -> list[FailureProblem]:
    """Check a workflow against a server's ``/object_info`` before submitting it.

    Returns one structured problem per fault (empty list = looks valid), each with a
    readable ``message`` and, where it applies, the node, input, value given, the
    allowed values and a hint:

    * node classes that are not installed (with close names);
    * required inputs that are missing;
    * combo values not in the allowed list (model files, samplers ...), showing
      the allowed values and a "did you mean";
    * INT/FLOAT values that do not convert or are outside min/max;
    * literals given to inputs that need a link, links to missing nodes or
      output slots, and links whose type does not match.

    Unlike the server, every node is checked, not only those upstream of an
    output: templates have no dead branches, and a dead branch with an error is a
    template bug worth hearing about.
    """
    problems: list[FailureProblem] = []
    all_known = True
    has_output = False
    for node_id in sorted(workflow, key=_node_sort_key):
        node = workflow[node_id]
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        if not isinstance(class_type, str) or not class_type:
            problems.append(
                FailureProblem(message=f"node {node_id}: missing class_type", node=node_id)
            )
            all_known = False
            continue
        where = f"node {node_id} ({class_type})"
        at = {"node": node_id, "node_class": class_type}
        info = object_info.get(class_type)
        if not isinstance(info, Mapping):
            all_known = False
            close = difflib.get_close_matches(class_type, list(object_info), n=3, cutoff=0.7)
            hint = f"did you mean {' or '.join(close)}?" if close else None
            problems.append(
                FailureProblem(
                    message=f"{where}: node class is not installed on this server"
                    + (f"; {hint}" if hint else ""),
                    hint=hint or "install the custom node on the backend",
                    **at,
                )
            )
            continue
        has_output = has_output or bool(info.get("output_node"))
        sections = info.get("input", {})
        required = sections.get("required", {}) if isinstance(sections, Mapping) else {}
        optional = sections.get("optional", {}) if isinstance(sections, Mapping) else {}
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            problems.append(FailureProblem(message=f"{where}: inputs must be an object", **at))
            continue
        for name in required:
            if name not in inputs:
                problems.append(
                    FailureProblem(
                        message=f"{where} input {name}: required input is missing",
                        input=name,
                        **at,
                    )
                )
        for name, value in inputs.items():
            spec = required.get(name, optional.get(name))
            if spec is None:
                continue  # hidden or unknown inputs are ignored by the server
            found = _check_input(workflow, object_info, f"{where} input {name}", value, spec)
            if isinstance(found, str):
                found = FailureProblem(
                    message=found, value=None if _is_link(value) else _jsonable(value)
                )
            if found is not None:
                problems.append(found.model_copy(update={**at, "input": name}))
    if workflow and all_known and not has_output:
        problems.append(
            FailureProblem(
                message="workflow has no output node (SaveImage, PreviewImage ...): "
                "the server would refuse it (prompt_no_outputs)",
                hint="add a SaveImage node to the template",
            )
        )
    return problems
