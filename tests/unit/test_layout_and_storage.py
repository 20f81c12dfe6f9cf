"""Archive paths stay inside the asset root whatever the input."""

import uuid
from pathlib import Path

import pytest

from services.archiver.layout import DEFAULT_SEGMENT, UnsafePath, image_key
from shared.events import ShotLocation
from shared.storage import LocalStorage


def test_image_key_follows_the_documented_layout() -> None:
    job = uuid.UUID(int=7)
    location = ShotLocation(project="neon-skies", episode="ep01", scene="rooftop", shot="shot-012")
    assert image_key(location, job, 0) == f"neon-skies/ep01/rooftop/shot-012/{job}/01.png"


def test_missing_segments_use_the_default() -> None:
    job = uuid.UUID(int=7)
    key = image_key(ShotLocation(project="p"), job, 1)
    assert key == f"p/{DEFAULT_SEGMENT}/{DEFAULT_SEGMENT}/{DEFAULT_SEGMENT}/{job}/02.png"


def test_layout_refuses_unsafe_segments_even_if_validation_was_bypassed() -> None:
    location = ShotLocation.model_construct(project="..", episode=None, scene=None, shot=None)
    with pytest.raises(UnsafePath):
        image_key(location, uuid.uuid4(), 0)


@pytest.mark.parametrize("key", ["../x.png", "/etc/passwd", "a/../../b", "a//b", "./a"])
def test_storage_refuses_keys_that_escape_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalStorage(tmp_path).path(key)


async def test_storage_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put("a/b/c.png", b"data")
    assert await storage.get("a/b/c.png") == b"data"
    assert await storage.exists("a/b/c.png")
    assert not list(tmp_path.rglob(".partial-*"))
