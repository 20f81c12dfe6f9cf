"""Turning a ``job.rendered`` into files and rows: fetch, stamp, write atomically, record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.archiver.layout import image_key
from services.archiver.pngmeta import NotAnImage, stamp_png
from services.archiver.storage import Storage
from shared.db.models import Asset
from shared.db.session import SessionFactory
from shared.events import (
    ArchivedAsset,
    JobArchived,
    JobRendered,
    OutputImage,
    Producer,
    derived_id,
)
from shared.logging import get_logger
from shared.messaging import EventBus

log = get_logger(__name__)


class ArchiveError(Exception):
    """Archiving failed. ``transient`` errors are retried; the others fail the job."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def job_record(event: JobRendered, index: int, output: OutputImage) -> dict[str, Any]:
    """The job's own record, written into the PNG, the JSON sidecar and the assets row."""
    spec = event.spec
    return {
        "job_id": str(event.job_id),
        "request_id": spec.request_id,
        "index": index,
        "project": spec.location.project,
        "episode": spec.location.episode,
        "scene": spec.location.scene,
        "shot": spec.location.shot,
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "composed_prompt": spec.composed_prompt,
        "composed_negative": spec.composed_negative,
        "seed": spec.params.seed,
        "params": spec.params.model_dump(mode="json"),
        "template": spec.template,
        "characters": [
            {"name": c.name, "version": c.version, "version_id": str(c.version_id)}
            for c in spec.characters
        ],
        "backend": event.backend,
        "prompt_id": event.prompt_id,
        "attempt": event.attempt,
        "source": output.model_dump(mode="json"),
        "correlation_id": event.correlation_id,
        "archived_at": datetime.now(UTC).isoformat(),
    }


class Archivist:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        bus: EventBus,
        storage: Storage,
        http: Callable[[], aiohttp.ClientSession],
        allowed_backends: Callable[[], list[str]],
        fetch_timeout: float = 60.0,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.storage = storage
        self.http = http
        self.allowed_backends = allowed_backends
        self.fetch_timeout = fetch_timeout

    async def archive(self, event: JobRendered) -> JobArchived:
        """Archive every output of ``event`` once, then publish ``job.archived``."""
        backend = event.backend.rstrip("/")
        if backend not in self.allowed_backends():
            # The URL comes from a message; fetching from anywhere would be an SSRF hole.
            raise ArchiveError(f"backend {backend!r} is not a configured ComfyUI", transient=False)
        async with self.sessions() as session:
            rows = {
                a.index: a
                for a in (
                    await session.scalars(select(Asset).where(Asset.job_id == event.job_id))
                ).all()
            }
        new_rows: list[dict[str, Any]] = []
        for index, output in enumerate(event.outputs):
            if index in rows and await self.storage.exists(rows[index].path):
                continue  # a redelivery: this image is already archived
            new_rows.append(await self._archive_one(event, backend, index, output))
        if new_rows:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    insert(Asset)
                    .values(new_rows)
                    .on_conflict_do_nothing(index_elements=[Asset.job_id, Asset.index])
                )
            async with self.sessions() as session:
                rows = {
                    a.index: a
                    for a in (
                        await session.scalars(select(Asset).where(Asset.job_id == event.job_id))
                    ).all()
                }
        archived = JobArchived(
            event_id=derived_id(event.job_id, "archived"),
            job_id=event.job_id,
            correlation_id=event.correlation_id,
            producer=Producer.ARCHIVER,
            project=event.project,
            assets=[
                ArchivedAsset(
                    path=a.path,
                    sha256=a.sha256,
                    width=a.width,
                    height=a.height,
                    bytes=a.bytes,
                    mime=a.mime,
                    index=a.index,
                )
                for a in sorted(rows.values(), key=lambda a: a.index)
            ],
        )
        await self.bus.publish(archived)
        log.info("archiver.archived", assets=[a.path for a in archived.assets], new=len(new_rows))
        return archived

    async def _archive_one(
        self, event: JobRendered, backend: str, index: int, output: OutputImage
    ) -> dict[str, Any]:
        source = await self._fetch(backend, output)
        record = job_record(event, index, output)
        try:
            stamped = stamp_png(source, workflow=event.workflow, record=record)
        except NotAnImage as exc:
            raise ArchiveError(str(exc), transient=False) from exc
        key = image_key(event.spec.location, event.job_id, index)
        sha = hashlib.sha256(stamped.data).hexdigest()
        sidecar = {
            **record,
            "path": key,
            "sha256": sha,
            "width": stamped.width,
            "height": stamped.height,
            "bytes": len(stamped.data),
            "workflow": event.workflow,
        }
        await self.storage.put(key, stamped.data)
        await self.storage.put(
            key.removesuffix(".png") + ".json", json.dumps(sidecar, indent=2).encode()
        )
        location = event.spec.location
        return {
            "job_id": event.job_id,
            "index": index,
            "project_slug": location.project,
            "episode": key.split("/")[1],
            "scene": key.split("/")[2],
            "shot": key.split("/")[3],
            "path": key,
            "sha256": sha,
            "width": stamped.width,
            "height": stamped.height,
            "bytes": len(stamped.data),
            "mime": "image/png",
            "characters": record["characters"],
            "character_names": [c.name for c in event.spec.characters],
            "record": record,
        }

    async def _fetch(self, backend: str, output: OutputImage) -> bytes:
        params = {"filename": output.filename, "subfolder": output.subfolder, "type": output.type}
        try:
            async with self.http().get(
                f"{backend}/view",
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.fetch_timeout),
            ) as response:
                if response.status == 200:
                    return await response.read()
                text = (await response.text())[:200]
                # 404/400/403: the file is gone or the reference is bad; retrying cannot help.
                transient = response.status >= 500
                raise ArchiveError(
                    f"GET /view {output.filename!r} answered {response.status}: {text}",
                    transient=transient,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ArchiveError(
                f"fetching {output.filename!r} from {backend}: {exc!r}", transient=True
            ) from exc
