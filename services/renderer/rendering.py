"""One render attempt of one job: compile, check, submit (or re-attach), wait, classify.

The ComfyUI ``prompt_id`` is derived from (job, attempt). A renderer killed mid-render
gets the job redelivered with the same attempt, finds that prompt on a backend (queued,
running or finished) and re-attaches to it instead of rendering a second time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

from services.renderer.cancellation import CancelRegistry
from services.renderer.comfyui import (
    ComfyError,
    ComfyInterrupted,
    ComfyPromptDeleted,
    ComfyTransportError,
    ComfyValidationError,
    ProgressUpdate,
    RunResult,
)
from services.renderer.comfyui.errors import (
    ComfyExecutionError,
    ComfyPromptLost,
    readable_node_error,
    readable_prompt_error,
)
from services.renderer.comfyui.models import node_sort_key
from services.renderer.pool import Backend, BackendPool
from shared.events import (
    FailureProblem,
    JobAccepted,
    JobProgress,
    JobStarted,
    Producer,
    ReferenceImage,
    derived_id,
)
from shared.logging import get_logger
from shared.messaging import EventBus
from shared.metrics import RENDER_SECONDS
from shared.workflows import (
    BoundReference,
    TemplateError,
    TemplateRegistry,
    UnknownTemplateError,
    compile_workflow,
    derive_prompt_id,
    filename_prefix_for,
    object_info_problems,
    reference_upload_name,
)

log = get_logger(__name__)

#: At most this many progress events per second per job (plus the final 100 %).
PROGRESS_PER_SECOND = 4.0
#: Where ingest serves the bytes of a reference image (its ``getReferenceImage`` route;
#: a unit test keeps the two in step). The renderer never fetches any other URL.
REFERENCE_PATH = "/v1/references/{sha256}"
#: The largest reference image the renderer accepts (ingest's own upload limit is lower).
MAX_REFERENCE_BYTES = 20 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Rendered:
    backend: str
    prompt_id: str
    result: RunResult
    workflow: dict[str, Any]
    seconds: float


@dataclasses.dataclass(frozen=True)
class Failed:
    """The attempt failed; ``transient`` decides between retry and ``job.failed``."""

    reason: str
    kind: str
    transient: bool
    backend: str | None = None
    details: list[str] = dataclasses.field(default_factory=list)
    #: The same problems, structured (``JobFailed.problems``).
    problems: list[FailureProblem] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Interrupted:
    """Cancelled on request: deleted from the backend's queue, or interrupted running."""

    backend: str | None
    stage: Literal["pending", "queued", "running"]


Outcome = Rendered | Failed | Interrupted


class ProgressPublisher:
    """Turns ComfyUI progress into throttled, monotonic ``job.progress`` events."""

    def __init__(self, bus: EventBus, accepted: JobAccepted, attempt: int) -> None:
        self.bus = bus
        self.accepted = accepted
        self.attempt = attempt
        self.seq = 0
        self.last_sent = 0.0
        self.last_percent = -1.0

    async def __call__(self, update: ProgressUpdate) -> None:
        now = time.monotonic()
        final = update.percent_overall >= 100.0
        if update.percent_overall <= self.last_percent:
            return
        if not final and now - self.last_sent < 1.0 / PROGRESS_PER_SECOND:
            return
        await self.send(
            update.percent_overall, node=update.node, value=update.value, maximum=update.max
        )

    async def send(
        self,
        percent: float,
        *,
        node: str | None = None,
        value: int | None = None,
        maximum: int | None = None,
    ) -> None:
        if percent <= self.last_percent:
            return
        self.seq += 1
        self.last_sent = time.monotonic()
        self.last_percent = percent
        await self.bus.publish(
            JobProgress(
                event_id=derived_id(self.accepted.job_id, "progress", self.attempt, self.seq),
                **self.accepted.envelope(Producer.RENDERER),
                attempt=self.attempt,
                seq=self.seq,
                percent=min(100.0, round(percent, 2)),
                node=node,
                value=value,
                max=maximum,
            )
        )


class RenderService:
    def __init__(
        self,
        *,
        pool: BackendPool,
        cancels: CancelRegistry,
        templates: TemplateRegistry,
        bus: EventBus,
        http: Callable[[], aiohttp.ClientSession],
        ingest_url: str,
        render_timeout: float = 25 * 60,
        max_reference_bytes: int = MAX_REFERENCE_BYTES,
    ) -> None:
        self.pool = pool
        self.cancels = cancels
        self.templates = templates
        self.bus = bus
        self.http = http
        #: Ingest's base URL (``ANIME_PUBLIC_INGEST_URL``): references come from there only.
        self.ingest_url = ingest_url.rstrip("/")
        self.max_reference_bytes = max_reference_bytes
        # Inside RabbitMQ's 30-minute consumer timeout, with room for the publishes.
        self.render_timeout = render_timeout

    async def render(
        self, accepted: JobAccepted, attempt: int, avoid: list[str], *, redelivered: bool = True
    ) -> Outcome:
        """Render one attempt. ``redelivered``: this attempt may already be on a backend
        (a renderer died holding it), so look for its prompt before submitting."""
        prompt_id = derive_prompt_id(accepted.job_id, attempt)
        found = await self.pool.find(prompt_id) if redelivered else None
        if found is not None:
            backend, where = found
            log.info(
                "renderer.reattach", backend=backend.url, prompt_id=prompt_id, state=where.state
            )
            self.pool.claim(backend)
            return await self._run(accepted, attempt, backend, prompt_id, submit=False)
        backend = await self.pool.acquire(avoid, priority=accepted.spec.priority)
        if self.cancels.is_requested(accepted.job_id):
            await self.pool.release(backend)
            return Interrupted(backend=None, stage="pending")
        return await self._run(accepted, attempt, backend, prompt_id, submit=True)

    async def _run(
        self, accepted: JobAccepted, attempt: int, backend: Backend, prompt_id: str, *, submit: bool
    ) -> Outcome:
        started = time.monotonic()
        failed_backend = False
        error: str | None = None
        try:
            workflow = await self._compile(accepted, attempt, backend) if submit else {}
            if submit:
                await backend.client.submit(
                    workflow,
                    prompt_id=prompt_id,
                    extra_data={
                        "extra_pnginfo": {
                            "anime_job": {"job_id": str(accepted.job_id), "attempt": attempt}
                        }
                    },
                )
            await self.bus.publish(
                JobStarted(
                    event_id=derived_id(accepted.job_id, "started", attempt),
                    **accepted.envelope(Producer.RENDERER),
                    backend=backend.url,
                    prompt_id=prompt_id,
                    attempt=attempt,
                )
            )
            await self.cancels.started(accepted.job_id, backend, prompt_id)
            progress = ProgressPublisher(self.bus, accepted, attempt)
            result = await backend.client.wait(
                prompt_id, on_progress=progress, timeout=self.render_timeout
            )
            if progress.seq:
                # Close the bar watchers have been following. A render that finished
                # before any progress was worth sending gets no lone 100 %: its
                # job.rendered says the same (the ledger sets progress to 100 on it).
                await progress.send(100.0)
            RENDER_SECONDS.labels(backend.url).observe(time.monotonic() - started)
            return Rendered(
                backend=backend.url,
                prompt_id=prompt_id,
                result=result,
                workflow=result.workflow or workflow,
                seconds=result.render_seconds or (time.monotonic() - started),
            )
        except _Permanent as exc:
            return Failed(
                reason=exc.reason,
                kind=exc.kind,
                transient=False,
                backend=backend.url,
                details=[p.message for p in exc.problems],
                problems=exc.problems,
            )
        except _ReferenceUnavailable as exc:
            # Ingest is away or busy: the job and the backend are fine, so try again
            # later without holding it against the backend.
            return Failed(reason=str(exc), kind="reference", transient=True)
        except ComfyValidationError as exc:
            return Failed(
                reason=f"ComfyUI refused the workflow: {exc.message}",
                kind="validation",
                transient=False,
                backend=backend.url,
                details=exc.readable(),
                problems=validation_problems(exc),
            )
        except ComfyPromptDeleted:
            return Interrupted(backend=backend.url, stage="queued")
        except ComfyInterrupted as exc:
            if self.cancels.is_requested(accepted.job_id):
                return Interrupted(backend=backend.url, stage="running")
            # Someone interrupted it outside the pipeline: the job itself is fine.
            return Failed(reason=str(exc), kind="interrupted", transient=True, backend=backend.url)
        except ComfyError as exc:
            failed_backend = isinstance(exc, ComfyTransportError | ComfyPromptLost)
            error = str(exc)
            return Failed(
                reason=str(exc),
                kind=type(exc).__name__,
                transient=exc.transient,
                backend=backend.url,
                details=exc.details(),
                problems=comfy_problems(exc),
            )
        except TimeoutError:
            return Failed(
                reason="render timed out", kind="timeout", transient=True, backend=backend.url
            )
        finally:
            self.cancels.finished(accepted.job_id)
            await self.pool.release(backend, failed=failed_backend, error=error)

    async def _compile(
        self, accepted: JobAccepted, attempt: int, backend: Backend
    ) -> dict[str, Any]:
        spec = accepted.spec
        try:
            template = self.templates.get(spec.template)
        except UnknownTemplateError as exc:
            raise _Permanent(str(exc), "template") from exc
        references = (
            await self._references(accepted, backend) if template.bindings.reference_image else []
        )
        loras = []
        seen: set[str] = set()
        for character in spec.characters:
            lora = character.definition.lora
            if lora is not None and lora.name not in seen:
                seen.add(lora.name)
                loras.append(lora)
        try:
            workflow = compile_workflow(
                template,
                prompt=spec.composed_prompt,
                negative=spec.composed_negative,
                params=spec.params,
                loras=loras,
                reference_images=references,
                filename_prefix=filename_prefix_for(accepted.job_id, attempt),
                seed=spec.params.seed or 0,
            )
        except TemplateError as exc:
            raise _Permanent(str(exc), "template") from exc
        problems = object_info_problems(workflow, await backend.client.object_info())
        if problems:
            raise _Permanent(
                f"workflow {spec.template!r} does not fit backend {backend.url}",
                "validation",
                problems,
            )
        return workflow

    async def _references(self, accepted: JobAccepted, backend: Backend) -> list[BoundReference]:
        """Fetch, check and upload the references of ``accepted`` (built from the jobs row).

        The bytes come only from ingest's reference route, by sha256; nothing is uploaded
        to ComfyUI unless its sha256 is the one ingest recorded.
        """
        bound = []
        fetched: dict[str, bytes] = {}
        for character in accepted.spec.characters:
            for reference in character.references:
                data = fetched.get(reference.sha256)
                if data is None:
                    data = fetched[reference.sha256] = await self.fetch_reference(reference)
                uploaded = await backend.client.upload_image(
                    data, filename=reference_upload_name(reference), overwrite=True
                )
                bound.append(
                    BoundReference(
                        filename=uploaded.load_image_value(),
                        weight=reference.weight,
                        kind=reference.kind,
                    )
                )
        return bound

    def reference_url(self, reference: ReferenceImage) -> str:
        """Ingest's URL for a reference: the configured ingest, never ``reference.url``."""
        return self.ingest_url + REFERENCE_PATH.format(sha256=reference.sha256)

    async def fetch_reference(self, reference: ReferenceImage) -> bytes:
        """The bytes of ``reference``, checked against its sha256.

        No redirect is followed and at most ``max_reference_bytes`` are read. A refusal
        (4xx, redirect, too large, wrong bytes) is permanent; ingest unreachable or
        answering 5xx is transient.
        """
        sha = reference.sha256
        url = self.reference_url(reference)
        limit = self.max_reference_bytes
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        size = 0
        try:
            async with self.http().get(
                url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=30)
            ) as reply:
                if reply.status >= 500:
                    raise _ReferenceUnavailable(f"reference {sha} unavailable ({reply.status})")
                if 300 <= reply.status < 400:
                    raise _Permanent(
                        f"reference {sha}: ingest answered {reply.status} (redirects are not "
                        "followed)",
                        "reference",
                    )
                if reply.status != 200:
                    raise _Permanent(f"reference {sha} unavailable ({reply.status})", "reference")
                if reply.content_length is not None and reply.content_length > limit:
                    raise _Permanent(f"reference {sha} is larger than {limit} bytes", "reference")
                async for chunk in reply.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise _Permanent(
                            f"reference {sha} is larger than {limit} bytes", "reference"
                        )
                    digest.update(chunk)
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _ReferenceUnavailable(
                f"reference {sha} unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        if digest.hexdigest() != sha:
            raise _Permanent(
                f"reference {sha}: the bytes served have sha256 {digest.hexdigest()}; "
                "nothing was uploaded",
                "reference",
            )
        return b"".join(chunks)


class _Permanent(Exception):
    def __init__(
        self, reason: str, kind: str, problems: list[FailureProblem] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.problems = problems or []


def validation_problems(exc: ComfyValidationError) -> list[FailureProblem]:
    """ComfyUI's refusal as structured problems, in the order of ``exc.readable()``."""
    problems: list[FailureProblem] = []
    for node_id in sorted(exc.node_errors, key=node_sort_key):
        entry = exc.node_errors[node_id]
        node_class = entry.class_type or None
        if not entry.errors:
            problems.append(
                FailureProblem(
                    message=f"node {node_id} ({entry.class_type or 'unknown class'}): invalid",
                    node=node_id,
                    node_class=node_class,
                )
            )
        for err in entry.errors:
            extra = err.extra_info
            allowed: list[Any] | None = None
            config = extra.get("input_config")
            if isinstance(config, list) and config and isinstance(config[0], list):
                allowed = config[0]
            elif (  # newer servers: ["COMBO", {"options": [...]}]
                isinstance(config, list)
                and len(config) > 1
                and config[0] == "COMBO"
                and isinstance(config[1], dict)
                and isinstance(config[1].get("options"), list)
            ):
                allowed = config[1]["options"]
            hint = None
            if allowed is not None and not allowed:
                hint = "the server lists none: install the file on it, or name one it lists"
            problems.append(
                FailureProblem(
                    message=readable_node_error(node_id, entry.class_type, err),
                    node=node_id,
                    node_class=node_class,
                    input=err.input_name,
                    value=_jsonable(extra.get("received_value")),
                    allowed=None if allowed is None else [_jsonable(a) for a in allowed[:20]],
                    allowed_total=None if allowed is None else len(allowed),
                    hint=hint,
                )
            )
    if exc.error is not None and (
        not problems or exc.error.type != "prompt_outputs_failed_validation"
    ):
        problems.insert(0, FailureProblem(message=readable_prompt_error(exc.error)))
    if not problems:
        problems.append(FailureProblem(message=exc.message))
    return problems


def comfy_problems(exc: ComfyError) -> list[FailureProblem]:
    """Structured problems of any other ComfyUI error (one per ``details()`` line)."""
    if isinstance(exc, ComfyExecutionError):
        return [
            FailureProblem(message=line, node=exc.node_id, node_class=exc.node_type or None)
            for line in exc.details()
        ]
    return [FailureProblem(message=line) for line in exc.details()]


def _jsonable(value: object) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)


class _ReferenceUnavailable(Exception):
    """Ingest could not serve a reference just now (refused, timed out, 5xx)."""
