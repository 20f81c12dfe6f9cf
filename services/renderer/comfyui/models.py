"""Pydantic models for every ComfyUI reply, validated at the edge.

Nothing from the server reaches the rest of the renderer as a raw ``dict``: each
reply is parsed into one of these models first, so a changed or broken server
shows up as one clear :class:`~services.renderer.comfyui.errors.ComfyProtocolError`
instead of a ``KeyError`` somewhere deep in the pipeline.

The models are *tolerant of additions* (unknown fields are ignored, unknown
websocket message types become :class:`WsUnknown`) and *strict about what we rely
on* (a history entry without its ``prompt`` record, a POST reply without
``prompt_id``). The shapes follow ``/work/shared/comfyui-protocol.md`` and the real
transcripts in ``comfyui-captures/``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from shared.events import OutputImage

# --------------------------------------------------------------------------- helpers


class _Reply(BaseModel):
    # Node ids are strings in the API format, but a hand-written workflow or an
    # older server may send numbers; coerce rather than reject.
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


def node_sort_key(node_id: str) -> tuple[int, int, str]:
    """Sort node ids numerically when they are numbers ("9" before "10")."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def ms_to_datetime(timestamp_ms: float | None) -> datetime | None:
    """Convert a server timestamp (epoch milliseconds) to an aware UTC datetime."""
    if timestamp_ms is None:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000.0, tz=UTC)


# --------------------------------------------------------------------------- POST /prompt


class ErrorInfo(_Reply):
    """One error as ComfyUI reports it: in ``error`` or inside ``node_errors``."""

    type: str = "error"
    message: str = ""
    details: str = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("extra_info", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @property
    def input_name(self) -> str | None:
        """The input the error is about, when the server names one."""
        name = self.extra_info.get("input_name")
        return str(name) if name is not None else None


class NodeError(_Reply):
    """All validation errors of one node, and the outputs they take down."""

    errors: list[ErrorInfo] = Field(default_factory=list)
    dependent_outputs: list[str] = Field(default_factory=list)
    class_type: str = ""


def _node_errors(value: object) -> object:
    # Older servers sent ``"node_errors": []`` when there were none.
    if value is None or (isinstance(value, list) and not value):
        return {}
    return value


class PromptAccepted(_Reply):
    """HTTP 200 from ``POST /prompt``.

    ``node_errors`` is **not** always empty: with partial acceptance (trap 3) the
    server queues only the valid outputs and lists the dropped branches here.
    ``number`` is a float because a caller-given priority is echoed as ``5.0``
    (trap 11).
    """

    prompt_id: str = Field(min_length=1)
    number: float
    node_errors: dict[str, NodeError] = Field(default_factory=dict)

    @field_validator("node_errors", mode="before")
    @classmethod
    def _empty_list_is_empty(cls, value: object) -> object:
        return _node_errors(value)


class PromptRejected(_Reply):
    """HTTP 400 from ``POST /prompt``; ``error.details`` may be empty (trap 4)."""

    error: ErrorInfo
    node_errors: dict[str, NodeError] = Field(default_factory=dict)

    @field_validator("error", mode="before")
    @classmethod
    def _string_error(cls, value: object) -> object:
        # Very old servers answered ``{"error": "no prompt"}``.
        if isinstance(value, str):
            return {"type": "error", "message": value}
        return value

    @field_validator("node_errors", mode="before")
    @classmethod
    def _empty_list_is_empty(cls, value: object) -> object:
        return _node_errors(value)


# --------------------------------------------------------------------------- queue and history


class QueueItem(_Reply):
    """A prompt record ``[number, prompt_id, workflow, extra_data, outputs_to_execute]``.

    The same record appears in ``/queue`` and as ``prompt`` in history entries.
    Servers newer than the captured one append fields; they are ignored.
    """

    number: float
    prompt_id: str
    workflow: dict[str, Any] = Field(default_factory=dict)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    outputs_to_execute: list[str] = Field(default_factory=list)

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "number",
        "prompt_id",
        "workflow",
        "extra_data",
        "outputs_to_execute",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            if len(value) < 2:
                raise ValueError("prompt record needs at least [number, prompt_id]")
            return dict(zip(cls._FIELDS, value, strict=False))
        return value


class QueueReply(_Reply):
    """``GET /queue``. ``queue_pending`` is in heap order, not run order (trap 9)."""

    queue_running: list[QueueItem] = Field(default_factory=list)
    queue_pending: list[QueueItem] = Field(default_factory=list)

    def pending_in_run_order(self) -> list[QueueItem]:
        """Pending prompts sorted by ``number``: the order the worker will take them."""
        return sorted(self.queue_pending, key=lambda item: item.number)

    def running_ids(self) -> list[str]:
        """Ids of the running prompt(s) (the server runs one at a time)."""
        return [item.prompt_id for item in self.queue_running]


class ImageRef(_Reply):
    """One file reference in a node's UI output (``GET /view`` parameters)."""

    filename: str
    subfolder: str = ""
    type: Literal["output", "temp", "input"] = "output"


class NodeOutput(_Reply):
    """A node's UI output. Only ``images`` matters to us; other keys are ignored."""

    images: list[ImageRef] = Field(default_factory=list)

    @field_validator("images", mode="before")
    @classmethod
    def _only_file_refs(cls, value: object) -> object:
        # Some custom nodes put non-file entries in "images"; keep only dicts that
        # name a file so one odd node cannot make the whole entry unparseable.
        if isinstance(value, list):
            return [v for v in value if isinstance(v, dict) and "filename" in v]
        return value


class HistoryStatus(_Reply):
    """``status`` of a history entry: the outcome plus the lifecycle messages."""

    status_str: str = ""
    completed: bool = False
    messages: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)

    def message(self, name: str) -> dict[str, Any] | None:
        """The data of the last lifecycle message called ``name``, if any."""
        for event, data in reversed(self.messages):
            if event == name:
                found: dict[str, Any] = data
                return found
        return None


class HistoryEntry(_Reply):
    """One finished prompt from ``GET /history/{id}``."""

    prompt: QueueItem
    outputs: dict[str, NodeOutput] = Field(default_factory=dict)
    status: HistoryStatus | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def images(self) -> list[OutputImage]:
        """Every image the run produced, ordered by node id, then batch index."""
        images: list[OutputImage] = []
        for node_id in sorted(self.outputs, key=node_sort_key):
            for ref in self.outputs[node_id].images:
                images.append(
                    OutputImage(
                        filename=ref.filename,
                        subfolder=ref.subfolder,
                        type=ref.type,
                        node_id=node_id,
                    )
                )
        return images

    def timestamp(self, event: str) -> datetime | None:
        """Server time of a lifecycle message (``execution_start`` ...), as UTC."""
        if self.status is None:
            return None
        data = self.status.message(event)
        if data is None:
            return None
        raw = data.get("timestamp")
        return ms_to_datetime(float(raw)) if isinstance(raw, int | float) else None


class HistoryReply(RootModel[dict[str, HistoryEntry]]):
    """``GET /history/{id}``: ``{}`` while queued, running or unknown (trap 5)."""

    def entry(self, prompt_id: str) -> HistoryEntry | None:
        """The entry for ``prompt_id``, or ``None`` when the server has none yet."""
        return self.root.get(prompt_id)


# --------------------------------------------------------------------------- introspection


class SystemInfo(_Reply):
    """``system`` part of ``GET /system_stats``."""

    os: str = ""
    ram_total: int = 0
    ram_free: int = 0
    comfyui_version: str = ""
    python_version: str = ""
    pytorch_version: str = ""
    embedded_python: bool = False
    argv: list[str] = Field(default_factory=list)


class DeviceInfo(_Reply):
    """One compute device; on CPU servers the vram fields report RAM."""

    name: str
    type: str
    index: int | None = None
    vram_total: int = 0
    vram_free: int = 0
    torch_vram_total: int = 0
    torch_vram_free: int = 0


class SystemStats(_Reply):
    """``GET /system_stats``: used as a health probe and to label the backend."""

    system: SystemInfo
    devices: list[DeviceInfo] = Field(default_factory=list)


class UploadedFile(_Reply):
    """Reply of ``POST /upload/image``: the name to put into a LoadImage node."""

    name: str
    subfolder: str = ""
    type: Literal["output", "temp", "input"] = "input"

    def load_image_value(self) -> str:
        """The value a LoadImage ``image`` input needs to find this file."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name


# --------------------------------------------------------------------------- websocket text


class ExecInfo(_Reply):
    queue_remaining: int = 0


class StatusBody(_Reply):
    exec_info: ExecInfo = Field(default_factory=ExecInfo)


class StatusData(_Reply):
    status: StatusBody | None = None
    #: Only in the first frame: the clientId the server registered this socket as.
    sid: str | None = None


class ExecutionStartData(_Reply):
    prompt_id: str
    timestamp: float | None = None


class ExecutionCachedData(_Reply):
    prompt_id: str
    nodes: list[str] = Field(default_factory=list)
    timestamp: float | None = None


class ExecutingData(_Reply):
    #: ``None`` means the whole prompt finished (success, error or interrupt).
    node: str | None = None
    display_node: str | None = None
    #: Missing in the replay ComfyUI sends to a reconnecting owner.
    prompt_id: str | None = None


class ProgressData(_Reply):
    value: float
    max: float
    prompt_id: str | None = None
    node: str | None = None


class NodeProgressState(_Reply):
    value: float = 0.0
    max: float = 1.0
    state: str = "running"
    node_id: str | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


class ProgressStateData(_Reply):
    prompt_id: str
    nodes: dict[str, NodeProgressState] = Field(default_factory=dict)


class ExecutedData(_Reply):
    node: str
    display_node: str | None = None
    output: NodeOutput | None = None
    prompt_id: str


class ExecutionSuccessData(_Reply):
    prompt_id: str
    timestamp: float | None = None


class ExecutionErrorData(_Reply):
    """``execution_error``: also stored in history ``status.messages``."""

    prompt_id: str
    node_id: str | None = None
    node_type: str = ""
    executed: list[str] = Field(default_factory=list)
    exception_message: str = ""
    exception_type: str = ""
    traceback: list[str] = Field(default_factory=list)
    timestamp: float | None = None

    @field_validator("traceback", mode="before")
    @classmethod
    def _traceback_lines(cls, value: object) -> object:
        if isinstance(value, str):
            return value.splitlines(keepends=True)
        return [] if value is None else value


class ExecutionInterruptedData(_Reply):
    prompt_id: str
    node_id: str | None = None
    node_type: str = ""
    executed: list[str] = Field(default_factory=list)
    timestamp: float | None = None


class WsStatus(_Reply):
    type: Literal["status"]
    data: StatusData


class WsExecutionStart(_Reply):
    type: Literal["execution_start"]
    data: ExecutionStartData


class WsExecutionCached(_Reply):
    type: Literal["execution_cached"]
    data: ExecutionCachedData


class WsExecuting(_Reply):
    type: Literal["executing"]
    data: ExecutingData


class WsProgress(_Reply):
    type: Literal["progress"]
    data: ProgressData


class WsProgressState(_Reply):
    type: Literal["progress_state"]
    data: ProgressStateData


class WsExecuted(_Reply):
    type: Literal["executed"]
    data: ExecutedData


class WsExecutionSuccess(_Reply):
    type: Literal["execution_success"]
    data: ExecutionSuccessData


class WsExecutionError(_Reply):
    type: Literal["execution_error"]
    data: ExecutionErrorData


class WsExecutionInterrupted(_Reply):
    type: Literal["execution_interrupted"]
    data: ExecutionInterruptedData


class WsFeatureFlags(_Reply):
    type: Literal["feature_flags"]
    data: dict[str, Any] = Field(default_factory=dict)


class WsUnknown(_Reply):
    """A message type we do not know (custom nodes send their own); ignored."""

    type: str
    data: Any = None


_WS_TYPES = frozenset(
    {
        "status",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
        "feature_flags",
    }
)


def _ws_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in _WS_TYPES else "unknown"


#: Any websocket text message; unknown ``type`` values parse as :class:`WsUnknown`.
WsMessage = Annotated[
    Annotated[WsStatus, Tag("status")]
    | Annotated[WsExecutionStart, Tag("execution_start")]
    | Annotated[WsExecutionCached, Tag("execution_cached")]
    | Annotated[WsExecuting, Tag("executing")]
    | Annotated[WsProgress, Tag("progress")]
    | Annotated[WsProgressState, Tag("progress_state")]
    | Annotated[WsExecuted, Tag("executed")]
    | Annotated[WsExecutionSuccess, Tag("execution_success")]
    | Annotated[WsExecutionError, Tag("execution_error")]
    | Annotated[WsExecutionInterrupted, Tag("execution_interrupted")]
    | Annotated[WsFeatureFlags, Tag("feature_flags")]
    | Annotated[WsUnknown, Tag("unknown")],
    Discriminator(_ws_tag),
]
_WS_ADAPTER: TypeAdapter[WsMessage] = TypeAdapter(WsMessage)


def parse_ws_text(raw: str | bytes) -> WsMessage:
    """Parse one websocket text frame.

    Raises ``ValueError`` (``pydantic.ValidationError`` is one) when the frame is
    not JSON or a *known* type has the wrong shape; the reader logs and skips it.
    """
    obj = json.loads(raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ValueError("websocket frame is not an object with a string 'type'")
    return _WS_ADAPTER.validate_python(obj)


def message_prompt_id(message: WsMessage) -> str | None:
    """The prompt a message belongs to, or ``None`` for broadcasts."""
    data = message.data
    if isinstance(data, BaseModel):
        value = getattr(data, "prompt_id", None)
        return value if isinstance(value, str) else None
    return None


# --------------------------------------------------------------------------- websocket binary

#: Binary event types (server ``protocol.BinaryEventTypes``).
PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

_IMAGE_FORMATS = {1: "JPEG", 2: "PNG"}
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class PreviewMetadata:
    """The JSON header of a type-4 preview frame."""

    node_id: str | None
    prompt_id: str | None
    display_node_id: str | None
    image_type: str | None


@dataclass(frozen=True, slots=True)
class BinaryFrame:
    """The parsed header of a binary websocket frame (the payload is not kept)."""

    event_type: int
    image_format: str | None = None
    metadata: PreviewMetadata | None = None
    node_id: str | None = None
    text: str | None = None
    payload_size: int = 0

    @property
    def prompt_id(self) -> str | None:
        """The prompt the frame belongs to, when the header says (type 4 only)."""
        return self.metadata.prompt_id if self.metadata else None


def _u32(data: bytes, offset: int) -> int:
    if len(data) < offset + 4:
        raise ValueError(f"binary frame truncated at byte {offset}")
    value: int = _U32.unpack_from(data, offset)[0]
    return value


def parse_binary_frame(data: bytes) -> BinaryFrame:
    """Parse a binary frame's header without trusting any length field.

    Raises ``ValueError`` for a truncated frame or a length that points past the
    end, so a corrupt preview can never crash the reader.
    """
    event_type = _u32(data, 0)
    if event_type == PREVIEW_IMAGE:
        code = _u32(data, 4)
        return BinaryFrame(
            event_type=event_type,
            image_format=_IMAGE_FORMATS.get(code, f"unknown({code})"),
            payload_size=len(data) - 8,
        )
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        length = _u32(data, 4)
        end = 8 + length
        if end > len(data):
            raise ValueError(f"metadata length {length} exceeds the frame ({len(data)} bytes)")
        meta = json.loads(data[8:end])
        if not isinstance(meta, dict):
            raise ValueError("preview metadata is not a JSON object")

        def text(key: str) -> str | None:
            value = meta.get(key)
            return str(value) if value is not None else None

        return BinaryFrame(
            event_type=event_type,
            metadata=PreviewMetadata(
                node_id=text("node_id"),
                prompt_id=text("prompt_id"),
                display_node_id=text("display_node_id"),
                image_type=text("image_type"),
            ),
            payload_size=len(data) - end,
        )
    if event_type == TEXT:
        length = _u32(data, 4)
        end = 8 + length
        if end > len(data):
            raise ValueError(f"node id length {length} exceeds the frame ({len(data)} bytes)")
        return BinaryFrame(
            event_type=event_type,
            node_id=data[8:end].decode("utf-8", errors="replace"),
            text=data[end:].decode("utf-8", errors="replace"),
            payload_size=len(data) - end,
        )
    # UNENCODED_PREVIEW_IMAGE and anything newer: keep only the type and size.
    return BinaryFrame(event_type=event_type, payload_size=len(data) - 4)
