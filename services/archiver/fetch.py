"""Fetching a rendered image from the ComfyUI backend that made it (``GET /view``)."""

from __future__ import annotations

import aiohttp

from shared.events import OutputImage

#: Refuse bodies larger than this (a 4096² RGBA PNG is far smaller).
MAX_IMAGE_BYTES = 128 * 1024 * 1024


class ArchiveError(Exception):
    """Archiving failed. ``transient`` errors are retried; the others fail the job."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ForeignJob(ArchiveError):
    """A job.rendered for a job ingest never accepted: nothing to fail, only to park."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


async def fetch_view(
    http: aiohttp.ClientSession, backend: str, output: OutputImage, *, timeout: float
) -> bytes:
    """The image's bytes. 4xx answers are permanent (the file is gone), 5xx transient."""
    params = {"filename": output.filename, "subfolder": output.subfolder, "type": output.type}
    try:
        async with http.get(
            f"{backend}/view", params=params, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                text = (await response.text(errors="replace"))[:200]
                raise ArchiveError(
                    f"GET /view {output.filename!r} answered {response.status}: {text}",
                    transient=response.status >= 500,
                )
            if (response.content_length or 0) > MAX_IMAGE_BYTES:
                raise ArchiveError(f"{output.filename!r} is too large", transient=False)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(1024 * 1024):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise ArchiveError(f"{output.filename!r} is too large", transient=False)
                chunks.append(chunk)
            return b"".join(chunks)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ArchiveError(
            f"fetching {output.filename!r} from {backend}: {exc!r}", transient=True
        ) from exc
