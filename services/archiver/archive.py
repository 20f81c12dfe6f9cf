"""Turning a ``job.rendered`` into files and rows: fetch, stamp, write atomically, record.

A job is archived exactly once, however often its ``job.rendered`` arrives and however
many archivers run:

* the whole job is archived under a PostgreSQL advisory lock on its id, so a duplicate
  waits and then finds the rows;
* the rows of a job are inserted in one transaction, after every file is on disk, so a
  job has all its rows or none;
* the files are a pure function of the render (no clock in them), so a run that
  redoes a crashed one writes identical bytes; a file already there with the same
  sha256 is not written again;
* every image ComfyUI reported is its own asset (index, file, row), even when two of
  them have identical bytes (a user who asked for two images gets two); only the very
  same file reported twice (same ``type``, ``subfolder`` and ``filename``) is one asset.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.archiver import locks
from services.archiver.facts import JobFactsCache
from services.archiver.fetch import ArchiveError, ForeignJob, fetch_view
from services.archiver.layout import UnsafePath, image_key, job_folder
from services.archiver.pngmeta import NotAnImage, stamp_png
from services.archiver.record import asset_row, job_record, sidecar
from shared.db.models import Asset
from shared.db.session import SessionFactory
from shared.events import ArchivedAsset, JobArchived, JobRendered, Producer, derived_id
from shared.logging import get_logger
from shared.messaging import EventBus
from shared.storage import Storage
from shared.workflows import derive_prompt_id

__all__ = ["ArchiveError", "Archivist"]

log = get_logger(__name__)

Sweeper = Callable[[str], Awaitable[int]]


@dataclasses.dataclass
class _Batch:
    """What one run wrote, so a permanent failure can take it back."""

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    keys: list[str] = dataclasses.field(default_factory=list)
    #: ``(type, subfolder, filename)`` of each output archived: one file, one asset.
    seen: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)


class Archivist:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        bus: EventBus,
        storage: Storage,
        http: Callable[[], aiohttp.ClientSession],
        allowed_backends: Callable[[], list[str]],
        sweep: Sweeper | None = None,
        fetch_timeout: float = 60.0,
        facts: JobFactsCache | None = None,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.storage = storage
        self.http = http
        self.allowed_backends = allowed_backends
        self.sweep = sweep
        self.fetch_timeout = fetch_timeout
        # Small: a job is archived once (its spec is read once, then only by duplicates),
        # and a spec is kilobytes (the ledger's cache holds many facts of a few bytes).
        self.facts = facts or JobFactsCache(256, with_spec=True)

    async def archive(self, event: JobRendered) -> JobArchived:
        """Archive every output of ``event`` once, then publish ``job.archived``.

        Everything ingest decided (project, placement, template, spec) is taken from the
        job's row; an event that claims otherwise, names a backend that is not
        configured, or a prompt that is not the job's, is refused as forged (raises
        :class:`ForeignJob`) before anything is fetched or written.
        """
        backend = event.backend.rstrip("/")
        async with self.sessions() as session, session.begin():
            # The lock first: duplicates of one job queue up in arrival order.
            await locks.hold(session, "archive", event.job_id)
            await self._check(session, event)
            rows = await _assets_of(session, event)
            new = 0
            if not rows:
                batch = await self._write_files(event, backend)
                # Under the job's lock nobody else inserts this job's rows: what we
                # insert is what is there, no need to read it back.
                await session.execute(insert(Asset).values(batch.rows))
                assets = [_archived_asset(row) for row in batch.rows]
                new = len(batch.rows)
            else:
                assets = [_archived_asset(_columns(row)) for row in rows]
                if rows[0].record.get("prompt_id") != event.prompt_id:
                    log.warning(
                        "archiver.duplicate_render",
                        archived_prompt=rows[0].record.get("prompt_id"),
                        prompt_id=event.prompt_id,
                    )
        archived = _archived_event(event, assets)
        await self.bus.publish(archived)
        log.info("archiver.archived", assets=[a.path for a in archived.assets], new=new)
        return archived

    async def _check(self, session: AsyncSession, event: JobRendered) -> None:
        """Raise :class:`ForeignJob` unless ``event`` agrees with the job's row."""
        backend = event.backend.rstrip("/")
        if backend not in self.allowed_backends():
            # The URL comes from a message; fetching from anywhere would be an SSRF hole,
            # and failing the job on its word would let anyone fail any job.
            raise ForeignJob(f"forged: backend {backend!r} is not a configured ComfyUI")
        conn = await session.connection()
        facts = (await self.facts.load(conn, [event.job_id])).get(event.job_id)
        if facts is None or not facts.accepted:
            raise ForeignJob(f"unknown job: no job {event.job_id} was accepted by ingest")
        spec = facts.spec()
        if event.project != facts.project or event.spec != spec:
            raise ForeignJob(
                f"forged: job.rendered for job {event.job_id} disagrees with the job ingest "
                "recorded (project or spec)"
            )
        if event.prompt_id != derive_prompt_id(event.job_id, event.attempt):
            raise ForeignJob(
                f"forged: prompt {event.prompt_id!r} is not attempt {event.attempt} of job "
                f"{event.job_id}"
            )

    async def _write_files(self, event: JobRendered, backend: str) -> _Batch:
        batch = _Batch()
        try:
            folder = str(job_folder(event.spec.location, event.job_id))
            if self.sweep is not None:
                await self.sweep(folder)  # what a killed archiver may have left here
            for output in event.outputs:
                # Identical bytes are still two images (two outputs of a batch may well
                # be equal); only the same file on the backend reported twice is one.
                where = (output.type, output.subfolder, output.filename)
                if where in batch.seen:
                    log.info("archiver.same_file_twice", filename=output.filename)
                    continue
                batch.seen.add(where)
                source = await fetch_view(self.http(), backend, output, timeout=self.fetch_timeout)
                source_sha = hashlib.sha256(source).hexdigest()
                record = job_record(event, len(batch.rows), output, source_sha)
                batch.rows.append(await self._write_one(event, source, record, batch))
        except (UnsafePath, NotAnImage) as exc:
            await self._take_back(batch)
            raise ArchiveError(str(exc), transient=False) from exc
        except ArchiveError as exc:
            if not exc.transient:
                await self._take_back(batch)
            raise
        return batch

    async def _write_one(
        self, event: JobRendered, source: bytes, record: dict[str, Any], batch: _Batch
    ) -> dict[str, Any]:
        stamped = stamp_png(source, workflow=event.workflow, record=record)
        key = image_key(event.spec.location, event.job_id, record["index"])
        sha = hashlib.sha256(stamped.data).hexdigest()
        size = len(stamped.data)
        document = sidecar(
            record,
            key=key,
            sha256=sha,
            width=stamped.width,
            height=stamped.height,
            size=size,
            workflow=event.workflow,
        )
        files = [(key, stamped.data), (key.removesuffix(".png") + ".json", document)]
        batch.keys += [k for k, _ in files]
        # One trip to the disk thread; a file a crashed run left with the same bytes is
        # not written again.
        await self.storage.put_all(files)
        return asset_row(
            event,
            record,
            key=key,
            sha256=sha,
            width=stamped.width,
            height=stamped.height,
            size=size,
        )

    async def _take_back(self, batch: _Batch) -> None:
        """A permanently failed job keeps no files without rows."""
        for key in batch.keys:
            try:
                await self.storage.delete(key)
            except Exception:
                log.exception("archiver.cleanup_failed", key=key)


async def _assets_of(session: AsyncSession, event: JobRendered) -> list[Asset]:
    query = select(Asset).where(Asset.job_id == event.job_id).order_by(Asset.index)
    return list((await session.scalars(query)).all())


_ASSET_FIELDS = ("path", "sha256", "width", "height", "bytes", "mime", "index")


def _columns(row: Asset) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _ASSET_FIELDS}


def _archived_asset(row: dict[str, Any]) -> ArchivedAsset:
    return ArchivedAsset(
        path=row["path"],
        sha256=row["sha256"],
        width=row["width"],
        height=row["height"],
        bytes=row["bytes"],
        mime=row["mime"],
        index=row["index"],
    )


def _archived_event(event: JobRendered, assets: list[ArchivedAsset]) -> JobArchived:
    return JobArchived(
        event_id=derived_id(event.job_id, "archived"),
        job_id=event.job_id,
        correlation_id=event.correlation_id,
        producer=Producer.ARCHIVER,
        project=event.project,
        assets=assets,
    )
