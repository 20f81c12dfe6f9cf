"""The serial worker: priority queue, history, execution and its websocket events.

One :class:`Engine` is the in-memory state of one simulated server process. A
simulated restart throws it away (queue, history, cache and the ``number``
counter are lost) and builds a new one; files on disk persist.

Event emission follows ComfyUI 0.3.64 (``execution.py``, ``main.py``,
``comfy_execution/progress.py``):

* ``status`` on every put, get, finish, delete and clear (broadcast);
* ``execution_start``, ``execution_cached``, ``execution_success`` and
  ``execution_error`` only to the prompt's client; ``execution_interrupted`` to the
  client, or to everybody when the prompt has no client id;
* per node: ``progress_state`` (running) -> ``executing`` -> work ->
  ``executed`` (UI nodes) -> ``progress_state`` (finished). ``progress_state``,
  ``progress`` and preview frames go to the prompt's client, or are broadcast when
  it has none; ``executing``/``executed`` need a client id;
* after the history entry is written: ``status``, then ``executing`` with
  ``node: null`` (client prompts only).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from comfysim.config import PREVIEW_METHODS, SimConfig, SimStats
from comfysim.events import PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA, Hub
from comfysim.faults import (
    OOM_TIPS,
    RUN_FAULTS,
    FaultBook,
    FaultSpec,
    OutOfMemoryError,
    make_exception_class,
)
from comfysim.graph import CacheEntry, DependencyCycleError, ExecutionList, OutputCache, is_link
from comfysim.nodes import NODE_IMPLS, Dirs, Preview, format_value
from comfysim.objectinfo import ObjectInfo
from comfysim.validation import full_type_name

log = logging.getLogger("comfysim.engine")

T = TypeVar("T")

#: ``execution.SENSITIVE_EXTRA_DATA_KEYS``: kept out of the queue listing and history.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
#: ``execution.MAXIMUM_HISTORY_SIZE``.
MAXIMUM_HISTORY_SIZE = 10000


class InterruptProcessingException(Exception):
    """Raised at a node boundary or progress tick after ``POST /interrupt``."""


InterruptProcessingException.__module__ = "comfy.model_management"


class EngineHost(Protocol):
    """What the engine needs from the simulator that owns it."""

    config: SimConfig
    hub: Hub
    dirs: Dirs
    object_info: ObjectInfo
    faults: FaultBook
    stats: SimStats

    def request_restart(self, down_seconds: float) -> None:
        """Restart the simulated server (from inside a run)."""
        ...


@dataclass(eq=False)
class QueueItem:
    """A queued prompt; ordered by (number, prompt_id) like ComfyUI's heap tuples."""

    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[Any]
    sensitive: dict[str, Any]
    seq: int
    faults: list[FaultSpec] = field(default_factory=list)
    render_seconds: float | None = None

    def __lt__(self, other: QueueItem) -> bool:
        return (self.number, self.prompt_id, self.seq) < (
            other.number,
            other.prompt_id,
            other.seq,
        )

    def public(self) -> list[Any]:
        """``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    """Port of ``execution.PromptQueue`` (heap + running + history + flags)."""

    def __init__(self, on_update: Callable[[], None]) -> None:
        self._on_update = on_update
        self.queue: list[QueueItem] = []
        self.currently_running: dict[int, QueueItem] = {}
        self.task_counter = 0
        self.history: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, Any] = {}
        self._not_empty = asyncio.Event()

    def put(self, item: QueueItem) -> None:
        """Queue a prompt (broadcasts ``status``)."""
        heapq.heappush(self.queue, item)
        self._on_update()
        self._not_empty.set()

    async def get(self) -> tuple[QueueItem, int]:
        """Wait for and pop the next prompt, marking it running (broadcasts ``status``)."""
        while not self.queue:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = heapq.heappop(self.queue)
        task_id = self.task_counter
        self.currently_running[task_id] = item
        self.task_counter += 1
        self._on_update()
        return item, task_id

    def task_done(
        self, task_id: int, history_result: dict[str, Any], status: dict[str, Any]
    ) -> None:
        """Write the history entry of a finished prompt (broadcasts ``status``)."""
        item = self.currently_running.pop(task_id)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        entry: dict[str, Any] = {"prompt": item.public(), "outputs": {}, "status": status}
        entry.update(history_result)
        self.history[item.prompt_id] = entry
        self._on_update()

    def get_current_queue(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """(running items, pending items in heap order), as public lists."""
        running = [item.public() for item in self.currently_running.values()]
        return running, [item.public() for item in self.queue]

    def running_prompt_ids(self) -> list[str]:
        """Ids of the running prompt(s)."""
        return [item.prompt_id for item in self.currently_running.values()]

    def get_tasks_remaining(self) -> int:
        """Pending plus running."""
        return len(self.queue) + len(self.currently_running)

    def wipe_queue(self) -> None:
        """Drop every pending prompt (broadcasts ``status``)."""
        self.queue = []
        self._on_update()

    def delete_queue_item(self, predicate: Callable[[QueueItem], bool]) -> bool:
        """Drop the first pending prompt matching ``predicate``."""
        for index, item in enumerate(self.queue):
            if predicate(item):
                self.queue.pop(index)
                heapq.heapify(self.queue)
                self._on_update()
                return True
        return False

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict[str, Any]:
        """``PromptQueue.get_history`` (oldest first; ``max_items`` alone = last N)."""
        if prompt_id is None:
            out: dict[str, Any] = {}
            if offset < 0 and max_items is not None:
                offset = len(self.history) - max_items
            for i, key in enumerate(self.history):
                if i >= offset:
                    out[key] = self.history[key]
                    if max_items is not None and len(out) >= max_items:
                        break
            return out
        if prompt_id in self.history:
            return {prompt_id: self.history[prompt_id]}
        return {}

    def wipe_history(self) -> None:
        """Forget every history entry."""
        self.history = {}

    def delete_history_item(self, prompt_id: Any) -> None:
        """Forget one history entry."""
        self.history.pop(prompt_id, None)

    def set_flag(self, name: str, value: Any) -> None:
        """Set a worker flag (``unload_models``/``free_memory``)."""
        self.flags[name] = value

    def take_flags(self) -> dict[str, Any]:
        """Return and clear the worker flags."""
        flags, self.flags = self.flags, {}
        return flags


class ProgressRegistry:
    """Per-prompt node progress (``comfy_execution.progress.ProgressRegistry``)."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        if node_id not in self.nodes:
            self.nodes[node_id] = {"state": "pending", "value": 0, "max": 1}
        return self.nodes[node_id]

    def start(self, node_id: str) -> None:
        """Node started: running 0.0/1.0."""
        entry = self._entry(node_id)
        entry.update(state="running", value=0.0, max=1.0)

    def update(self, node_id: str, value: Any, max_value: Any) -> None:
        """Progress tick: running value/max."""
        entry = self._entry(node_id)
        entry.update(state="running", value=value, max=max_value)

    def finish(self, node_id: str) -> None:
        """Node finished: value = max."""
        entry = self._entry(node_id)
        entry["state"] = "finished"
        entry["value"] = entry["max"]

    def snapshot(self) -> dict[str, Any]:
        """``progress_state`` data (all non-pending nodes, fresh dicts)."""
        nodes = {
            node_id: {
                "value": state["value"],
                "max": state["max"],
                "state": state["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, state in self.nodes.items()
            if state["state"] != "pending"
        }
        return {"prompt_id": self.prompt_id, "nodes": nodes}


class Engine:
    """One simulated server process: counter, queue, history, cache and the worker."""

    def __init__(self, host: EngineHost) -> None:
        self.host = host
        self.queue = PromptQueue(self._queue_updated)
        #: ``PromptServer.number``: the priority counter, 0 at every start.
        self.number = 0
        self.cache = OutputCache(enabled=host.config.cache)
        self.interrupt_requested = False
        self.interrupt_event = asyncio.Event()
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker task."""
        if self._task is None:
            self._task = asyncio.create_task(self._worker(), name="comfysim-worker")

    async def stop(self) -> None:
        """Stop the worker; a running prompt is lost without any message."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("worker crashed")

    def next_seq(self) -> int:
        """Tie-breaker for equal (number, prompt_id) heap keys."""
        return next(self._seq)

    def queue_info(self) -> dict[str, Any]:
        """``{"exec_info": {"queue_remaining": N}}``."""
        return {"exec_info": {"queue_remaining": self.queue.get_tasks_remaining()}}

    def _queue_updated(self) -> None:
        self.host.hub.send("status", {"status": self.queue_info()})

    # ------------------------------------------------------------------ control

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """``POST /interrupt``: global, or only if ``prompt_id`` is the running one."""
        if prompt_id:
            if prompt_id not in self.queue.running_prompt_ids():
                log.info("Prompt %s is not currently running, skipping interrupt", prompt_id)
                return False
            log.info("Interrupting prompt %s", prompt_id)
        else:
            log.info("Global interrupt (no prompt_id specified)")
        self.interrupt_requested = True
        self.interrupt_event.set()
        return True

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """``POST /free``: flags applied when the worker is between prompts."""
        if unload_models:
            self.queue.set_flag("unload_models", unload_models)
        if free_memory:
            self.queue.set_flag("free_memory", free_memory)
        if not self.queue.currently_running:
            self._process_flags()

    def _process_flags(self) -> None:
        flags = self.queue.take_flags()
        if flags.get("free_memory", False):
            self.cache.clear()

    # ------------------------------------------------------------------ worker

    async def _worker(self) -> None:
        hub = self.host.hub
        stats = self.host.stats
        while True:
            item, task_id = await self.queue.get()
            started = time.perf_counter()
            hub.last_prompt_id = item.prompt_id
            stats.begin(item.prompt_id)
            outcome = "lost"
            try:
                run = PromptRun(self, item)
                try:
                    outcome = await run.execute()
                except Exception:
                    log.exception("comfysim internal error while running %s", item.prompt_id)
                    run.success = False
                    outcome = "error"
                status = {
                    "status_str": "success" if run.success else "error",
                    "completed": run.success,
                    "messages": run.status_messages,
                }
                self.queue.task_done(task_id, run.history_result, status)
                if hub.client_id is not None:
                    hub.send(
                        "executing", {"node": None, "prompt_id": item.prompt_id}, hub.client_id
                    )
            finally:
                hub.prompt_delay = 0.0
                stats.end(outcome)
            log.info("Prompt executed in %.2f seconds", time.perf_counter() - started)
            self._process_flags()


class _NodeContext:
    """:class:`comfysim.nodes.NodeContext` for one node of one run."""

    def __init__(self, run: PromptRun, node_id: str, tick_seconds: float) -> None:
        self._run = run
        self.node_id = node_id
        self.prompt_id = run.prompt_id
        dirs = run.host.dirs
        self.input_dir = dirs.input_dir
        self.output_dir = dirs.output_dir
        self.temp_dir = dirs.temp_dir
        self.preview_method = run.preview_method
        self.tick_seconds = tick_seconds

    async def progress(self, value: int, total: int, preview: Preview | None = None) -> None:
        if self.tick_seconds > 0:
            await asyncio.sleep(self.tick_seconds)
        self._run.progress_hook(self.node_id, value, total, preview)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)


class PromptRun:
    """Execution of one prompt (``PromptExecutor.execute_async``)."""

    def __init__(self, engine: Engine, item: QueueItem) -> None:
        self.engine = engine
        self.host = engine.host
        self.hub = engine.host.hub
        self.item = item
        self.prompt = item.prompt
        self.prompt_id = item.prompt_id
        self.extra_data: dict[str, Any] = {**item.extra_data, **item.sensitive}
        self.status_messages: list[list[Any]] = []
        self.history_result: dict[str, Any] = {"outputs": {}, "meta": {}}
        self.ui_outputs: dict[str, dict[str, Any]] = {}
        self.executed: dict[str, None] = {}
        self.local_outputs: dict[str, tuple[Any, ...]] = {}
        self.progress = ProgressRegistry(item.prompt_id)
        self.signatures: dict[str, str] = {}
        self.shares: dict[str, float] = {}
        self.success = True
        self.faults: list[FaultSpec] = list(item.faults) + self.host.faults.take(RUN_FAULTS)
        self.fault_targets: list[tuple[FaultSpec, str | None]] = []
        override = self.extra_data.get("preview_method")
        if isinstance(override, str) and override in PREVIEW_METHODS:
            self.preview_method = override
        else:
            self.preview_method = self.host.config.preview_method

    # ------------------------------------------------------------------ messages

    def add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        """Record a status message (history) and send it (``add_message``)."""
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append([event, data])
        if self.hub.client_id is not None or broadcast:
            self.hub.send(event, data, self.hub.client_id)

    def send_progress_state(self) -> None:
        """Send ``progress_state`` (broadcast when the prompt has no client)."""
        self.hub.send("progress_state", self.progress.snapshot(), self.hub.client_id)

    def progress_hook(self, node_id: str, value: int, total: int, preview: Preview | None) -> None:
        """``main.hijack_progress`` hook: interrupt check, progress_state, progress, previews."""
        if self.engine.interrupt_requested:
            raise InterruptProcessingException()
        self.progress.update(node_id, value, total)
        self.send_progress_state()
        sid = self.hub.client_id
        supports_metadata = self.hub.supports_preview_metadata(sid)
        if preview is not None and supports_metadata:
            metadata = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            self.hub.send(PREVIEW_IMAGE_WITH_METADATA, (preview, metadata), sid)
        self.hub.send(
            "progress",
            {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id},
            sid,
        )
        if preview is not None and not supports_metadata:
            self.hub.send(PREVIEW_IMAGE, preview, sid)

    # ------------------------------------------------------------------ run

    def _class_type(self, node_id: str) -> str:
        return str(self.prompt[node_id]["class_type"])

    def _is_cached(self, node_id: str) -> bool:
        signature = self.signatures.get(node_id)
        return signature is not None and self.engine.cache.get(signature) is not None

    def _is_sampler(self, node_id: str) -> bool:
        impl = NODE_IMPLS.get(self._class_type(node_id))
        return impl is not None and impl.sampler

    def _plan(self, to_run: list[str]) -> None:
        """Render-time shares and fault targets for the nodes that will execute."""
        seconds = self.item.render_seconds
        if seconds is None:
            seconds = self.host.config.render_seconds
        samplers = [n for n in to_run if self._is_sampler(n)]
        weights: dict[str, float] = {}
        if samplers:
            for node_id in samplers:
                steps = self.prompt[node_id]["inputs"].get("steps", 1)
                weights[node_id] = float(steps) if isinstance(steps, int) and steps > 0 else 1.0
        else:
            weights = dict.fromkeys(to_run, 1.0)
        total = sum(weights.values())
        if seconds > 0 and total > 0:
            self.shares = {n: seconds * w / total for n, w in weights.items()}

        for fault in self.faults:
            if fault.type == "slow_ws":
                continue
            target: str | None = None
            if fault.node is not None and fault.node in to_run:
                target = fault.node
            elif fault.type == "oom" and samplers:
                target = samplers[0]
            self.fault_targets.append((fault, target))
        if not to_run:
            for fault, _ in self.fault_targets:
                if fault.type == "ws_drop":
                    self.hub.send_cut(self.hub.client_id)
                else:
                    log.info("fault %s not fired: nothing executes (all cached)", fault.type)
            self.fault_targets = []

    async def execute(self) -> str:
        """Run the prompt; returns ``success``, ``error`` or ``interrupted``."""
        engine = self.engine
        hub = self.hub
        prompt = self.prompt
        engine.interrupt_requested = False
        engine.interrupt_event.clear()
        hub.client_id = self.extra_data.get("client_id")
        for fault in self.faults:
            if fault.type == "slow_ws":
                hub.prompt_delay = max(hub.prompt_delay, fault.seconds or 0.2)
        self.add_message("execution_start", {"prompt_id": self.prompt_id}, broadcast=False)

        self.signatures = engine.cache.signatures(prompt, self.host.dirs)
        engine.cache.set_prompt(self.signatures)
        cached_nodes = [n for n in prompt if self._is_cached(n)]
        self.add_message(
            "execution_cached", {"nodes": cached_nodes, "prompt_id": self.prompt_id}, False
        )
        current_outputs = list(prompt)
        execution_list = ExecutionList(
            prompt,
            is_cached=self._is_cached,
            is_output=lambda n: self.host.object_info.is_output_node(self._class_type(n)),
        )
        for output_id in self.item.outputs:
            execution_list.add_node(output_id)
        self._plan([n for n in execution_list.pending_nodes if not self._is_cached(n)])

        outcome = "success"
        while not execution_list.is_empty():
            try:
                node_id = execution_list.stage_node_execution()
            except DependencyCycleError as ex:
                error = {
                    "node_id": execution_list.cycle_blame(),
                    "exception_message": str(ex),
                    "exception_type": "graph.DependencyCycleError",
                    "traceback": [],
                    "current_inputs": [],
                }
                self.handle_execution_error(current_outputs, error, ex)
                outcome = "error"
                break
            error_details, exc = await self.execute_node(node_id)
            if exc is not None:
                assert error_details is not None
                self.handle_execution_error(current_outputs, error_details, exc)
                outcome = (
                    "interrupted" if isinstance(exc, InterruptProcessingException) else "error"
                )
                break
            execution_list.complete_node_execution()
        self.success = outcome == "success"
        if self.success:
            self.add_message("execution_success", {"prompt_id": self.prompt_id}, False)

        self.history_result = {
            "outputs": {n: ui["output"] for n, ui in self.ui_outputs.items()},
            "meta": {n: ui["meta"] for n, ui in self.ui_outputs.items()},
        }
        hub.last_node_id = None
        return outcome

    def _meta(self, node_id: str) -> dict[str, Any]:
        return {
            "node_id": node_id,
            "display_node": node_id,
            "parent_node": None,
            "real_node_id": node_id,
        }

    def get_input_data(self, node_id: str) -> dict[str, Any]:
        """Literal and linked input values plus hidden inputs (``get_input_data``)."""
        node = self.prompt[node_id]
        inputs = node["inputs"]
        entry = self.host.object_info.get(node["class_type"]) or {}
        spec = entry.get("input", {})
        data: dict[str, Any] = {}
        for category in ("required", "optional"):
            for name in spec.get(category, {}):
                if name not in inputs:
                    continue
                value = inputs[name]
                if is_link(value):
                    source, slot = value[0], int(value[1])
                    outputs = self.local_outputs.get(source)
                    if outputs is None:
                        cached = self.engine.cache.get(self.signatures.get(source, ""))
                        outputs = cached.outputs if cached is not None else None
                    if outputs is None:
                        continue
                    data[name] = outputs[slot]
                else:
                    data[name] = value
        for name, kind in spec.get("hidden", {}).items():
            if kind == "PROMPT":
                data[name] = self.prompt
            elif kind == "EXTRA_PNGINFO":
                data[name] = self.extra_data.get("extra_pnginfo")
            elif kind == "UNIQUE_ID":
                data[name] = node_id
        return data

    async def _fire_faults(self, node_id: str) -> None:
        for fault, target in list(self.fault_targets):
            if target is not None and target != node_id:
                continue
            self.fault_targets.remove((fault, target))
            log.warning("injecting fault %s at node %s of %s", fault.type, node_id, self.prompt_id)
            if fault.type == "ws_drop":
                self.hub.send_cut(self.hub.client_id)
            elif fault.type == "restart":
                self.host.request_restart(fault.seconds)
                await asyncio.Event().wait()  # cancelled by the restart
            elif fault.type == "hang":
                await self.engine.interrupt_event.wait()
                raise InterruptProcessingException()
            elif fault.type == "oom":
                raise OutOfMemoryError(fault.message or "Allocation on device ")
            elif fault.type == "execution_error":
                klass: type[Exception] = RuntimeError
                if fault.exception_type:
                    klass = make_exception_class(fault.exception_type)
                raise klass(fault.message or "comfysim injected execution error")

    async def execute_node(
        self, node_id: str
    ) -> tuple[dict[str, Any] | None, BaseException | None]:
        """Run (or replay from cache) one node; returns (error_details, exception)."""
        hub = self.hub
        class_type = self._class_type(node_id)
        signature = self.signatures[node_id]
        cached = self.engine.cache.get(signature)
        if cached is not None:
            cached_ui = cached.ui or {}
            if hub.client_id is not None:
                hub.send(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": cached_ui.get("output", None),
                        "prompt_id": self.prompt_id,
                    },
                    hub.client_id,
                )
            if cached_ui.get("output"):
                self.ui_outputs[node_id] = {"meta": self._meta(node_id), **cached_ui}
            self.progress.finish(node_id)
            self.send_progress_state()
            self.local_outputs[node_id] = cached.outputs
            return None, None

        input_data: dict[str, Any] | None = None
        try:
            self.progress.start(node_id)
            self.send_progress_state()
            input_data = self.get_input_data(node_id)
            if hub.client_id is not None:
                hub.last_node_id = node_id
                hub.send(
                    "executing",
                    {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id},
                    hub.client_id,
                )
            await self._fire_faults(node_id)
            if self.engine.interrupt_requested:
                raise InterruptProcessingException()
            impl = NODE_IMPLS.get(class_type)
            if impl is None:
                raise NotImplementedError(
                    f"comfysim does not simulate node class {class_type!r} "
                    "(it validates, but cannot execute)"
                )
            share = self.shares.get(node_id, 0.0)
            tick = 0.0
            if impl.sampler:
                steps = input_data.get("steps", 1)
                tick = share / steps if isinstance(steps, int) and steps > 0 else share
            elif share > 0:
                await asyncio.sleep(share)
            result = await impl.fn(_NodeContext(self, node_id, tick), input_data)
            ui = {"meta": self._meta(node_id), "output": result.ui or {}}
            if result.ui:
                self.ui_outputs[node_id] = ui
                if hub.client_id is not None:
                    hub.send(
                        "executed",
                        {
                            "node": node_id,
                            "display_node": node_id,
                            "output": result.ui,
                            "prompt_id": self.prompt_id,
                        },
                        hub.client_id,
                    )
            self.engine.cache.set(signature, CacheEntry(result.outputs, ui))
            self.local_outputs[node_id] = result.outputs
            self.progress.finish(node_id)
            self.send_progress_state()
            self.executed[node_id] = None
        except InterruptProcessingException as iex:
            log.info("Processing interrupted")
            return {"node_id": node_id}, iex
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            assert typ is not None
            formatted: dict[str, Any] = {}
            if input_data is not None:
                formatted = {name: [format_value(v)] for name, v in input_data.items()}
            tips = OOM_TIPS if isinstance(ex, OutOfMemoryError) else ""
            log.error("!!! Exception during processing !!! %s", ex)
            return (
                {
                    "node_id": node_id,
                    "exception_message": f"{ex}\n{tips}",
                    "exception_type": full_type_name(typ),
                    "traceback": traceback.format_tb(tb),
                    "current_inputs": formatted,
                },
                ex,
            )
        return None, None

    def handle_execution_error(
        self, current_outputs: list[str], error: dict[str, Any], ex: BaseException
    ) -> None:
        """Emit ``execution_interrupted`` (broadcast) or ``execution_error`` (client)."""
        node_id = error["node_id"]
        class_type = self._class_type(node_id)
        if isinstance(ex, InterruptProcessingException):
            self.add_message(
                "execution_interrupted",
                {
                    "prompt_id": self.prompt_id,
                    "node_id": node_id,
                    "node_type": class_type,
                    "executed": list(self.executed),
                },
                broadcast=True,
            )
        else:
            self.add_message(
                "execution_error",
                {
                    "prompt_id": self.prompt_id,
                    "node_id": node_id,
                    "node_type": class_type,
                    "executed": list(self.executed),
                    "exception_message": error["exception_message"],
                    "exception_type": error["exception_type"],
                    "traceback": error["traceback"],
                    "current_inputs": error["current_inputs"],
                    "current_outputs": list(current_outputs),
                },
                broadcast=False,
            )
