"""Temp files: never read as files, and a dead writer's leftovers are swept, a live one's not."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.storage import PARTIAL_PREFIX, LocalStorage, host_tag, partial_prefix


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(folder: Path, name: str, *, age: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\x89PNG half")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


async def test_a_dead_writers_temp_files_are_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    job = tmp_path / "p" / "unassigned" / "unassigned" / "unassigned" / "job"
    dead = leftover(job, f"{partial_prefix(dead_pid(), 'deadbeef', host_tag())}abc.png")
    live = leftover(job, f"{partial_prefix(os.getppid(), 'cafebabe', host_tag())}abc.png")
    elsewhere_new = leftover(job, f"{partial_prefix(1, 'cafebabe', 'otherhost')}abc.png")
    elsewhere_old = leftover(job, f"{partial_prefix(1, 'cafebabe', 'otherhost')}def.png", age=7200)
    assert await storage.sweep_partials("p/unassigned") == 2
    assert not dead.exists() and not elsewhere_old.exists()
    assert live.exists() and elsewhere_new.exists()


async def test_an_earlier_incarnation_with_the_same_pid_counts_as_dead(tmp_path: Path) -> None:
    # A restarted container's archiver is pid 1 again, with a new instance token
    storage = LocalStorage(tmp_path)
    old = leftover(tmp_path / "a", f"{partial_prefix(os.getpid(), '00000000', host_tag())}x.png")
    assert await storage.sweep_partials() == 1
    assert not old.exists()


async def test_writes_leave_no_temp_file_and_temp_names_are_not_keys(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put("a/b/01.png", b"data")
    assert not list(tmp_path.rglob(f"{PARTIAL_PREFIX}*"))
    with pytest.raises(ValueError):
        storage.path(f"a/b/{PARTIAL_PREFIX}1-2-3-x.png")


async def test_a_read_only_storage_refuses_to_write(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, read_only=True)
    with pytest.raises(PermissionError):
        await storage.put("a.png", b"x")
    with pytest.raises(PermissionError):
        await storage.delete("a.png")


async def test_files_get_the_mode_an_ordinary_write_gets_not_mkstemps(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    expected = plain.stat().st_mode & 0o777
    storage = LocalStorage(tmp_path / "root")
    await storage.put("a/01.png", b"one")
    # A file an older archiver left 0600 with the same bytes is given the mode too
    leftover = tmp_path / "root" / "a" / "02.png"
    leftover.write_bytes(b"two")
    leftover.chmod(0o600)
    await storage.put_all([("a/02.png", b"two"), ("a/03.png", b"three")])
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "root" / "a").iterdir()}
    assert modes == {"01.png": expected, "02.png": expected, "03.png": expected}
