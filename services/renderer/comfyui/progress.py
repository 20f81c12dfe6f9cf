"""Overall progress of one prompt, computed from websocket messages.

ComfyUI only sends ``progress`` for nodes that drive a progress bar (samplers,
upscalers). A model-free workflow (EmptyImage → ImageBlur → SaveImage) never
sends one, so a percentage based on ``progress`` alone would sit at 0 and jump to
100. We therefore count *nodes*: ``percent = (finished nodes + fraction of the
running node) / nodes to execute``. The fraction comes from ``progress`` (sampler
steps) or ``progress_state``; the node count from the workflow (the nodes
upstream of its outputs) minus the nodes ``execution_cached`` says will not run.

The percentage is monotonic and stays below 100 until the prompt has finished;
only :meth:`ProgressTracker.complete` reports 100.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import (
    NodeProgressState,
    WsExecuting,
    WsExecutionCached,
    WsMessage,
    WsProgress,
    WsProgressState,
)

#: Highest percentage reported before the server says the prompt finished.
_MAX_RUNNING_PERCENT = 99.0


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """One progress report for a prompt, handed to ``wait(on_progress=...)``."""

    prompt_id: str
    #: The node currently running (``None`` for the final 100 %).
    node: str | None
    #: Steps done in that node, when it reports steps (samplers).
    value: int | None
    #: Total steps of that node.
    max: int | None
    #: 0 to 100 over the whole prompt; monotonic.
    percent_overall: float


def _links(inputs: Mapping[str, Any]) -> Iterable[str]:
    for value in inputs.values():
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], str | int)
            and isinstance(value[1], int)
            and not isinstance(value[1], bool)
        ):
            yield str(value[0])


def upstream_closure(workflow: Mapping[str, Any], roots: Iterable[str]) -> set[str]:
    """Every node id reachable upstream (through links) from ``roots``, roots included."""
    seen: set[str] = set()
    stack = [r for r in roots if r in workflow]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = workflow.get(node_id)
        inputs = node.get("inputs", {}) if isinstance(node, Mapping) else {}
        if isinstance(inputs, Mapping):
            stack.extend(n for n in _links(inputs) if n in workflow and n not in seen)
    return seen


def nodes_to_execute(
    workflow: Mapping[str, Any], *, output_classes: Collection[str] | None = None
) -> set[str]:
    """The nodes the server will run for ``workflow`` (before caching).

    ComfyUI runs only what is upstream of output nodes. With ``output_classes``
    (class names whose ``/object_info`` entry has ``output_node: true``) that is
    exact; without it, nodes nothing links to ("sinks") stand in for outputs,
    which is exact for every well-formed template.
    """
    if output_classes is not None:
        roots = [
            nid
            for nid, node in workflow.items()
            if isinstance(node, Mapping) and node.get("class_type") in output_classes
        ]
    else:
        linked: set[str] = set()
        for node in workflow.values():
            inputs = node.get("inputs", {}) if isinstance(node, Mapping) else {}
            if isinstance(inputs, Mapping):
                linked.update(_links(inputs))
        roots = [nid for nid in workflow if nid not in linked]
    return upstream_closure(workflow, roots)


class ProgressTracker:
    """Turns the websocket messages of one prompt into :class:`ProgressUpdate` s.

    Each ``on_*`` method returns an update when something visible changed, or
    ``None`` (so duplicates such as the repeated ``progress_state`` frames are
    not reported twice).
    """

    def __init__(self, prompt_id: str, expected_nodes: Iterable[str] | None = None) -> None:
        self.prompt_id = prompt_id
        self._expected: set[str] | None = set(expected_nodes) if expected_nodes else None
        self._cached: set[str] = set()
        self._finished: set[str] = set()
        self._current: str | None = None
        self._value = 0.0
        self._max = 0.0
        self._percent = 0.0
        self._last: tuple[str | None, int | None, int | None, float] | None = None

    # ---------------------------------------------------------------- inputs

    @property
    def knows_total(self) -> bool:
        """Whether the number of nodes to run is known (else progress is a guess)."""
        return self._expected is not None

    def set_expected(self, nodes: Iterable[str]) -> None:
        """Provide the nodes to run when they were not known at creation (re-attach)."""
        if self._expected is None:
            self._expected = set(nodes) or None

    def feed(self, message: WsMessage) -> ProgressUpdate | None:
        """Route one websocket message of this prompt to the right ``on_*`` method.

        ``executing`` with ``node: null`` is *not* treated as completion here: only
        the client knows whether the prompt succeeded (it calls :meth:`complete`).
        """
        if isinstance(message, WsExecuting):
            node = message.data.node
            return self.on_executing(node) if node is not None else None
        if isinstance(message, WsProgress):
            return self.on_progress(message.data.node, message.data.value, message.data.max)
        if isinstance(message, WsProgressState):
            return self.on_progress_state(message.data.nodes)
        if isinstance(message, WsExecutionCached):
            return self.on_cached(message.data.nodes)
        return None

    def on_cached(self, nodes: Iterable[str]) -> ProgressUpdate | None:
        """``execution_cached``: these nodes will not run."""
        self._cached.update(nodes)
        return self._emit()

    def on_executing(self, node: str) -> ProgressUpdate | None:
        """``executing`` with a node: it started, so the previous one is done
        (execution is serial)."""
        if self._current is not None and self._current != node:
            self._finished.add(self._current)
        if node != self._current:
            self._current = node
            self._value, self._max = 0.0, 0.0
        return self._emit()

    def on_progress(
        self, node: str | None, value: float, max_value: float
    ) -> ProgressUpdate | None:
        """``progress``: ``value`` of ``max_value`` steps inside ``node``."""
        if node is not None and node != self._current:
            self.on_executing(node)
        self._value, self._max = value, max_value
        return self._emit()

    def on_progress_state(self, nodes: Mapping[str, NodeProgressState]) -> ProgressUpdate | None:
        """``progress_state``: a snapshot of every non-pending node of the run."""
        for node_id, state in nodes.items():
            if state.state == "finished":
                self._finished.add(node_id)
            elif state.state == "running":
                if node_id != self._current:
                    if self._current is not None:
                        self._finished.add(self._current)
                    self._current = node_id
                self._value, self._max = state.value, state.max
        if self._current in self._finished:
            self._value, self._max = 0.0, 0.0
        return self._emit()

    def complete(self) -> ProgressUpdate:
        """The prompt finished successfully: report 100 %."""
        self._percent = 100.0
        self._current = None
        update = ProgressUpdate(self.prompt_id, None, None, None, 100.0)
        self._last = (None, None, None, 100.0)
        return update

    # ---------------------------------------------------------------- output

    @property
    def percent(self) -> float:
        """The current overall percentage."""
        return self._percent

    def _fraction(self) -> float:
        if self._current is None or self._current in self._finished or self._max <= 0:
            return 0.0
        return max(0.0, min(1.0, self._value / self._max))

    def _compute(self) -> float:
        if self._expected is not None:
            todo = self._expected - self._cached
            done = len(self._finished & todo)
            partial = self._fraction() if self._current in todo else 0.0
            total = len(todo)
        else:
            # Unknown graph: assume at least one more node after what we saw, so
            # the bar moves but never claims completion early.
            seen = self._finished | ({self._current} if self._current else set())
            seen -= self._cached
            done = len(self._finished - self._cached)
            partial = self._fraction()
            total = len(seen) + 1
        if total <= 0:
            return 0.0
        return min(_MAX_RUNNING_PERCENT, 100.0 * (done + partial) / total)

    def _emit(self) -> ProgressUpdate | None:
        if self._percent >= 100.0:
            return None
        self._percent = max(self._percent, round(self._compute(), 2))
        running = self._current is not None and self._current not in self._finished
        node = self._current if running else None
        value = round(self._value) if running and self._max > 0 else None
        max_value = round(self._max) if running and self._max > 0 else None
        key = (node, value, max_value, self._percent)
        if key == self._last:
            return None
        self._last = key
        return ProgressUpdate(self.prompt_id, node, value, max_value, self._percent)
