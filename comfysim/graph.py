"""Execution order and the output cache.

:class:`ExecutionList` ports ComfyUI's ``comfy_execution.graph.ExecutionList``
(same DFS with a stack, same "UX friendly" pick: output nodes first, then nodes
one or two links upstream of an output). Cached upstream nodes are never added,
which is why they never show up in ``progress_state``.

:class:`OutputCache` mirrors the default ("classic") cache: keys are input
signatures (class, ``IS_CHANGED`` value, literal inputs, and recursively the
signatures of linked nodes), and after each ``set_prompt`` only the entries used
by the current prompt survive.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from comfysim.nodes import NODE_IMPLS, Dirs


def is_link(obj: Any) -> bool:
    """``comfy_execution.graph_utils.is_link``: ``[str node_id, int|float slot]``."""
    if not isinstance(obj, list) or len(obj) != 2:
        return False
    if not isinstance(obj[0], str):
        return False
    return isinstance(obj[1], int | float) and not isinstance(obj[1], bool)


class DependencyCycleError(Exception):
    """The workflow contains a cycle."""


DependencyCycleError.__module__ = "graph"


class ExecutionList:
    """Which node runs next (port of ComfyUI's ExecutionList, without lazy inputs)."""

    def __init__(
        self,
        prompt: dict[str, Any],
        is_cached: Callable[[str], bool],
        is_output: Callable[[str], bool],
    ) -> None:
        self.prompt = prompt
        self.is_cached = is_cached
        self.is_output = is_output
        self.pending_nodes: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[Any, bool]]] = {}
        self.staged_node_id: str | None = None

    def add_node(self, node_unique_id: str) -> None:
        """Add a node and (recursively) its non-cached dependencies."""
        node_ids = [node_unique_id]
        links: list[tuple[str, Any, str]] = []
        while node_ids:
            unique_id = node_ids.pop()
            if unique_id in self.pending_nodes:
                continue
            self.pending_nodes[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            inputs = self.prompt[unique_id]["inputs"]
            for input_name in inputs:
                value = inputs[input_name]
                if is_link(value):
                    from_node_id, from_socket = value
                    if not self.is_cached(from_node_id):
                        node_ids.append(from_node_id)
                    links.append((from_node_id, from_socket, unique_id))
        for from_node_id, from_socket, to_node_id in links:
            self.add_strong_link(from_node_id, from_socket, to_node_id)

    def add_strong_link(self, from_node_id: str, from_socket: Any, to_node_id: str) -> None:
        """``to_node_id`` waits for ``from_node_id`` unless that one is cached."""
        if not self.is_cached(from_node_id):
            self.add_node(from_node_id)
            if to_node_id not in self.blocking[from_node_id]:
                self.blocking[from_node_id][to_node_id] = {}
                self.block_count[to_node_id] += 1
            self.blocking[from_node_id][to_node_id][from_socket] = True

    def is_empty(self) -> bool:
        """True when every node has run."""
        return len(self.pending_nodes) == 0

    def ready_nodes(self) -> list[str]:
        """Pending nodes with no unfinished dependency, in insertion order."""
        return [n for n in self.pending_nodes if self.block_count[n] == 0]

    def _pick(self, node_list: list[str]) -> str:
        for node_id in node_list:
            if self.is_output(node_id):
                return node_id
        for node_id in node_list:
            for blocked in self.blocking[node_id]:
                if self.is_output(blocked):
                    return node_id
        for node_id in node_list:
            for blocked in self.blocking[node_id]:
                for blocked1 in self.blocking[blocked]:
                    if self.is_output(blocked1):
                        return node_id
        return node_list[0]

    def stage_node_execution(self) -> str:
        """Pick the next node; raises :class:`DependencyCycleError` on a cycle."""
        assert self.staged_node_id is None
        available = self.ready_nodes()
        if not available:
            raise DependencyCycleError("Dependency cycle detected")
        self.staged_node_id = self._pick(available)
        return self.staged_node_id

    def complete_node_execution(self) -> None:
        """Mark the staged node done, unblocking its dependents."""
        node_id = self.staged_node_id
        assert node_id is not None
        del self.pending_nodes[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]
        self.staged_node_id = None

    def cycle_blame(self) -> str:
        """The node blamed for a dependency cycle (first pending node)."""
        return next(iter(self.pending_nodes))


@dataclass
class CacheEntry:
    """Cached result of one node: its outputs and its UI dict (with meta)."""

    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


class OutputCache:
    """Signature-keyed output cache that keeps only the current prompt's entries."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.entries: dict[str, CacheEntry] = {}

    def signatures(self, prompt: dict[str, Any], dirs: Dirs) -> dict[str, str]:
        """Input signature of every node of ``prompt`` (unique tokens for broken nodes)."""
        memo: dict[str, str] = {}

        def sig(node_id: str, stack: frozenset[str]) -> str:
            if node_id in memo:
                return memo[node_id]
            if node_id in stack:
                raise DependencyCycleError(node_id)
            node = prompt[node_id]
            class_type = node["class_type"]
            inputs = node["inputs"]
            impl = NODE_IMPLS.get(class_type)
            changed = impl.is_changed(dirs, inputs) if impl and impl.is_changed else None
            parts: list[Any] = [class_type, changed]
            if impl is not None and impl.not_idempotent:
                parts.append(node_id)
            for key in sorted(inputs):
                value = inputs[key]
                if is_link(value):
                    parts.append([key, "LINK", sig(value[0], stack | {node_id}), value[1]])
                else:
                    parts.append([key, value])
            digest = hashlib.sha256(
                json.dumps(parts, sort_keys=True, default=repr).encode()
            ).hexdigest()
            memo[node_id] = digest
            return digest

        out: dict[str, str] = {}
        for node_id in prompt:
            try:
                out[node_id] = sig(node_id, frozenset())
            except Exception:
                out[node_id] = f"uncacheable-{uuid.uuid4().hex}"
        return out

    def set_prompt(self, signatures: dict[str, str]) -> None:
        """Drop every entry the new prompt does not use (classic cache behaviour)."""
        keep = set(signatures.values())
        for key in [k for k in self.entries if k not in keep]:
            del self.entries[key]

    def get(self, signature: str) -> CacheEntry | None:
        """The cached entry, if any (always None when caching is off)."""
        if not self.enabled:
            return None
        return self.entries.get(signature)

    def set(self, signature: str, entry: CacheEntry) -> None:
        """Store a node result."""
        if self.enabled:
            self.entries[signature] = entry

    def clear(self) -> None:
        """Empty the cache (``POST /free {"free_memory": true}``)."""
        self.entries.clear()
