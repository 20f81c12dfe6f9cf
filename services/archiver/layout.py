"""Where archived files go: ``<project>/<episode>/<scene>/<shot>/<job id>/<nn>.png``.

Missing episode, scene or shot segments are filed under ``unassigned``. Every segment
is re-checked as a slug here, whatever upstream validated, so no input can climb out of
the asset root.
"""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from shared.events import ShotLocation, is_slug

DEFAULT_SEGMENT = "unassigned"


class UnsafePath(ValueError):
    pass


def _segment(value: str | None) -> str:
    if value is None:
        return DEFAULT_SEGMENT
    if not is_slug(value):
        raise UnsafePath(f"unsafe path segment {value!r}")
    return value


def job_folder(location: ShotLocation, job_id: uuid.UUID) -> PurePosixPath:
    return PurePosixPath(
        _segment(location.project),
        _segment(location.episode),
        _segment(location.scene),
        _segment(location.shot),
        str(job_id),
    )


def image_key(location: ShotLocation, job_id: uuid.UUID, index: int, suffix: str = ".png") -> str:
    """The storage key of image ``index`` (0-based) of a job: ``…/<job id>/01.png``."""
    return str(job_folder(location, job_id) / f"{index + 1:02d}{suffix}")
