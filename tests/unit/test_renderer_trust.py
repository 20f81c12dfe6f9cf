"""What the renderer trusts: the jobs row (not the message) and reference bytes that match
their sha256, fetched from ingest only. No broker or database here."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from services.ingest.references import REFERENCE_ROUTES
from services.renderer.cancellation import CancelRegistry
from services.renderer.comfyui.models import UploadedFile
from services.renderer.rendering import REFERENCE_PATH, Failed, RenderService
from shared.events import (
    CharacterDefinition,
    CharacterSnapshot,
    JobAccepted,
    JobSpec,
    Producer,
    ReferenceImage,
    RenderParams,
    ShotLocation,
    derived_id,
)
from shared.job_facts import JobFacts, Lru
from shared.settings import Settings
from shared.workflows import TemplateRegistry, derive_prompt_id

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PNG_SHA = hashlib.sha256(PNG).hexdigest()


def spec(
    *, template: str = "model-free", references: list[ReferenceImage] | None = None
) -> JobSpec:
    return JobSpec(
        request_id="trust-1",
        location=ShotLocation(project="neon-skies", episode="ep01"),
        template=template,
        prompt="rooftop",
        negative_prompt="",
        composed_prompt="Kai, rooftop",
        composed_negative="",
        params=RenderParams(width=64, height=64, seed=7),
        priority=5,
        characters=[
            CharacterSnapshot(
                character_id=uuid.uuid4(),
                name="Kai Nakamura",
                version=1,
                version_id=uuid.uuid4(),
                definition=CharacterDefinition(appearance="silver hair", mood="calm"),
                references=references or [],
            )
        ],
    )


def reference(sha: str = PNG_SHA, url: str = "http://attacker.invalid/x.png") -> ReferenceImage:
    return ReferenceImage(sha256=sha, kind="face", url=url)


def accepted_for(job_spec: JobSpec, job_id: uuid.UUID | None = None) -> JobAccepted:
    return JobAccepted(
        job_id=job_id or uuid.uuid4(),
        correlation_id="corr-1",
        producer=Producer.INGEST,
        project="neon-skies",
        spec=job_spec,
    )


# --------------------------------------------------------------------------- the row


def test_a_message_that_agrees_with_the_row_is_rebuilt_from_the_row() -> None:
    row_spec = spec()
    facts = JobFacts(uuid.uuid4(), "neon-skies", "corr-1", row_spec)
    # The row's JSON is the spec dumped with mode="json" (what ingest writes)
    message = accepted_for(JobSpec.model_validate(row_spec.model_dump(mode="json")), facts.job_id)
    assert facts.disagreements(message) == []
    rebuilt = facts.accepted()
    assert rebuilt.spec == row_spec and rebuilt.project == "neon-skies"
    assert rebuilt.event_id == derived_id(facts.job_id, "accepted")
    assert (rebuilt.job_id, rebuilt.correlation_id) == (facts.job_id, "corr-1")


def test_a_forged_spec_project_or_correlation_id_is_named() -> None:
    facts = JobFacts(uuid.uuid4(), "neon-skies", "corr-1", spec())
    forged_spec = spec(template="txt2img-reference", references=[reference()])
    forged = accepted_for(forged_spec, facts.job_id)
    assert facts.disagreements(forged) == ["spec.template", "spec.characters"]
    other_project = accepted_for(facts.spec, facts.job_id).model_copy(
        update={"project": "other", "correlation_id": "x"}
    )
    assert facts.disagreements(other_project) == ["project", "correlation_id"]
    higher = accepted_for(facts.spec.model_copy(update={"priority": 9}), facts.job_id)
    assert facts.disagreements(higher) == ["spec.priority"]


def test_the_lru_forgets_the_least_recently_used_entry() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    with pytest.raises(ValueError):
        Lru[str, int](0)


# --------------------------------------------------------------------------- references


def test_the_renderer_asks_for_references_where_ingest_serves_them() -> None:
    (route,) = REFERENCE_ROUTES
    assert route.method == "GET" and route.path == REFERENCE_PATH
    assert route.scope is None, "renderers fetch references without an API key"


@dataclass
class Hits:
    paths: list[str] = field(default_factory=list)


@asynccontextmanager
async def server(
    handler: Callable[[web.Request], Any], hits: Hits
) -> AsyncIterator[BaseTestServer]:
    async def record(request: web.Request) -> web.StreamResponse:
        hits.paths.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with TestServer(app) as running:
        yield running


def serve(body: bytes, *, chunked: bool = False) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=body, content_type="image/png")
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 1024):
            await response.write(body[start : start + 1024])
        await response.write_eof()
        return response

    return handler


class StubClient:
    def __init__(self) -> None:
        self.uploads: list[tuple[str, bytes]] = []

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", overwrite: bool = True
    ) -> UploadedFile:
        self.uploads.append((filename, data))
        return UploadedFile(name=filename)

    async def object_info(self) -> dict[str, Any]:
        return {}


@dataclass
class StubBackend:
    url: str = "http://comfy.invalid"
    client: StubClient = field(default_factory=StubClient)


class StubPool:
    def __init__(self) -> None:
        self.released: list[tuple[str, bool]] = []

    async def release(self, backend: StubBackend, *, failed: bool = False, **_: Any) -> None:
        self.released.append((backend.url, failed))


@asynccontextmanager
async def renderer(ingest_url: str, **options: Any) -> AsyncIterator[RenderService]:
    async with aiohttp.ClientSession() as http:
        yield RenderService(
            pool=StubPool(),  # type: ignore[arg-type]
            cancels=CancelRegistry(),
            templates=TemplateRegistry.load(Settings().templates_dir),
            bus=None,  # type: ignore[arg-type]
            http=lambda: http,
            ingest_url=ingest_url,
            **options,
        )


async def run_reference_job(service: RenderService, job_spec: JobSpec) -> tuple[Any, StubBackend]:
    """One attempt up to the point where the references are uploaded and checked."""
    backend = StubBackend()
    job = accepted_for(job_spec)
    outcome = await service._run(
        job,
        1,
        backend,  # type: ignore[arg-type]
        derive_prompt_id(job.job_id, 1),
        submit=True,
    )
    return outcome, backend


async def test_reference_bytes_come_from_ingest_by_sha256_never_from_the_message_url() -> None:
    ingest, attacker = Hits(), Hits()
    async with (
        server(serve(PNG), ingest) as ingest_server,
        server(serve(b"evil"), attacker) as attacker_server,
        renderer(str(ingest_server.make_url("/")).rstrip("/")) as service,
    ):
        ref = reference(url=str(attacker_server.make_url("/evil.png")))
        backend = StubBackend()
        job = accepted_for(spec(template="txt2img-reference", references=[ref, ref]))
        bound = await service._references(job, backend)  # type: ignore[arg-type]
    assert attacker.paths == []
    # Fetched once, uploaded for both uses, exactly the recorded bytes
    assert ingest.paths == [f"/v1/references/{PNG_SHA}"]
    assert backend.client.uploads == [(f"{PNG_SHA}.png", PNG)] * 2
    assert [b.filename for b in bound] == [f"{PNG_SHA}.png"] * 2


@pytest.mark.parametrize("chunked", [False, True])
async def test_bytes_that_do_not_match_the_sha256_are_refused_before_any_upload(
    chunked: bool,
) -> None:
    hits = Hits()
    async with (
        server(serve(PNG + b"tampered", chunked=chunked), hits) as ingest_server,
        renderer(str(ingest_server.make_url("/")).rstrip("/")) as service,
    ):
        outcome, backend = await run_reference_job(
            service, spec(template="txt2img-reference", references=[reference()])
        )
    assert hits.paths == [f"/v1/references/{PNG_SHA}"]
    assert isinstance(outcome, Failed)
    assert (outcome.kind, outcome.transient) == ("reference", False)
    assert PNG_SHA in outcome.reason and "nothing was uploaded" in outcome.reason
    assert backend.client.uploads == []


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_reference_is_refused_without_reading_it_all(chunked: bool) -> None:
    hits = Hits()
    big = PNG * 64  # ~130 KiB against a 16 KiB limit
    async with (
        server(serve(big, chunked=chunked), hits) as ingest_server,
        renderer(
            str(ingest_server.make_url("/")).rstrip("/"), max_reference_bytes=16 * 1024
        ) as service,
    ):
        outcome, backend = await run_reference_job(
            service,
            spec(
                template="txt2img-reference",
                references=[reference(hashlib.sha256(big).hexdigest())],
            ),
        )
    assert isinstance(outcome, Failed)
    assert (outcome.kind, outcome.transient) == ("reference", False)
    assert "larger than 16384 bytes" in outcome.reason
    assert backend.client.uploads == []


async def test_a_redirect_from_the_reference_route_is_not_followed() -> None:
    ingest, attacker = Hits(), Hits()
    async with server(serve(PNG), attacker) as attacker_server:
        target = str(attacker_server.make_url(f"/v1/references/{PNG_SHA}"))

        async def redirect(_: web.Request) -> web.Response:
            raise web.HTTPFound(target)

        async with (
            server(redirect, ingest) as ingest_server,
            renderer(str(ingest_server.make_url("/")).rstrip("/")) as service,
        ):
            outcome, backend = await run_reference_job(
                service, spec(template="txt2img-reference", references=[reference()])
            )
    assert ingest.paths == [f"/v1/references/{PNG_SHA}"] and attacker.paths == []
    assert isinstance(outcome, Failed)
    assert (outcome.kind, outcome.transient) == ("reference", False)
    assert "302" in outcome.reason
    assert backend.client.uploads == []


async def test_ingest_away_or_failing_is_a_transient_reference_failure() -> None:
    hits = Hits()

    async def busy(_: web.Request) -> web.Response:
        return web.Response(status=503)

    async with (
        server(busy, hits) as ingest_server,
        renderer(str(ingest_server.make_url("/")).rstrip("/")) as service,
    ):
        outcome, backend = await run_reference_job(
            service, spec(template="txt2img-reference", references=[reference()])
        )
    assert isinstance(outcome, Failed)
    assert (outcome.kind, outcome.transient, outcome.backend) == ("reference", True, None)
    assert backend.client.uploads == []
    # Nothing listens on port 9 (discard): refused, also transient
    async with renderer("http://127.0.0.1:9") as service:
        outcome, _ = await run_reference_job(
            service, spec(template="txt2img-reference", references=[reference()])
        )
    assert isinstance(outcome, Failed)
    assert (outcome.kind, outcome.transient) == ("reference", True)


async def test_a_404_from_ingest_is_permanent() -> None:
    hits = Hits()

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    async with (
        server(missing, hits) as ingest_server,
        renderer(str(ingest_server.make_url("/")).rstrip("/")) as service,
    ):
        outcome, _ = await run_reference_job(
            service, spec(template="txt2img-reference", references=[reference()])
        )
    assert isinstance(outcome, Failed)
    assert (outcome.kind, outcome.transient) == ("reference", False)
    assert "404" in outcome.reason
