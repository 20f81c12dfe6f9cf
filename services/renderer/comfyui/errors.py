"""Exceptions that *classify* every way a ComfyUI call can fail.

Every exception the client raises is a :class:`ComfyError`, and every
:class:`ComfyError` answers one question for the renderer: **would trying again
(later, or on another backend) plausibly succeed?** That is ``transient``.

==============================  =========  ===========================================
exception                       transient  when
==============================  =========  ===========================================
ComfyConnectionError            yes        refused, reset, DNS, websocket down
ComfyTimeoutError               yes        an HTTP call or ``wait()`` ran out of time
ComfyServerError                yes        HTTP 5xx / 408 / 429 (bad JSON body → 500)
ComfyProtocolError              yes        a reply that is not JSON or has a wrong shape
ComfyPromptLost                 yes        prompt absent from queue and history
ComfyOutOfMemory                yes        execution error caused by GPU/CPU memory
ComfyExecutionError             no*        a node raised; *configurable per type
ComfyInterrupted                no / yes   no if this client asked for it, else yes
ComfyValidationError            no         HTTP 400, or 200 with dropped outputs
ComfyHTTPError                  no         other 4xx (403 CSRF guard, 404 route)
ComfyFileNotFound               no         ``GET /view`` 404
ComfyPromptDeleted              no         removed from the queue by this client
==============================  =========  ===========================================

``kind`` is a short stable label for ``JobFailed.error_kind`` and metrics;
``details()`` gives human-readable lines for ``JobFailed.details``. Everything
that can carry server text has had server file paths stripped (trap 13).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from .models import ErrorInfo, ExecutionErrorData, NodeError, node_sort_key
from .sanitize import strip_paths, strip_paths_all


class ComfyError(Exception):
    """Base of everything the client raises.

    ``transient`` tells the renderer whether to retry (``True``) or fail the job
    (``False``). Subclasses set a class default; a few decide per instance.
    """

    #: Retrying may succeed. Class default; instances may override.
    transient: bool = False
    #: Short stable label (``JobFailed.error_kind``).
    kind: ClassVar[str] = "comfyui"

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(strip_paths(message))
        if transient is not None:
            self.transient = transient

    @property
    def message(self) -> str:
        """The (path-stripped) message."""
        return str(self.args[0]) if self.args else ""

    def details(self) -> list[str]:
        """Readable detail lines (one per problem); empty when there is nothing more."""
        return []


# --------------------------------------------------------------------------- transport


class ComfyTransportError(ComfyError):
    """We could not get a usable reply from the server. Always transient."""

    transient = True
    kind = "transport"

    def __init__(self, message: str, *, maybe_delivered: bool = True) -> None:
        super().__init__(message)
        #: ``False`` only when the request provably never reached the server
        #: (connection refused). ``submit()`` uses it to decide whether a prompt
        #: might have been queued anyway.
        self.maybe_delivered = maybe_delivered


class ComfyConnectionError(ComfyTransportError):
    """Connection refused or dropped, DNS failure, websocket unavailable."""

    kind = "connection"


class ComfyTimeoutError(ComfyTransportError):
    """An HTTP call, the websocket handshake or ``wait()`` ran out of time."""

    kind = "timeout"


class ComfyServerError(ComfyTransportError):
    """HTTP 5xx (and 408/429). ComfyUI answers 500 to a body that is not JSON."""

    kind = "server_error"

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = strip_paths(body[:500])


class ComfyProtocolError(ComfyTransportError):
    """A reply that is not JSON or does not have the documented shape.

    Transient: the job is not at fault; a proxy page, a half-started server or a
    different ComfyUI version is, and another attempt or backend may do better.
    """

    kind = "protocol"


# --------------------------------------------------------------------------- HTTP 4xx


class ComfyHTTPError(ComfyError):
    """An unexpected 4xx (not a prompt validation 400). Permanent: it is a setup
    problem (wrong base URL, CSRF guard from an ``Origin`` header) that a retry
    will not fix."""

    kind = "http"

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = strip_paths(body[:500])


class ComfyFileNotFound(ComfyHTTPError):
    """``GET /view`` answered 404: the output file is not (or no longer) there."""

    kind = "file_not_found"


# --------------------------------------------------------------------------- validation


def _strip_input_prefix(details: str, input_name: str | None) -> str:
    if not input_name:
        return details
    for sep in (": ", " - "):
        prefix = f"{input_name}{sep}"
        if details.startswith(prefix):
            return details[len(prefix) :]
    return "" if details == input_name else details


def readable_node_error(node_id: str, class_type: str, error: ErrorInfo) -> str:
    """One line per node error, e.g.

    ``node 4 (CheckpointLoaderSimple) input ckpt_name: value_not_in_list:
    'x.safetensors' not in []``.

    ``details`` usually repeats the input name (``"ckpt_name: ..."``) or *is* the
    input name (``"height"``); both are folded away, and ``message`` is used when
    nothing else is left, so the line is never empty even when ``details`` is.
    """
    where = f"node {node_id} ({class_type or 'unknown class'})"
    name = error.input_name
    if name:
        where += f" input {name}"
    text = _strip_input_prefix(error.details, name) or error.message or "(no details)"
    return strip_paths(f"{where}: {error.type}: {text}")


def readable_prompt_error(error: ErrorInfo) -> str:
    """A whole-prompt error (unknown class, no outputs ...) as one line."""
    text = error.message or error.type
    if error.details and error.details != error.message:
        text += f" ({error.details})"
    return strip_paths(f"prompt: {error.type}: {text}")


class ComfyValidationError(ComfyError):
    """The server refused the workflow (HTTP 400), or accepted only part of it.

    ``node_errors`` holds the structured per-node errors; :meth:`readable` turns
    them into one line each. Permanent: the same workflow fails the same way.

    ``partial`` is ``True`` when the server answered **200** but dropped outputs
    (trap 3). The client has already removed that prompt from the queue (and
    interrupted it, should it have started) before raising, see
    ``docs/comfyui-client.md``.
    """

    kind = "validation"

    def __init__(
        self,
        message: str,
        *,
        error: ErrorInfo | None = None,
        node_errors: Mapping[str, NodeError] | None = None,
        partial: bool = False,
        prompt_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.node_errors: dict[str, NodeError] = dict(node_errors or {})
        self.partial = partial
        self.prompt_id = prompt_id

    @property
    def dropped_outputs(self) -> list[str]:
        """Output node ids the errors take down (all dependent outputs, sorted)."""
        outs = {o for ne in self.node_errors.values() for o in ne.dependent_outputs}
        return sorted(outs, key=node_sort_key)

    def readable(self) -> list[str]:
        """One line per problem, node errors first (in node id order).

        The whole-prompt ``error`` is listed only when it carries information the
        node lines do not: ``prompt_outputs_failed_validation`` is just a summary.
        """
        lines: list[str] = []
        for node_id in sorted(self.node_errors, key=node_sort_key):
            entry = self.node_errors[node_id]
            if not entry.errors:
                lines.append(f"node {node_id} ({entry.class_type or 'unknown class'}): invalid")
            for err in entry.errors:
                lines.append(readable_node_error(node_id, entry.class_type, err))
        if self.error is not None and (
            not lines or self.error.type != "prompt_outputs_failed_validation"
        ):
            lines.insert(0, readable_prompt_error(self.error))
        if not lines:
            lines.append(self.message)
        return lines

    def details(self) -> list[str]:
        """Same as :meth:`readable`."""
        return self.readable()

    def __str__(self) -> str:
        return f"{self.message}: " + "; ".join(self.readable())


# --------------------------------------------------------------------------- execution


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


#: ``exception_type`` values that mean the device ran out of memory.
OOM_EXCEPTION_TYPES = frozenset(
    {
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
        "OutOfMemoryError",
        "MemoryError",
    }
)
#: Lower-case substrings of ``exception_message`` that mean the same (MPS, ROCm
#: and some wrappers re-raise OOM as a plain RuntimeError).
OOM_MESSAGE_MARKERS = ("out of memory", "allocation on device")


def is_out_of_memory(exception_type: str, exception_message: str) -> bool:
    """Tell whether an execution error is an out-of-memory condition."""
    message = exception_message.lower()
    return exception_type in OOM_EXCEPTION_TYPES or any(m in message for m in OOM_MESSAGE_MARKERS)


class ComfyExecutionError(ComfyError):
    """A node raised while the prompt ran (``execution_error``).

    Permanent by default: a bad input file, an incompatible model or a bug in a
    custom node fails the same way again. Types listed in the client's
    ``transient_exception_types`` (e.g. network errors of API nodes) and
    out-of-memory errors (:class:`ComfyOutOfMemory`) are transient.
    """

    kind = "execution"

    def __init__(
        self,
        message: str,
        *,
        prompt_id: str,
        node_id: str | None,
        node_type: str,
        exception_type: str,
        exception_message: str,
        traceback: Iterable[str] = (),
        executed: Iterable[str] = (),
        transient: bool | None = None,
    ) -> None:
        super().__init__(message, transient=transient)
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = strip_paths(exception_message).strip()
        #: Traceback lines with server paths removed.
        self.traceback = strip_paths_all(traceback)
        #: Node ids that had finished before the error.
        self.executed = list(executed)

    def details(self) -> list[str]:
        """``node 1 (LoadImage): PIL.UnidentifiedImageError: cannot identify ...``.

        One line: only the first line of the message (ComfyUI appends multi-line
        advice to some errors, e.g. the OOM "TIPS").
        """
        where = f"node {self.node_id} ({self.node_type or 'unknown class'})"
        return [f"{where}: {self.exception_type}: {_first_line(self.exception_message)}"]


class ComfyOutOfMemory(ComfyExecutionError):
    """The device ran out of memory: transient (another backend, or the same one
    after other work freed memory, can run it)."""

    transient = True
    kind = "out_of_memory"


def classify_execution_error(
    data: ExecutionErrorData, *, transient_types: frozenset[str] = frozenset()
) -> ComfyExecutionError:
    """Turn an ``execution_error`` payload into the right exception.

    Out-of-memory → :class:`ComfyOutOfMemory` (transient). An ``exception_type``
    in ``transient_types`` → transient :class:`ComfyExecutionError`. Anything
    else → permanent :class:`ComfyExecutionError`.
    """
    exc_type = data.exception_type or "Exception"
    text = _first_line(strip_paths(data.exception_message))
    node = f"node {data.node_id} ({data.node_type or 'unknown class'})"
    message = f"{node} failed: {exc_type}: {text}"
    oom = is_out_of_memory(exc_type, data.exception_message)
    cls = ComfyOutOfMemory if oom else ComfyExecutionError
    return cls(
        message,
        prompt_id=data.prompt_id,
        node_id=data.node_id,
        node_type=data.node_type,
        exception_type=exc_type,
        exception_message=data.exception_message,
        traceback=data.traceback,
        executed=data.executed,
        # None keeps the class default (OOM is transient); otherwise the caller's
        # list decides.
        transient=None if oom else exc_type in transient_types,
    )


class ComfyInterrupted(ComfyError):
    """The run was stopped by ``POST /interrupt`` (``execution_interrupted``).

    ``requested`` is ``True`` when *this client* asked for it (cancellation):
    then the error is permanent, the job must not be retried. An interrupt we did
    not ask for (an operator pressed "cancel" in the UI of a shared backend) is
    transient: the job did nothing wrong.
    """

    kind = "interrupted"

    def __init__(
        self,
        message: str,
        *,
        prompt_id: str,
        requested: bool,
        node_id: str | None = None,
        node_type: str = "",
        executed: Iterable[str] = (),
    ) -> None:
        super().__init__(message, transient=not requested)
        self.prompt_id = prompt_id
        self.requested = requested
        self.node_id = node_id
        self.node_type = node_type
        self.executed = list(executed)


# --------------------------------------------------------------------------- lifecycle


class ComfyPromptLost(ComfyError):
    """The prompt is in neither ``/queue`` nor ``/history``.

    That happens after a server restart (queue and history live in memory), when
    someone else deleted it, or when history evicted it (10 000 entries). No event
    ever reports it (trap 7). Transient: resubmitting is the fix.
    """

    transient = True
    kind = "lost"

    def __init__(self, message: str, *, prompt_id: str) -> None:
        super().__init__(message)
        self.prompt_id = prompt_id


class ComfyPromptDeleted(ComfyError):
    """This client removed the prompt from the queue (``delete_pending``) while a
    ``wait()`` was watching it. Permanent: it was on purpose."""

    kind = "deleted"

    def __init__(self, message: str, *, prompt_id: str) -> None:
        super().__init__(message)
        self.prompt_id = prompt_id
