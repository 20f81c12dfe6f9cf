"""Fault injection: what can go wrong, when, and how often.

A fault is described by a :class:`FaultSpec`. Specs come from three places:

* ``--fault TYPE[:key=value,...]`` on the command line (armed at start-up);
* ``POST /_sim/faults`` (armed on a running instance);
* ``extra_data.sim_fault`` in a ``POST /prompt`` body (applies to that prompt only;
  a string ``"oom"``, an object ``{"type": "oom", "node": "3"}`` or a list of them).

Armed (instance) faults have a ``count`` (how many prompts they hit; ``null`` for
unlimited) and a ``probability``; each matching prompt consumes one. Submit-time
faults (``validation_error``, ``http_500``) are consumed by ``POST /prompt``; the
others when the worker starts the prompt.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "FAULT_TYPES",
    "IMMEDIATE_FAULTS",
    "OOM_TIPS",
    "RUN_FAULTS",
    "SUBMIT_FAULTS",
    "FaultBook",
    "FaultSpec",
    "FaultSpecError",
    "InjectedError",
    "OutOfMemoryError",
    "make_exception_class",
    "parse_cli_fault",
    "parse_fault_list",
]

#: Faults applied when ``POST /prompt`` is handled.
SUBMIT_FAULTS = frozenset({"validation_error", "http_500"})
#: Faults applied while the worker runs the prompt.
RUN_FAULTS = frozenset({"execution_error", "oom", "hang", "ws_drop", "slow_ws", "restart"})
#: Faults that act immediately when armed through the control API.
IMMEDIATE_FAULTS = frozenset({"refuse_connections"})
#: Every known fault type.
FAULT_TYPES = SUBMIT_FAULTS | RUN_FAULTS | IMMEDIATE_FAULTS

#: Text ComfyUI appends to the message of an out-of-memory error.
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\n"
    "TIPS: If the workflow worked before you might have accidentally set the batch_size "
    "to a large number."
)


class FaultSpecError(ValueError):
    """A fault description could not be parsed."""


class OutOfMemoryError(RuntimeError):
    """Stand-in for ``torch.OutOfMemoryError`` (reported with that full type name)."""


OutOfMemoryError.__module__ = "torch"


class InjectedError(RuntimeError):
    """Default exception raised by an injected ``execution_error``."""


InjectedError.__module__ = "comfysim"


def make_exception_class(full_name: str) -> type[Exception]:
    """Build an exception class whose ComfyUI-style full type name is ``full_name``."""
    if full_name == "torch.OutOfMemoryError":
        return OutOfMemoryError
    module, _, name = full_name.rpartition(".")
    if not name.isidentifier():
        raise FaultSpecError(f"bad exception_type {full_name!r}")
    klass = type(name, (RuntimeError,), {})
    klass.__module__ = module or "builtins"
    klass.__qualname__ = name
    return klass


@dataclass
class FaultSpec:
    """One fault.

    ``type`` is one of :data:`FAULT_TYPES`:

    ``validation_error``
        ``POST /prompt`` answers 400 ``prompt_outputs_failed_validation`` with a
        ``custom_validation_failed`` error on the first output node.
    ``http_500``
        ``POST /prompt`` answers 500 ``text/plain`` like the real server's crash page.
    ``execution_error``
        the run fails at ``node`` (default: the first node that executes) with
        ``exception_type``/``message``.
    ``oom``
        like ``execution_error`` with ``torch.OutOfMemoryError`` "Allocation on device"
        (default node: the first sampler, else the first executed node).
    ``hang``
        ``node`` never finishes until interrupted (or the server restarts).
    ``ws_drop``
        when ``node`` starts, the prompt owner's websocket(s) are cut (no close frame).
    ``slow_ws``
        every websocket frame emitted during the run is delayed by ``seconds``.
    ``restart``
        when ``node`` starts, the server restarts (queue, history, counter lost);
        it refuses connections for ``seconds``.
    ``refuse_connections``
        (control API only) stop listening for ``seconds``, cutting open connections.
    """

    type: str
    count: int | None = 1
    probability: float = 1.0
    node: str | None = None
    seconds: float = 0.0
    message: str | None = None
    exception_type: str | None = None

    def __post_init__(self) -> None:
        if self.type not in FAULT_TYPES:
            raise FaultSpecError(
                f"unknown fault type {self.type!r}; known: {', '.join(sorted(FAULT_TYPES))}"
            )
        if self.count is not None and self.count < 1:
            raise FaultSpecError("count must be >= 1 or null (unlimited)")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultSpecError("probability must be within [0, 1]")
        if self.seconds < 0:
            raise FaultSpecError("seconds must be >= 0")
        if self.node is not None:
            self.node = str(self.node)
        if self.exception_type is not None:
            make_exception_class(self.exception_type)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (used by ``GET /_sim/faults``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> FaultSpec:
        """Parse ``"oom"`` or ``{"type": "oom", ...}``; raises :class:`FaultSpecError`."""
        if isinstance(raw, str):
            return cls(type=raw)
        if not isinstance(raw, dict):
            raise FaultSpecError(f"a fault must be a string or an object, got {raw!r}")
        known = {"type", "count", "probability", "node", "seconds", "message", "exception_type"}
        unknown = set(raw) - known
        if unknown:
            raise FaultSpecError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "type" not in raw:
            raise FaultSpecError("a fault needs a 'type'")
        try:
            count = raw.get("count", 1)
            return cls(
                type=str(raw["type"]),
                count=None if count is None else int(count),
                probability=float(raw.get("probability", 1.0)),
                node=None if raw.get("node") is None else str(raw["node"]),
                seconds=float(raw.get("seconds", 0.0)),
                message=None if raw.get("message") is None else str(raw["message"]),
                exception_type=(
                    None if raw.get("exception_type") is None else str(raw["exception_type"])
                ),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(str(exc)) from exc


def parse_fault_list(raw: Any) -> list[FaultSpec]:
    """Parse one fault or a list of faults (JSON)."""
    if raw is None:
        return []
    if isinstance(raw, list):
        return [FaultSpec.from_json(item) for item in raw]
    return [FaultSpec.from_json(raw)]


def parse_cli_fault(text: str) -> FaultSpec:
    """Parse ``TYPE[:key=value,...]``, e.g. ``oom:count=2,node=3`` or ``http_500:probability=0.1``.

    ``count=inf`` (or ``count=0``) arms the fault for every prompt.
    """
    fault_type, _, rest = text.partition(":")
    raw: dict[str, Any] = {"type": fault_type.strip()}
    if rest.strip():
        for part in rest.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise FaultSpecError(f"expected key=value in {part!r}")
            key = key.strip()
            value = value.strip()
            if key == "count" and value.lower() in {"inf", "0", "none", "null", "unlimited"}:
                raw[key] = None
            else:
                raw[key] = value
    return FaultSpec.from_json(raw)


class FaultBook:
    """The faults armed on one simulator instance (survives simulated restarts)."""

    def __init__(self, faults: list[FaultSpec] | None = None, seed: int | None = None) -> None:
        self._faults: list[FaultSpec] = list(faults or [])
        self._rng = random.Random(seed)

    def arm(self, fault: FaultSpec) -> None:
        """Add one fault."""
        self._faults.append(fault)

    def clear(self) -> None:
        """Disarm everything."""
        self._faults.clear()

    def armed(self) -> list[FaultSpec]:
        """Currently armed faults."""
        return list(self._faults)

    def roll(self, probability: float) -> bool:
        """True with the given probability (seeded RNG)."""
        return probability >= 1.0 or self._rng.random() < probability

    def take(self, types: frozenset[str]) -> list[FaultSpec]:
        """Consume the armed faults of the given types that fire for this prompt."""
        fired: list[FaultSpec] = []
        for fault in list(self._faults):
            if fault.type not in types:
                continue
            if not self.roll(fault.probability):
                continue
            fired.append(fault)
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
        return fired
